import Functions
import SluiceCore
import Testing

/// What a transform returns is the message value: values it passes through arrive exactly as they left Postgres.
@Suite struct ValueRoundTripTests {
    static let exactRecord = #"""
        {"id":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808,"price":19.990,\#
        "total":123456789012345678901234567890.123456789,"wide":99999999999999999999,"ratio":0.1,"sci":1e2,\#
        "meta":{"z":[1,2.50,{"deep":null}],"a":{},"e":[]},"note":null,"tags":["x",null,""],"ok":true}
        """#

    @Test func recordPassesThroughByteForByte() throws {
        #expect(try transformed("function transform(action, record) return record end", message(record: Self.exactRecord))
            == Self.exactRecord)
    }

    @Test func wrappedRecordPassesThroughToo() throws {
        #expect(try transformed("function transform(action, record) return {record = record} end", message(record: Self.exactRecord))
            == #"{"record":\#(Self.exactRecord)}"#)
    }

    @Test func wholeMessageRebuiltKeepsEveryPart() throws {
        let value = message(record: #"{"id":1,"amount":19.990}"#, changes: #"{"amount":10.000}"#, action: "update")
        #expect(try transformed("""
            function transform(action, record, changes, metadata)
              return {record = record, changes = changes, action = action, metadata = metadata}
            end
            """, value)
            == #"{"action":"update","changes":{"amount":10.000},"metadata":{"table_schema":"public","table_name":"orders"},"record":{"id":1,"amount":19.990}}"#)
    }

    @Test func deeplyNestedJSONBPassesThrough() throws {
        // 150 levels: deep, but within what a message may nest (200).
        let deep = String(repeating: #"{"n":["#, count: 75) + "1" + String(repeating: "]}", count: 75)
        let record = #"{"doc":\#(deep)}"#
        #expect(try transformed("function transform(a, record) return record end", message(record: record)) == record)
        #expect(try transformed("function transform(a, record) return {record = record} end", message(record: record))
            == #"{"record":\#(record)}"#)
    }

    @Test func messageNestedTooDeeplyIsRefused() throws {
        let tooDeep = String(repeating: "[", count: 201) + String(repeating: "]", count: 201)
        let f = try function(.transform, "function transform(a, record) return record end")
        let thrown = #expect(throws: FunctionError.self) { try f.transform(message(record: #"{"doc":\#(tooDeep)}"#)) }
        #expect(thrown?.message == "the message nests deeper than 200 levels")
    }

    @Test func stringsPassThroughAsSluiceEscapesThem() throws {
        var json = JSONWriter()
        json.raw("{")
        json.key("say \"hi\"\\")
        json.string("tab\tline\nctrl\u{01}\u{7F} ü 😀 /")
        json.raw("}")
        let record = String(decoding: json.bytes, as: UTF8.self)
        #expect(try transformed("function transform(a, record) return record end", message(record: record)) == record)
    }

    @Test func keyOrderAndNullKeysArePreserved() throws {
        let record = #"{"zeta":1,"alpha":null,"mid":"m"}"#
        #expect(try transformed("function transform(a, record) return record end", message(record: record)) == record)
    }

    @Test func changedAddedAndRemovedKeys() throws {
        let out = try transformed("""
            function transform(action, record)
              record.total = record.amount * 2
              record.zz_added = "new"
              record.aa_added = record.id + 1
              record.secret = nil
              record.note = "filled"
              return record
            end
            """, message(record: #"{"id":7,"secret":"pw","amount":19.99,"note":null}"#))
        #expect(out == #"{"id":7,"amount":19.99,"note":"filled","aa_added":8,"total":39.98,"zz_added":"new"}"#)
    }

    @Test func arraysStayArraysAndObjectsStayObjects() throws {
        let record = #"{"empty_list":[],"empty_map":{},"list":[1,2],"map":{"1":"one"},"grid":[[],[{}]]}"#
        #expect(try transformed("function transform(a, record) return record end", message(record: record)) == record)
    }

    @Test func tablesBuiltByTheFunction() throws {
        #expect(try transformed(#"""
            function transform(action, record)
              return {ids = {record.id, record.id * 10}, none = sluice.array(), nothing = {}, gone = nil,
                      null = sluice.null, list = sluice.array({"a"}), nested = {flag = false, n = 1.5}}
            end
            """#, message(record: #"{"id":3}"#))
            == #"{"ids":[3,30],"list":["a"],"nested":{"flag":false,"n":1.5},"none":[],"nothing":{},"null":null}"#)
    }

    @Test func nullsInArraysComeBackAsNull() throws {
        #expect(try transformed("""
            function transform(action, record)
              table.insert(record.tags, sluice.null)
              return record.tags
            end
            """, message(record: #"{"tags":[null,"a"]}"#)) == #"[null,"a",null]"#)
    }

    @Test(arguments: [
        ("sluice.null", "null"),
        (#""plain text""#, #""plain text""#),
        ("record.id", "42"),
        ("tostring(record.id)", #""42""#),
        ("record.price", "19.990"),
        ("record.price * 2", "39.98"),
        ("1/3", "0.3333333333333333"),
        ("record.id > 40", "true"),
        (#""tab\tquote\"""#, #""tab\tquote\"""#),
    ])
    func scalarResults(expression: String, json: String) throws {
        #expect(try transformed("function transform(action, record) return \(expression) end",
                                message(record: #"{"id":42,"price":19.990}"#)) == json)
    }

    @Test func mixedKeysBecomeAnObject() throws {
        #expect(try transformed(#"function transform() return {[1] = "a", [3] = "c", b = true} end"#, message(record: "{}"))
            == #"{"1":"a","3":"c","b":true}"#)
    }

    @Test(arguments: [
        ("nil", "fn: transform returned nil — return the new message, or sluice.null for JSON null"),
        ("{v = math.huge}", "fn: transform returned inf at .v — JSON has no NaN or infinity; return a string"),
        ("{f = print}", "fn: transform returned a function at .f — only nil, booleans, numbers, strings, tables and sluice.null become JSON"),
        (#"{s = "\xff"}"#, "fn: transform returned a string that is not valid UTF-8 at .s — JSON text must be UTF-8"),
        ("{[true] = 1}", "fn: transform returned a table with a boolean key at the top level — JSON object keys are strings"),
    ])
    func resultsThatAreNotJSON(expression: String, error: String) throws {
        let f = try function(.transform, "function transform(action, record) return \(expression) end")
        let thrown = #expect(throws: FunctionError.self) { try f.transform(message(record: #"{"id":1}"#)) }
        #expect(thrown?.message == error)
    }

    @Test func failuresNameTheirPath() throws {
        let built = try function(.transform, "function transform() return {a = {b = {1, 2, math.huge}}} end")
        #expect(#expect(throws: FunctionError.self) { try built.transform(message(record: "{}")) }?.message
            == "fn: transform returned inf at .a.b[3] — JSON has no NaN or infinity; return a string")
        let shaped = try function(.transform, "function transform(action, record) record.meta.z[2] = print return record end")
        #expect(#expect(throws: FunctionError.self) { try shaped.transform(message(record: Self.exactRecord)) }?.message
            == "fn: transform returned a function at .meta.z[2] — only nil, booleans, numbers, strings, tables and sluice.null become JSON")
        let added = try function(.transform, #"function transform(action, record) record.extra = {list = {"\xff"}} return {r = record} end"#)
        #expect(#expect(throws: FunctionError.self) { try added.transform(message(record: #"{"id":1}"#)) }?.message
            == "fn: transform returned a string that is not valid UTF-8 at .r.extra.list[1] — JSON text must be UTF-8")
    }

    @Test func tableThatContainsItselfIsAnError() throws {
        let f = try function(.transform, "function transform(action, record) record.self = record return record end")
        let thrown = #expect(throws: FunctionError.self) { try f.transform(message(record: #"{"id":1}"#)) }
        #expect(thrown?.message.contains("nested deeper than 256 levels") == true)
    }

    @Test func shapesDoNotLeakBetweenMessages() throws {
        // A table kept from an earlier message in a global is still written by its own shape.
        let f = try function(.transform, """
            function transform(action, record)
              if first == nil then first = record end
              return {first = first, now = record}
            end
            """)
        _ = try f.transform(message(record: #"{"b":1,"a":[]}"#))
        #expect(String(decoding: try f.transform(message(record: #"{"c":{}}"#)), as: UTF8.self)
            == #"{"first":{"b":1,"a":[]},"now":{"c":{}}}"#)
    }
}
