import Functions
import SluiceCore
import Testing

/// Messages the `function-message` fuzz target (Fuzz/FunctionMessage) found: the JSON reader took
/// them, and a path function or a transform then wrote them out as they came — not JSON. The reader
/// now refuses them, as it refuses any message that is not JSON, before the function runs.
@Suite("Message JSON: fuzz findings")
struct MessageJSONFuzzFindingsTests {
    static let broken: [String] = [
        "{\"record\":{\"s\":\"a\u{01}b\"}}",          // raw control characters inside a string
        "{\"record\":{\"s\":\"tab\there\"}}",
        "{\"record\":{\"s\":\"\\\"esc\u{1F}\"}}",      // … also after an escape
        "{\"record\":{\"k\u{0A}ey\":1}}",             // … in a key
        #"{"record":{"n":1.2.3}}"#,                  // numbers outside JSON's grammar
        #"{"record":{"n":-}}"#,
        #"{"record":{"n":+1}}"#,
        #"{"record":{"n":1e}}"#,
        #"{"record":{"n":01}}"#,
        #"{"record":{"n":.5}}"#,
        #"{"record":{"n":[1,--2]}}"#,
    ]

    @Test(arguments: broken)
    func pathFunctionRefusesIt(text: String) throws {
        let path = try UserFunction(FunctionConfig(name: "p", kind: .path, path: "record"))
        let thrown = #expect(throws: FunctionError.self) { try path.transform(text.bytes) }
        #expect(thrown?.message.hasPrefix("the message is not valid JSON") == true)
    }

    @Test(arguments: broken)
    func transformRefusesIt(text: String) throws {
        let transform = try function(.transform, "function transform(action, record) return record end")
        let thrown = #expect(throws: FunctionError.self) { try transform.transform(text.bytes) }
        #expect(thrown?.message.hasPrefix("the message is not valid JSON") == true)
    }

    @Test(arguments: broken)
    func filterRefusesIt(text: String) throws {
        let filter = try function(.filter, "function filter() return true end")
        let thrown = #expect(throws: FunctionError.self) { try filter.filter(text.bytes) }
        #expect(thrown?.message.hasPrefix("the message is not valid JSON") == true)
    }

    @Test func numbersAndEscapedControlCharactersStillRead() throws {
        let text = #"{"record":{"a":0,"b":-0.5,"c":1E+9,"d":12.50e-3,"e":"\u0001\t\n","f":92233720368547758070}}"#
        #expect(try transformed("function transform(action, record) return record end", text.bytes)
                == #"{"a":0,"b":-0.5,"c":1E+9,"d":12.50e-3,"e":"\u0001\t\n","f":92233720368547758070}"#)
    }
}
