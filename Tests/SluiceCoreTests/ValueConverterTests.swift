import Foundation
import Testing
@testable import SluiceCore

/// Parses a JSON text (any top-level value) with Foundation, for round-trip checks.
func parseJSON(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
}

@Suite("ValueConverter")
struct ValueConverterTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var text: String
        var kind: ValueKind
        var json: String
        var testDescription: String { "\(text) as \(kind) → \(json)" }
        init(_ text: String, _ kind: ValueKind, _ json: String) {
            self.text = text
            self.kind = kind
            self.json = json
        }
    }

    static let scalars: [Case] = [
        // bool
        Case("t", .bool, "true"),
        Case("f", .bool, "false"),
        // integers
        Case("0", .integer, "0"),
        Case("42", .integer, "42"),
        Case("-32768", .integer, "-32768"),
        Case("9223372036854775807", .integer, "9223372036854775807"),
        Case("-9223372036854775808", .integer, "-9223372036854775808"),
        // floats
        Case("1.5", .float, "1.5"),
        Case("-0.25", .float, "-0.25"),
        Case("1e+20", .float, "1e+20"),
        Case("1e-07", .float, "1e-07"),
        Case("1.1", .float, "1.1"),
        Case("-0", .float, "-0"),
        Case("3.4028235e+38", .float, "3.4028235e+38"),
        Case("NaN", .float, "\"NaN\""),
        Case("Infinity", .float, "\"Infinity\""),
        Case("-Infinity", .float, "\"-Infinity\""),
        // numeric: exact digits
        Case("12345678901234567890.123456789", .numeric, "12345678901234567890.123456789"),
        Case("-0.000000000000000000001", .numeric, "-0.000000000000000000001"),
        Case("100", .numeric, "100"),
        Case("NaN", .numeric, "\"NaN\""),
        Case("Infinity", .numeric, "\"Infinity\""),
        Case("0.00", .numeric, "0.00"),
        Case("-Infinity", .numeric, "\"-Infinity\""),
        // json / jsonb: embedded as is
        Case("{\"a\": [1, 2, {\"b\": null}]}", .json, "{\"a\": [1, 2, {\"b\": null}]}"),
        Case("[1, \"x\"]", .json, "[1, \"x\"]"),
        Case("\"just a string\"", .json, "\"just a string\""),
        Case("42", .json, "42"),
        Case("null", .json, "null"),
        // timestamptz → ISO 8601 UTC with µs and Z
        Case("2026-11-29 10:00:00.123456+00", .timestamptz, "\"2026-11-29T10:00:00.123456Z\""),
        Case("2026-11-29 10:00:00+00", .timestamptz, "\"2026-11-29T10:00:00.000000Z\""),
        Case("2026-11-29 10:00:00.5+00", .timestamptz, "\"2026-11-29T10:00:00.500000Z\""),
        Case("2026-11-29 10:00:00.000001+00", .timestamptz, "\"2026-11-29T10:00:00.000001Z\""),
        Case("infinity", .timestamptz, "\"infinity\""),
        Case("-infinity", .timestamptz, "\"-infinity\""),
        Case("0044-03-15 12:00:00+00 BC", .timestamptz, "\"-0043-03-15T12:00:00.000000Z\""),
        Case("0001-01-01 00:00:00+00 BC", .timestamptz, "\"0000-01-01T00:00:00.000000Z\""),
        Case("4714-11-24 00:00:00+00 BC", .timestamptz, "\"-4713-11-24T00:00:00.000000Z\""),
        // Years past 9999: ISO 8601's expanded form, with its sign (as java.time writes and reads it).
        Case("12345-01-02 03:04:05.6+00", .timestamptz, "\"+12345-01-02T03:04:05.600000Z\""),
        Case("294276-12-31 23:59:59.999999+00", .timestamptz, "\"+294276-12-31T23:59:59.999999Z\""),
        Case("9999-12-31 23:59:59.999999+00", .timestamptz, "\"9999-12-31T23:59:59.999999Z\""),
        // A session outside UTC keeps its offset.
        Case("2026-11-29 15:30:00+05:30", .timestamptz, "\"2026-11-29T15:30:00.000000+05:30\""),
        Case("2026-11-29 02:00:00-08", .timestamptz, "\"2026-11-29T02:00:00.000000-08:00\""),
        // timestamp without time zone
        Case("2026-11-29 10:00:00.123456", .timestamp, "\"2026-11-29T10:00:00.123456\""),
        Case("2026-11-29 10:00:00", .timestamp, "\"2026-11-29T10:00:00.000000\""),
        Case("2026-11-29 10:00:00.5", .timestamp, "\"2026-11-29T10:00:00.500000\""),
        Case("0044-03-15 12:00:00 BC", .timestamp, "\"-0043-03-15T12:00:00.000000\""),
        Case("10000-01-01 00:00:00", .timestamp, "\"+10000-01-01T00:00:00.000000\""),
        // Near the common form but not it: left to the general path, or kept as text.
        Case("2026-11-29 10:00:00.", .timestamp, "\"2026-11-29T10:00:00.000000\""),
        Case("2026-11-29 10:00:00.12+01", .timestamptz, "\"2026-11-29T10:00:00.120000+01:00\""),
        // date: ISO 8601 with the same year rules; ±infinity as text
        Case("2026-11-29", .date, "\"2026-11-29\""),
        Case("0044-03-15 BC", .date, "\"-0043-03-15\""),
        Case("0001-01-01 BC", .date, "\"0000-01-01\""),
        Case("0002-01-01 BC", .date, "\"-0001-01-01\""),
        Case("4714-11-24 BC", .date, "\"-4713-11-24\""),
        Case("5874897-12-31", .date, "\"+5874897-12-31\""),
        Case("infinity", .date, "\"infinity\""),
        Case("-infinity", .date, "\"-infinity\""),
        Case("infinity", .timestamp, "\"infinity\""),
        Case("-infinity", .timestamp, "\"-infinity\""),
        // interval, IntervalStyle iso_8601
        Case("P1Y2M3DT4H5M6.5S", .interval, "{\"months\":14,\"days\":3,\"microseconds\":14706500000}"),
        Case("PT0S", .interval, "{\"months\":0,\"days\":0,\"microseconds\":0}"),
        Case("P-1Y-2M3DT-4H-5M-6.5S", .interval, "{\"months\":-14,\"days\":3,\"microseconds\":-14706500000}"),
        Case("P1D", .interval, "{\"months\":0,\"days\":1,\"microseconds\":0}"),
        Case("PT-0.000001S", .interval, "{\"months\":0,\"days\":0,\"microseconds\":-1}"),
        Case("P100Y", .interval, "{\"months\":1200,\"days\":0,\"microseconds\":0}"),
        // text-like types keep their text form
        Case("hello", .text, "\"hello\""),
        Case("", .text, "\"\""),
        Case("2026-11-29", .text, "\"2026-11-29\""),
        Case("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", .text, "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""),
        Case("\\x0102", .text, "\"\\\\x0102\""),
        Case("$1,234.56", .text, "\"$1,234.56\""),
        Case("[1,10)", .text, "\"[1,10)\""),
        // A raw kind whose text is not a JSON number (a stale type) stays a string: never invalid JSON.
        Case("abc", .integer, "\"abc\""),
        Case("12abc", .numeric, "\"12abc\""),
        Case("", .integer, "\"\""),
        Case("1.", .float, "\"1.\""),
        Case(".5", .numeric, "\".5\""),
        Case("01", .integer, "\"01\""),
    ]

    @Test(arguments: scalars)
    func convertsScalar(_ example: Case) {
        #expect(ValueConverter.convert(example.text, kind: example.kind) == example.json)
    }

    static let arrays: [Case] = [
        Case("{1,2,NULL}", .array(element: .integer, delimiter: 44), "[1,2,null]"),
        Case("{{1,2},{3,4}}", .array(element: .integer, delimiter: 44), "[[1,2],[3,4]]"),
        Case("{\"a b\",\"c\\\"d\",NULL,\"NULL\"}", .array(element: .text, delimiter: 44), "[\"a b\",\"c\\\"d\",null,\"NULL\"]"),
        Case("{\"back\\\\slash\"}", .array(element: .text, delimiter: 44), "[\"back\\\\slash\"]"),
        Case("{}", .array(element: .integer, delimiter: 44), "[]"),
        Case("[0:1]={7,8}", .array(element: .integer, delimiter: 44), "[7,8]"),
        Case("{t,f}", .array(element: .bool, delimiter: 44), "[true,false]"),
        Case("{1.5,NaN,-Infinity}", .array(element: .float, delimiter: 44), "[1.5,\"NaN\",\"-Infinity\"]"),
        Case("{\"2026-11-29 10:00:00+00\",NULL}", .array(element: .timestamptz, delimiter: 44),
             "[\"2026-11-29T10:00:00.000000Z\",null]"),
        Case("{\"{\\\"a\\\": 1}\",\"[1, 2]\"}", .array(element: .json, delimiter: 44), "[{\"a\": 1},[1, 2]]"),
        Case("{PT0S,P1D}", .array(element: .interval, delimiter: 44),
             "[{\"months\":0,\"days\":0,\"microseconds\":0},{\"months\":0,\"days\":1,\"microseconds\":0}]"),
        Case("{\"\",\"a,b\",\"{c}\"}", .array(element: .text, delimiter: 44), "[\"\",\"a,b\",\"{c}\"]"),
        Case("[1:2][1:1]={{1},{2}}", .array(element: .integer, delimiter: 44), "[[1],[2]]"),
        Case("{{NULL,NULL},{NULL,3}}", .array(element: .integer, delimiter: 44), "[[null,null],[null,3]]"),
        Case("{(1,1),(0,0);(2,2),(1,1)}", .array(element: .text, delimiter: 59), "[\"(1,1),(0,0)\",\"(2,2),(1,1)\"]"),
    ]

    @Test(arguments: arrays)
    func convertsArray(_ example: Case) throws {
        let json = ValueConverter.convert(example.text, kind: example.kind)
        #expect(json == example.json)
        _ = try parseJSON(json) // and it is valid JSON
    }

    static let point = ValueKind.composite(fields: [.init(name: "x", kind: .integer), .init(name: "label", kind: .text)])
    static let composites: [Case] = [
        Case("(1,\"a b\")", point, "{\"x\":1,\"label\":\"a b\"}"),
        Case("(,)", point, "{\"x\":null,\"label\":null}"),
        Case("(2,\"\")", point, "{\"x\":2,\"label\":\"\"}"),
        Case("(3,\"q\"\"\\\\x\")", point, "{\"x\":3,\"label\":\"q\\\"\\\\x\"}"),
        Case("(4,plain)", point, "{\"x\":4,\"label\":\"plain\"}"),
        Case("(5,\"a,b)\")", point, "{\"x\":5,\"label\":\"a,b)\"}"),
        Case("(6,back\\,slash)", point, "{\"x\":6,\"label\":\"back,slash\"}"),
        // Nested: an array attribute, a composite attribute, a json attribute, a timestamptz attribute.
        Case("(\"{1,2,NULL}\",\"(7,x)\",\"{\"\"a\"\": [1]}\",\"2026-11-29 10:00:00+00\")",
             .composite(fields: [.init(name: "list", kind: .array(element: .integer, delimiter: 44)),
                                 .init(name: "inner", kind: point), .init(name: "doc", kind: .json),
                                 .init(name: "at", kind: .timestamptz)]),
             "{\"list\":[1,2,null],\"inner\":{\"x\":7,\"label\":\"x\"},\"doc\":{\"a\": [1]},\"at\":\"2026-11-29T10:00:00.000000Z\"}"),
        // An array of composites.
        Case("{\"(1,\\\"a b\\\")\",NULL,\"(,)\"}", .array(element: point, delimiter: 44),
             "[{\"x\":1,\"label\":\"a b\"},null,{\"x\":null,\"label\":null}]"),
        Case("()", .composite(fields: []), "{}"),
        // Not matching the attributes: the text form, never a guess.
        Case("(1)", point, "\"(1)\""),
        Case("(1,2,3)", point, "\"(1,2,3)\""),
        Case("(1,\"open)", point, "\"(1,\\\"open)\""),
        Case("1,2", point, "\"1,2\""),
        Case("(1,2)x", point, "\"(1,2)x\""),
    ]

    @Test(arguments: composites)
    func convertsComposite(_ example: Case) throws {
        let json = ValueConverter.convert(example.text, kind: example.kind)
        #expect(json == example.json)
        _ = try parseJSON(json)
    }

    @Test func arrayThatIsNotALiteralKeepsItsText() {
        #expect(ValueConverter.convert("not an array", kind: .array(element: .integer, delimiter: 44)) == "\"not an array\"")
        #expect(ValueConverter.convert("{1,2", kind: .array(element: .integer, delimiter: 44)) == "\"{1,2\"")
    }

    @Test func textWithUnicodeAndControlCharactersRoundTrips() throws {
        let original = "héllo wörld — 日本語 👋🏽 \"quoted\" back\\slash\nnew\ttab\r\u{01}\u{1F}\u{7F}\u{08}\u{0C}end"
        let json = ValueConverter.convert(original, kind: .text)
        let parsed = try #require(try parseJSON(json) as? String)
        #expect(parsed == original)
        // Control characters never appear raw inside the JSON text.
        #expect(!json.utf8.contains { $0 < 0x20 })
    }

    @Test func textArrayWithUnicodeRoundTrips() throws {
        let json = ValueConverter.convert("{\"👋 hi\",\"ünï\\\\\",plain}", kind: .array(element: .text, delimiter: 44))
        let parsed = try #require(try parseJSON(json) as? [String])
        #expect(parsed == ["👋 hi", "ünï\\", "plain"])
    }

    @Test func builtinKinds() {
        #expect(ValueKind.builtin(oid: 16) == .bool)
        #expect(ValueKind.builtin(oid: 20) == .integer)
        #expect(ValueKind.builtin(oid: 23) == .integer)
        #expect(ValueKind.builtin(oid: 701) == .float)
        #expect(ValueKind.builtin(oid: 1700) == .numeric)
        #expect(ValueKind.builtin(oid: 3802) == .json)
        #expect(ValueKind.builtin(oid: 114) == .json)
        #expect(ValueKind.builtin(oid: 1184) == .timestamptz)
        #expect(ValueKind.builtin(oid: 1114) == .timestamp)
        #expect(ValueKind.builtin(oid: 1186) == .interval)
        #expect(ValueKind.builtin(oid: 1007) == .array(element: .integer, delimiter: 44))
        #expect(ValueKind.builtin(oid: 1009) == .array(element: .text, delimiter: 44))
        #expect(ValueKind.builtin(oid: 1020) == .array(element: .text, delimiter: 59))
        #expect(ValueKind.builtin(oid: 25) == .text)
        #expect(ValueKind.builtin(oid: 17) == .text)
        #expect(ValueKind.builtin(oid: 2950) == .text)
        #expect(ValueKind.builtin(oid: 1082) == .date)
        #expect(ValueKind.builtin(oid: 1182) == .array(element: .date, delimiter: 44))
        #expect(ValueKind.builtin(oid: 5069) == .integer)
        #expect(ValueKind.builtin(oid: 22) == .text) // int2vector: space-separated, not an array literal
        #expect(ValueKind.builtin(oid: 3904) == .text) // int4range
        #expect(ValueKind.builtin(oid: 4451) == .text) // int4multirange
        #expect(ValueKind.builtin(oid: 3905) == .array(element: .text, delimiter: 44))
        #expect(ValueKind.builtin(oid: 790) == .text) // money
        #expect(ValueKind.builtin(oid: 99_999) == nil)
        // A column of an unknown type falls back to its text form.
        #expect(Column(name: "x", typeOID: 99_999).kind == .text)
    }

    @Test func binaryCellIsWrittenAsByteaHex() {
        let tuple = Tuple(bytes: [0x01, 0x02, 0xAB], cells: [.binary(0..<3)])
        var json = JSONWriter()
        ValueConverter.write(tuple.cells[0], of: tuple, kind: .text, to: &json)
        #expect(String(decoding: json.bytes, as: UTF8.self) == "\"\\\\x0102ab\"")
    }

    @Test func nullCellIsNull() {
        let tuple = Tuple(texts: [nil])
        var json = JSONWriter()
        ValueConverter.write(tuple.cells[0], of: tuple, kind: .integer, to: &json)
        #expect(String(decoding: json.bytes, as: UTF8.self) == "null")
    }
}
