import Testing
import SluiceCore

@Suite("JSONValidator")
struct JSONValidatorTests {
    @Test(arguments: [#"{"a":[1,-0.5e+3,true,false,null,"\u00e9\n"],"b":{}}"#, " 1 ", #""""#, "[]", "[[[]]]", "-0", "1E9",
                      #"{"é":"😀"}"#, #""\ud800""#])
    func accepts(text: String) {
        #expect(JSONValidator.problem(in: Array(text.utf8)) == nil)
    }

    @Test(arguments: ["", " ", "[1,]", #"{"a":1,}"#, "{,}", "[1 2]", "01", "1.", ".5", "+1", "-", "1e", "NaN", "'a'",
                      #"{"a"}"#, #"{1:2}"#, "[", "]", #""a"#, #""\x""#, #""\u12""#, "tru", "nul", "1 2", "{}{}",
                      "\"a\u{01}b\"", "\u{FEFF}{}"])
    func refuses(text: String) {
        #expect(JSONValidator.problem(in: Array(text.utf8)) != nil)
    }

    @Test func refusesInvalidUTF8UnlessToldNotTo() {
        let text: [UInt8] = [0x22, 0xC0, 0x80, 0x22]
        #expect(JSONValidator.problem(in: text) == "not valid UTF-8")
        #expect(JSONValidator.problem(in: text, requireUTF8: false) == nil)
        #expect(JSONValidator.problem(in: [0x32, 0x00]) != nil)
    }

    @Test func deepNestingIsCheckedWithoutRecursion() {
        let deep = String(repeating: "[", count: 1_000_000) + String(repeating: "]", count: 1_000_000)
        #expect(JSONValidator.problem(in: Array(deep.utf8)) == nil)
        #expect(JSONValidator.problem(in: Array(deep.dropLast().utf8)) != nil)
    }
}
