import Foundation
@testable import Console
import Testing

struct OrderedJSONEncoderTests {
    static func text(_ value: some Encodable) throws -> String {
        String(decoding: try OrderedJSONEncoder().encode(value), as: UTF8.self)
    }

    struct Keyed: Encodable {
        enum CodingKeys: String, CodingKey { case zebra, apple, mango, gone }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode("first", forKey: .zebra)
            try container.encode(1, forKey: .apple)
            try container.encode(nil as String?, forKey: .mango)
            try container.encodeIfPresent(nil as String?, forKey: .gone)
            try container.encode("again", forKey: .zebra)
        }
    }

    @Test func keysComeInTheOrderTheyAreEncoded() throws {
        // A key encoded again keeps its place; nil written with encode is null, with encodeIfPresent absent.
        #expect(try Self.text(Keyed()) == #"{"zebra":"again","apple":1,"mango":null}"#)
    }

    struct Nesting: Encodable {
        enum CodingKeys: String, CodingKey { case outer, list, after }
        enum Inner: String, CodingKey { case b, a }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            var inner = container.nestedContainer(keyedBy: Inner.self, forKey: .outer)
            var list = container.nestedUnkeyedContainer(forKey: .list)
            try container.encode(true, forKey: .after)
            try inner.encode(2, forKey: .b)
            try list.encode("x")
            var item = list.nestedContainer(keyedBy: Inner.self)
            try item.encodeNil(forKey: .a)
            var deeper = list.nestedUnkeyedContainer()
            try deeper.encode(false)
            try list.encodeNil()
            try inner.encode(1.5, forKey: .a)
            try [UInt8](repeating: 7, count: 2).encode(to: container.superEncoder(forKey: .after))
        }
    }

    @Test func nestedContainersStayLiveWhileTheOuterOneIsWritten() throws {
        #expect(try Self.text(Nesting()) == #"{"outer":{"b":2,"a":1.5},"list":["x",{"a":null},[false],null],"after":[7,7]}"#)
    }

    struct Empty: Encodable {}

    @Test func valuesAsJSONWritesThem() throws {
        #expect(try Self.text(Empty()) == "{}")
        #expect(try Self.text([Empty(), Empty()]) == "[{},{}]")
        #expect(try Self.text([UInt64.max]) == "[18446744073709551615]")
        #expect(try Self.text([Int64.min]) == "[-9223372036854775808]")
        #expect(try Self.text([0.1, 3.0, -0.0, 1e300]) == "[0.1,3.0,-0.0,1e+300]")
        #expect(try Self.text(["a/b \"q\" \\ \n\t\u{1}\u{7F} é 😀"]) == #"["a/b \"q\" \\ \n\t\u0001\u007f é 😀"]"#)
        #expect(try Self.text(["k": [true]]) == #"{"k":[true]}"#)
        #expect(throws: EncodingError.self) { try Self.text([Double.nan]) }
        #expect(throws: EncodingError.self) { try Self.text(["k": Float.infinity]) }
    }

    @Test func fragmentsAreWrittenAsTheyAre() throws {
        let value = #"{"price":19.990,"big":123456789012345678901234567890123456789012,"e":1E-400, "z" : [ -0.0 ]}"#
        #expect(try Self.text(["value": JSONFragment(Array(value.utf8))]) == #"{"value":"# + value + "}")
        #expect(try Self.text([JSONFragment(Array("1.10".utf8)), nil]) == "[1.10,null]")
        #expect(try Self.text(JSONFragment(Array("\"top\"".utf8))) == "\"top\"")
    }

    @Test func fractionDigitsRoundAsPrintfDoes() throws {
        let written = [12.345, 3, 0.25, 0.35, 0, 1_234_567.89].map { String(decoding: JSONFragment($0, fractionDigits: 1).bytes, as: UTF8.self) }
        #expect(written == ["12.3", "3.0", "0.2", "0.3", "0.0", "1234567.9"])
    }

    /// Foundation's encoder cannot splice JSON; a fragment refuses it rather than lose a message's digits.
    @Test func otherEncodersRefuseAFragment() {
        #expect(throws: EncodingError.self) { try JSONEncoder().encode(["value": JSONFragment(Array("19.990".utf8))]) }
    }

    struct WithNulls: Encodable {
        @NullEncodable var present: String?
        @NullEncodable var missing: Int?
        var omitted: String?
    }

    @Test func nullEncodableWritesNullWhereSynthesizedCodeWouldOmit() throws {
        #expect(try Self.text(WithNulls(present: "x", missing: nil, omitted: nil)) == #"{"present":"x","missing":null}"#)
        let foundation = try JSONSerialization.jsonObject(with: JSONEncoder().encode(WithNulls(present: nil, missing: nil))) as? [String: Any]
        #expect(foundation?.keys.sorted() == ["missing", "present"] && foundation?["missing"] is NSNull)
    }
}
