import Functions
import SluiceCore
import Testing

/// `record`, `changes` and `metadata` are filled only when a function first touches them; no Lua code
/// can tell them from tables filled up front.
@Suite struct LazyArgumentsTests {
    static let order = message(record: #"{"id":42,"status":"paid","note":null,"tags":["a",null,"b"],"amount":19.990}"#,
                               metadata: #"{"table_schema":"public","table_name":"orders","consumer":{"id":"c1","name":"sink"}}"#)

    static func keeps(_ body: String, _ value: [UInt8] = order) throws -> Bool {
        try function(.filter, "function filter(action, record, changes, metadata)\n\(body)\nend").filter(value)
    }

    @Test func filterThatTouchesNothing() throws {
        let f = try function(.filter, "function filter() return true end")
        for _ in 0..<3 { #expect(try f.filter(Self.order)) }
        let declined = try function(.filter, "function filter(action, record, changes, metadata) return false end")
        #expect(try !declined.filter(Self.order))
    }

    @Test func untouchedMessageIsStillChecked() throws {
        let f = try function(.filter, "function filter() return true end")
        for broken in [#"{"record":{"id":1},"metadata":{"a":}}"#, #"{"record":{"id":"\x"}}"#, #"{"record":{"id":1}"#,
                       #"{"record":{"id":1},"metadata":{"a":tru}}"#] {
            let thrown = #expect(throws: FunctionError.self) { try f.filter(broken.bytes) }
            #expect(thrown?.message.hasPrefix("the message is not valid JSON") == true, "\(broken)")
        }
        let deep = String(repeating: "[", count: 201) + String(repeating: "]", count: 201)
        let thrown = #expect(throws: FunctionError.self) { try f.filter(message(record: #"{"doc":\#(deep)}"#)) }
        #expect(thrown?.message == "the message nests deeper than 200 levels")
        #expect(try f.filter(Self.order))
    }

    @Test func writtenBeforeReadKeepsTheWrittenValue() throws {
        #expect(try Self.keeps("record.status = 'new' record.extra = 1 return record.status == 'new' and record.extra == 1 and record.id == 42"))
        #expect(try Self.keeps("rawset(record, 'status', 'raw') return record.status == 'raw' and record.id == 42"))
        #expect(try Self.keeps("record.id = nil return record.id == nil and record.status == 'paid'"))
        #expect(try Self.keeps("metadata.table_name = 'x' return metadata.table_name == 'x' and metadata.consumer.name == 'sink'"))
        #expect(try transformed("function transform(action, record) record.status = 'shipped' record.zz = true return record end", Self.order)
            == #"{"id":42,"status":"shipped","note":null,"tags":["a",null,"b"],"amount":19.990,"zz":true}"#)
    }

    @Test func pairsListsEveryColumn() throws {
        #expect(try Self.keeps("""
            local names = {}
            for name, value in pairs(record) do names[#names + 1] = name end
            table.sort(names)
            return table.concat(names, ",") == "amount,id,status,tags"
            """))
        #expect(try Self.keeps("local n = 0 for _ in next, metadata do n = n + 1 end return n == 3"))
        #expect(try Self.keeps("return next(record) ~= nil and select('#', pairs(metadata)) == 3"))
    }

    @Test func lengthWorks() throws {
        #expect(try Self.keeps("return #record.tags == 3 and #record == 0 and rawlen(record) == 0"))
        #expect(try Self.keeps("return #record == 0 and record.id == 42"))
        let list = message(record: #"{"id":1}"#, changes: #"{"1":"x"}"#)
        #expect(try Self.keeps("return #changes == 0 and changes['1'] == 'x'", list))
    }

    @Test func rawAccessAndMetatablesSeeTheColumns() throws {
        #expect(try Self.keeps("return rawget(record, 'id') == 42 and rawget(metadata, 'table_name') == 'orders'"))
        #expect(try Self.keeps("return getmetatable(record) == nil and type(record) == 'table' and rawequal(record, record)"))
        #expect(try Self.keeps("""
            setmetatable(record, {__index = function(_, key) return key .. '?' end})
            return record.id == 42 and record.missing == 'missing?'
            """))
        #expect(try Self.keeps("local copy = table.move(record.tags, 1, 3, 1, {}) return copy[3] == 'b' and ipairs(record) ~= nil"))
        #expect(try Self.keeps("return action == 'insert' and changes == nil and tostring(record):match('^table: ') ~= nil"))
    }

    @Test func badKeysFailAsOnAPlainTable() throws {
        let f = try function(.filter, "function filter(action, record)\n  record[nil] = 1\n  return true\nend")
        #expect(#expect(throws: FunctionError.self) { try f.filter(Self.order) }?.message == "functions[0].code:2: index is nil")
        let nan = try function(.filter, "function filter(action, record)\n  record[0/0] = 1\n  return true\nend")
        #expect(#expect(throws: FunctionError.self) { try nan.filter(Self.order) }?.message == "functions[0].code:2: index is NaN")
        let missing = try function(.filter, "function filter(action, record)\n  return record.customer.vip\nend")
        #expect(#expect(throws: FunctionError.self) { try missing.filter(Self.order) }?.message
            == "functions[0].code:2: attempt to index a nil value (field 'customer')")
        let raw = try function(.filter, "function filter(action, record)\n  return rawget(nil, 1)\nend")
        #expect(#expect(throws: FunctionError.self) { try raw.filter(Self.order) }?.message
            == "functions[0].code:2: bad argument #1 to 'rawget' (table expected, got nil)")
    }

    @Test func tableKeptInAGlobalReadsTheSameInALaterCall() throws {
        // Kept untouched, read one and several calls later (after its message's bytes are gone).
        let f = try function(.transform, """
            function transform(action, record, changes, metadata)
              local before = kept
              if kept == nil then kept = {record = record, metadata = metadata, changes = changes} end
              if before == nil then return {first = true} end
              return {id = before.record.id, now = record.id, schema = before.metadata.table_schema,
                      tags = #before.record.tags, changes = before.changes.status}
            end
            """)
        let first = message(record: #"{"id":1,"tags":["x","y"]}"#, changes: #"{"status":"old"}"#, action: "update")
        #expect(try f.transform(first) == #"{"first":true}"#.bytes)
        for id in 2...40 {
            #expect(try f.transform(message(record: #"{"id":\#(id),"tags":[]}"#)) == #"{"changes":"old","id":1,"now":\#(id),"schema":"public","tags":2}"#.bytes)
        }
    }

    @Test func tableKeptUntouchedIsWrittenExactlyLater() throws {
        let f = try function(.transform, """
            function transform(action, record)
              local before = previous
              previous = record
              return before or sluice.null
            end
            """)
        let record = #"{"id":1,"price":19.990,"note":null,"meta":{"a":[],"b":{}}}"#
        #expect(try f.transform(message(record: record)) == "null".bytes)
        #expect(try f.transform(message(record: #"{"id":2}"#)) == record.bytes)
        #expect(try f.transform(message(record: #"{"id":3}"#)) == #"{"id":2}"#.bytes)
    }

    @Test func filterKeepingAPreviousRecord() throws {
        let f = try function(.filter, """
            function filter(action, record)
              local changed = last == nil or last.status ~= record.status
              last = record
              return changed
            end
            """)
        #expect(try f.filter(message(record: #"{"status":"a"}"#)))
        #expect(try !f.filter(message(record: #"{"status":"a"}"#)))
        #expect(try f.filter(message(record: #"{"status":"b"}"#)))
    }

    @Test func transformReturningRecordIsByteExact() throws {
        let record = ValueRoundTripTests.exactRecord
        #expect(try transformed("function transform(action, record) return record end", message(record: record)) == record)
        let metadata = #"{"table_schema":"public","commit_lsn":24739112,"transaction_annotations":null,"record_pks":["1"],"consumer":{"id":"x","annotations":{}}}"#
        #expect(try transformed("function transform(action, record, changes, metadata) return metadata end",
                                message(record: record, metadata: metadata)) == metadata)
        #expect(try transformed("function transform(action, record, changes) return changes end",
                                message(record: "{}", changes: #"{"price":19.990,"n":null}"#, action: "update"))
            == #"{"price":19.990,"n":null}"#)
        #expect(try transformed("function transform(action, record, changes) return {c = changes or sluice.null, a = action} end",
                                message(record: "{}")) == #"{"a":"insert","c":null}"#)
    }

    @Test func routeMayReturnAnUntouchedPart() throws {
        let f = try function(.routing, "function route(action, record) return record end")
        #expect(try f.route(message(record: #"{"topic":"t1","message_key":"k","id":1}"#)) == Route(topic: "t1", messageKey: "k".bytes))
    }

    @Test func arrayMarkOnAnUntouchedRecordStays() throws {
        let out = try transformed("function transform(action, record) local r = sluice.array(record) return {r = r, id = record.id} end",
                                  message(record: #"{"id":1}"#))
        #expect(out == #"{"id":1,"r":[]}"#)
    }

    @Test func partsThatAreNotObjectsArriveAsBefore() throws {
        #expect(try Self.keeps("return #record == 2 and record[2] == 'b' and metadata == 5",
                               #"{"record":["a","b"],"metadata":5,"action":"x"}"#.bytes))
        #expect(try Self.keeps("return changes == nil and metadata == nil", #"{"record":{},"changes":null}"#.bytes))
    }

    @Test func budgetsStillApplyAfterFilling() throws {
        let f = try function(.filter, #"""
            function filter(action, record)
              if record.id == 1 then local s = string.rep("x", 2^30) end
              return true
            end
            """#)
        let thrown = #expect(throws: FunctionError.self) { try f.filter(message(record: #"{"id":1}"#)) }
        #expect(thrown?.message.contains("exceeded its memory limit of 16 MB") == true)
        #expect(try f.filter(message(record: #"{"id":2}"#)))
    }
}
