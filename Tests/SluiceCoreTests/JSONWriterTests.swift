import Foundation
import Testing
@testable import SluiceCore

@Suite("JSONWriter")
struct JSONWriterTests {
    func written(_ text: String) -> String {
        var json = JSONWriter()
        json.string(text)
        return String(decoding: json.bytes, as: UTF8.self)
    }

    @Test func escapes() {
        #expect(written("plain") == "\"plain\"")
        #expect(written("say \"hi\"") == "\"say \\\"hi\\\"\"")
        #expect(written("a\\b") == "\"a\\\\b\"")
        #expect(written("line\nnext") == "\"line\\nnext\"")
        #expect(written("tab\there") == "\"tab\\there\"")
        #expect(written("cr\r") == "\"cr\\r\"")
        #expect(written("\u{08}\u{0C}") == "\"\\b\\f\"")
        #expect(written("\u{01}") == "\"\\u0001\"")
        #expect(written("\u{00}") == "\"\\u0000\"")
        #expect(written("\u{1F}") == "\"\\u001f\"")
        #expect(written("\u{7F}") == "\"\\u007f\"")
        #expect(written("/") == "\"/\"")
    }

    @Test func integersKeepEveryDigit() {
        func number(_ write: (inout JSONWriter) -> Void) -> String {
            var json = JSONWriter()
            write(&json)
            return String(decoding: json.bytes, as: UTF8.self)
        }
        #expect(number { $0.number(0) } == "0")
        #expect(number { $0.number(-7) } == "-7")
        #expect(number { $0.number(Int64.min) } == "-9223372036854775808")
        #expect(number { $0.number(Int64.max) } == "9223372036854775807")
        #expect(number { $0.number(UInt64.max) } == "18446744073709551615")
        #expect(number { $0.number(Int32(-42)) } == "-42")
    }

    @Test func base64StringsNeedNoEscape() {
        var json = JSONWriter()
        Array("0/16B3748:3".utf8).withUnsafeBufferPointer { json.base64String($0) }
        #expect(String(decoding: json.bytes, as: UTF8.self) == "\"\(Base64.encode(Array("0/16B3748:3".utf8)))\"")
    }

    @Test func nonASCIIPassesThroughAsUTF8() {
        #expect(written("😀") == "\"😀\"")
        #expect(written("é日") == "\"é日\"")
        var json = JSONWriter()
        json.string("😀")
        #expect(json.bytes == [0x22, 0xF0, 0x9F, 0x98, 0x80, 0x22])
    }

    @Test func keysNumbersAndLiterals() throws {
        var json = JSONWriter()
        json.raw("{")
        json.key("n")
        json.number(-12)
        json.raw(",")
        json.key("u")
        json.number(UInt64.max)
        json.raw(",")
        json.key("t")
        json.bool(true)
        json.raw(",")
        json.key("f")
        json.bool(false)
        json.raw(",")
        json.key("z")
        json.null()
        json.raw("}")
        let text = String(decoding: json.bytes, as: UTF8.self)
        #expect(text == "{\"n\":-12,\"u\":18446744073709551615,\"t\":true,\"f\":false,\"z\":null}")
        _ = try parseJSON(text)
    }

    @Test func everyByteBelowSpaceRoundTrips() throws {
        let original = String(decoding: (0..<0x80).map { UInt8($0) }, as: UTF8.self)
        let text = written(original)
        #expect(try parseJSON(text) as? String == original)
    }
}
