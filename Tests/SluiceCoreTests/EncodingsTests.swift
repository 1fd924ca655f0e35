import Foundation
import Testing
@testable import SluiceCore

@Suite("Base64 and PostgresTime")
struct EncodingsTests {
    @Test(arguments: [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
                      ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")])
    func rfc4648Vectors(input: String, expected: String) {
        #expect(Base64.encode(Array(input.utf8)) == expected)
    }

    @Test func allByteValuesMatchFoundation() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 250) }
            #expect(Base64.encode(bytes) == Data(bytes).base64EncodedString())
        }
        let all = (0...255).map { UInt8($0) }
        #expect(Base64.encode(all) == Data(all).base64EncodedString())
    }

    static let second: Int64 = 1_000_000
    static let day: Int64 = 86_400 * second

    @Test(arguments: [
        (0, "2000-01-01T00:00:00.000000Z"),
        (1, "2000-01-01T00:00:00.000001Z"),
        (-1, "1999-12-31T23:59:59.999999Z"),
        (-500_000, "1999-12-31T23:59:59.500000Z"),
        (-946_684_800 * 1_000_000, "1970-01-01T00:00:00.000000Z"),
        (-3_155_673_600 * 1_000_000, "1900-01-01T00:00:00.000000Z"),
        (-3_155_673_600 * 1_000_000 - 1, "1899-12-31T23:59:59.999999Z"),
        ((1_709_251_199 - 946_684_800) * 1_000_000 + 999_999, "2024-02-29T23:59:59.999999Z"),
        ((1_709_251_199 - 946_684_800 + 1) * 1_000_000, "2024-03-01T00:00:00.000000Z"),
        ((1_795_946_400 - 946_684_800) * 1_000_000 + 123_456, "2026-11-29T10:00:00.123456Z"),
        (59 * 86_400 * 1_000_000, "2000-02-29T00:00:00.000000Z"),
        (366 * 86_400 * 1_000_000, "2001-01-01T00:00:00.000000Z"),
    ] as [(Int64, String)])
    func iso8601(micros: Int64, expected: String) {
        #expect(PostgresTime.iso8601(microsecondsSince2000: micros) == expected)
    }

    @Test func iso8601MatchesFoundationOverARange() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        // Every ~97 days from 1901 to 2099, at odd times of day.
        var micros: Int64 = -3_124_137_600 * 1_000_000 + 12_345_678_901
        while micros < 3_155_760_000 * 1_000_000 {
            let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
            let fraction = micros - seconds * 1_000_000
            let date = Date(timeIntervalSince1970: TimeInterval(seconds + PostgresTime.unixEpochOffset))
            let fractionText = String(fraction)
            let expected = formatter.string(from: date) + "."
                + String(repeating: "0", count: 6 - fractionText.count) + fractionText + "Z"
            #expect(PostgresTime.iso8601(microsecondsSince2000: micros) == expected)
            micros += 97 * 86_400 * 1_000_000 + 3_723_000_017
        }
    }
}
