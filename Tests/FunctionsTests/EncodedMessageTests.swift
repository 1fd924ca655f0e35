import Functions
import SluiceCore
import Testing

/// Messages straight from Sluice's encoder carry their layout, so functions reach `record`,
/// `changes` and `metadata` without scanning the JSON, and a filter or routing function reads a
/// single field without converting the rest. Every function must see exactly what it sees in the
/// same message without a layout (as from the ledger or `sluice fn test`).
@Suite struct EncodedMessageTests {
    static let relation = Relation(id: 7, schema: "public", name: "orders", replicaIdentity: .full, columns: [
        Column(name: "id", typeOID: 20, isReplicaIdentity: true, isPrimaryKey: true),
        Column(name: "status", typeOID: 25, isReplicaIdentity: true),
        Column(name: "amount", typeOID: 1700, isReplicaIdentity: true),
        Column(name: "doc", typeOID: 3802, isReplicaIdentity: true),
        Column(name: "note", typeOID: 25, isReplicaIdentity: true),
    ])
    static let encoder = MessageEncoder(consumer: ConsumerIdentity(name: "orders-sink"),
                                        database: DatabaseIdentity(name: nil, database: "app", hostname: "db.local"))
    static let transaction = TransactionInfo(xid: 9, commitLSN: LSN(4_096), commitTimestamp: 850_000_000_000_000)

    static func encoded(_ action: Action) -> Message {
        let new = Tuple(texts: ["9007199254740993", "paid", "19.990", #"{"tags":["a",{"b":[]}],"n":1.50}"#, nil])
        let old = Tuple(texts: ["9007199254740993", "new", "19.990", #"{"tags":[]}"#, "x"])
        let change = Change(action: action, relation: relation, new: action == .delete ? nil : new,
                            old: action == .insert ? nil : old, transaction: transaction, commitIndex: 3)
        return encoder.encode(change, topic: "orders")
    }

    static let bodies = [
        "return record.status == 'paid'",
        "return record.id == 9007199254740993 and math.type(record.id) == 'integer'",
        "return tostring(record.amount) == '19.99' and record.amount > 19",
        "return record.note == nil and record.missing == nil and record.note == nil",
        "return record.doc.tags[2].b ~= nil and #record.doc.tags == 2",
        "return changes ~= nil and changes.status == 'new'",
        "return changes == nil",
        "return metadata.table_name == 'orders' and metadata.commit_idx == 3 and metadata.consumer.name == 'orders-sink'",
        "return action == 'update'",
        // A field read first, then everything: the table is complete and the read value still there.
        "local s = record.status local n = 0 for k in pairs(record) do n = n + 1 end return s == 'paid' and n == 4",
        "local s = record.status record.status = 'changed' local n = 0 for k, v in pairs(record) do n = n + 1 end return record.status == 'changed' and n == 4",
        "local id = record.id record.extra = 1 return record.extra == 1 and record.id == id and record.status == 'paid'",
        "local m = metadata.table_schema return next(metadata) ~= nil and rawget(metadata, 'table_name') == 'orders'",
        "return record['st' .. 'atus'] == 'paid' and record[1] == nil",
        "kept = kept or record return kept.status == 'paid'",
    ]

    /// A verdict, or the error, as text: both paths must give the same.
    static func outcome(_ call: () throws(FunctionError) -> Bool) -> String {
        do { return try call() ? "keep" : "drop" } catch { return "error: \(error.message)" }
    }

    @Test(arguments: [Action.insert, .update, .delete])
    func filtersSeeTheSameWithAndWithoutLayout(action: Action) throws {
        let message = Self.encoded(action)
        #expect(message.layout != nil)
        for body in Self.bodies {
            let code = "function filter(action, record, changes, metadata)\n\(body)\nend"
            let fast = try function(.filter, code)
            let scanned = try function(.filter, code)
            for _ in 0..<2 {  // twice: a second call must not see the first one's tables
                let withLayout = Self.outcome { () throws(FunctionError) in try fast.filter(message.value, layout: message.layout) }
                let without = Self.outcome { () throws(FunctionError) in try scanned.filter(message.value) }
                #expect(withLayout == without, "\(action): \(body)")
            }
        }
    }

    @Test func aTableKeptFromAnEarlierCallReadsTheSame() throws {
        let code = """
            function filter(action, record, changes, metadata)
              if first == nil then first = record; firstMeta = metadata; return true end
              return first.status == 'paid' and first.id == 9007199254740993 and firstMeta.commit_idx == 3
            end
            """
        let f = try function(.filter, code)
        let message = Self.encoded(.insert)
        #expect(try f.filter(message.value, layout: message.layout))
        #expect(try f.filter(message.value, layout: message.layout))
        // Kept after a single field was read.
        let g = try function(.filter, """
            function filter(action, record)
              if first == nil then first = record; local _ = record.status; return true end
              local n = 0 for _ in pairs(first) do n = n + 1 end
              return n == 4 and first.amount == 19.99
            end
            """)
        #expect(try g.filter(message.value, layout: message.layout))
        #expect(try g.filter(message.value, layout: message.layout))
    }

    @Test func routingAndTransformMatch() throws {
        let route = "function route(action, record, changes, metadata) return { topic = 'o.' .. record.status, message_key = tostring(record.id) } end"
        let transform = "function transform(action, record, changes, metadata) return { id = record.id, doc = record.doc, m = metadata.table_name, c = changes } end"
        for action in [Action.insert, .update, .delete] {
            let message = Self.encoded(action)
            #expect(try function(.routing, route).route(message.value, layout: message.layout)
                == function(.routing, route).route(message.value))
            #expect(try function(.transform, transform).transform(message.value, layout: message.layout)
                == function(.transform, transform).transform(message.value))
            let identity = "function transform(action, record, changes, metadata) return { record = record, changes = changes, action = action, metadata = metadata } end"
            #expect(try function(.transform, identity).transform(message.value, layout: message.layout)
                == function(.transform, identity).transform(message.value))
        }
    }

    @Test func aLayoutThatDoesNotFitIsIgnored() throws {
        var message = Self.encoded(.insert)
        message.layout?.record = 0..<5
        let f = try function(.filter, "function filter(action, record) return record.status == 'paid' end")
        #expect(try f.filter(message.value, layout: message.layout))
        message.layout?.metadataStart = Int32(message.value.count + 10)
        #expect(try f.filter(message.value, layout: message.layout))
    }

    @Test func sinkFunctionsPassTheLayoutAndDropItAfterATransform() throws {
        let message = Self.encoded(.update)
        let functions = try SinkFunctionsTests.sink(
            routing: "function route(a, r) return { message_key = tostring(r.id) } end",
            transform: SinkFunctionsTests.config("slim", .transform, "function transform(a, r) return { id = r.id } end"))
        guard case .send(let result) = functions.apply(to: message) else {
            Issue.record("not sent")
            return
        }
        #expect(result.key == Array("9007199254740993".utf8))
        #expect(String(decoding: result.value, as: UTF8.self) == #"{"id":9007199254740993}"#)
        #expect(result.layout == nil)
    }
}
