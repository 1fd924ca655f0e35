import Testing
@testable import SluiceCore

/// Inputs the `values` fuzz target (Fuzz/Values) found that trapped the converter. A value the
/// converter cannot read keeps its text, as a JSON string; it never takes the process down.
@Suite("ValueConverter: fuzz findings")
struct ValueConverterFuzzFindingsTests {
    /// The only space is the one before `BC`: there is no time part after it.
    @Test(arguments: ["1 BC", "0042- BC", "0042-\0\0\u{0F}\u{E8}b\u{11}\0\0:00:00+00 BC"])
    func timestampWhoseOnlySpaceIsBeforeBC(text: String) throws {
        for kind in [ValueKind.timestamptz, .timestamp] {
            let json = ValueConverter.convert(text, kind: kind)
            #expect(try parseJSON(json) as? String == text)
        }
    }

    /// Components whose microseconds or months do not fit 64 bits.
    @Test(arguments: ["P999999999999999999Y", "P1317624576693539402W", "PT9223372036854775807H",
                      "PT153722867280912931M", "PT9223372036854775807S", "PT9223372036854.775808S",
                      "PT2562047788H2562047788H", "P9223372036854775807M1Y", "P9223372036854775807D9223372036854775807D"])
    func intervalThatOverflows(text: String) throws {
        let json = ValueConverter.convert(text, kind: .interval)
        #expect(try parseJSON(json) as? String == text)
    }

    /// An array nested far deeper than PostgreSQL's 6 dimensions (found with the fuzz target's replay
    /// tool on a 100 kB input, past libFuzzer's default input size): each level was a recursive call,
    /// and the stack ran out.
    @Test func arrayNestedDeeperThanPostgresAllows() throws {
        let text = String(repeating: "{", count: 100_000) + "1" + String(repeating: "}", count: 100_000)
        let json = ValueConverter.convert(text, kind: .array(element: .integer, delimiter: UInt8(ascii: ",")))
        #expect(try parseJSON(json) as? String == text)
    }

    /// Six dimensions, PostgreSQL's limit (MAXDIM), and a few more still convert.
    @Test func arrayWithManyDimensionsStillConverts() {
        let kind = ValueKind.array(element: .integer, delimiter: UInt8(ascii: ","))
        #expect(ValueConverter.convert("{{{{{{1,2}}}}}}", kind: kind) == "[[[[[[1,2]]]]]]")
        let deep = String(repeating: "{", count: 32) + "7" + String(repeating: "}", count: 32)
        #expect(ValueConverter.convert(deep, kind: kind) == String(repeating: "[", count: 32) + "7" + String(repeating: "]", count: 32))
    }

    /// The largest interval PostgreSQL prints still converts exactly.
    @Test func largestIntervalStillConverts() {
        #expect(ValueConverter.convert("P178956970Y7M2147483647DT2562047788H54.775807S", kind: .interval)
                == #"{"months":2147483647,"days":2147483647,"microseconds":9223372036854775807}"#)
        #expect(ValueConverter.convert("P-178956970Y-8M-2147483648DT-2562047788H-54.775808S", kind: .interval)
                == #"{"months":-2147483648,"days":-2147483648,"microseconds":-9223372036854775808}"#)
    }
}
