import Functions
import SluiceCore
import Testing

/// What a filter sees of a message, and what it must return.
@Suite struct FilterTests {
    static let order = message(record: #"{"id":42,"amount":250.5,"status":"paid","note":null,"tags":["a",null,"b"]}"#)

    @Test func readsColumnsByName() throws {
        let big = try function(.filter, "function filter(action, record, changes, metadata) return record.amount > 100 end")
        #expect(try big.filter(Self.order))
        #expect(try !big.filter(message(record: #"{"id":1,"amount":99.5}"#)))

        let paid = try function(.filter, #"function filter(action, record) return record.status == "paid" and record.id + 1 == 43 end"#)
        #expect(try paid.filter(Self.order))
    }

    @Test func seesActionAndMetadata() throws {
        let f = try function(.filter, #"""
            function filter(action, record, changes, metadata)
              return action == "delete" and metadata.table_name == "orders"
            end
            """#)
        #expect(try f.filter(message(record: #"{"id":1}"#, action: "delete")))
        #expect(try !f.filter(message(record: #"{"id":1}"#, action: "insert")))
    }

    @Test func changesAreNilExceptForUpdates() throws {
        let f = try function(.filter, #"""
            function filter(action, record, changes)
              if action == "update" then return changes.status == "pending" end
              return changes == nil
            end
            """#)
        #expect(try f.filter(Self.order))
        #expect(try f.filter(message(record: #"{"id":42,"status":"paid"}"#, changes: #"{"status":"pending"}"#, action: "update")))
        #expect(try !f.filter(message(record: #"{"id":42,"status":"paid"}"#, changes: #"{"status":"new"}"#, action: "update")))
    }

    @Test func sqlNullIsNilInObjectsAndSluiceNullInArrays() throws {
        let f = try function(.filter, #"""
            function filter(action, record)
              return record.note == nil and #record.tags == 3 and record.tags[2] == sluice.null
                and record.tags[3] == "b" and tostring(record.tags[2]) == "sluice.null"
            end
            """#)
        #expect(try f.filter(Self.order))
    }

    @Test func largeIntegersStayExact() throws {
        let f = try function(.filter, #"""
            function filter(action, record)
              return tostring(record.id) == "9007199254740993" and record.id + 1 == 9007199254740994
                and math.type(record.max) == "integer" and tostring(record.max) == "9223372036854775807"
            end
            """#)
        #expect(try f.filter(message(record: #"{"id":9007199254740993,"max":9223372036854775807}"#)))
    }

    @Test func escapedStringsAreUnescaped() throws {
        let f = try function(.filter, #"""
            function filter(action, record)
              return record.name == 'say "hi"\n' and record.city == "Zürich" and utf8.len(record.emoji) == 1
            end
            """#)
        #expect(try f.filter(message(record: #"{"name":"say \"hi\"\n","city":"Z\u00fcrich","emoji":"\ud83d\ude00"}"#)))
    }

    @Test(arguments: [
        ("nil", "fn: filter must return true or false, it returned nil"),
        ("1", "fn: filter must return true or false, it returned a number (1)"),
        (#""yes""#, #"fn: filter must return true or false, it returned a string ("yes")"#),
        ("{}", "fn: filter must return true or false, it returned a table"),
        ("sluice.null", "fn: filter must return true or false, it returned a sluice.null"),
    ])
    func mustReturnABoolean(returned: String, error: String) throws {
        let f = try function(.filter, "function filter() return \(returned) end")
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.order) }
        #expect(thrown?.message == error)
    }

    @Test func messageWithoutRecordIsRefused() throws {
        let f = try function(.filter, "function filter() return true end")
        let thrown = #expect(throws: FunctionError.self) { try f.filter(#"{"action":"insert"}"#.bytes) }
        #expect(thrown?.message == #"the message has no "record": give a Sequin-shaped message"#)
        let broken = #expect(throws: FunctionError.self) { try f.filter(#"{"record":{"id":1"#.bytes) }
        #expect(broken?.message.hasPrefix("the message is not valid JSON") == true)
        #expect(try f.filter(Self.order))
    }

    @Test func aFunctionOfAnotherKindIsNotCalledAsAFilter() throws {
        let t = try function(.transform, "function transform(a, record) return record end", name: "shape")
        let thrown = #expect(throws: FunctionError.self) { try t.filter(Self.order) }
        #expect(thrown?.message == "shape is a transform function, not a filter function")
    }
}
