/// PostgreSQL timestamps (microseconds since 2000-01-01 UTC) as ISO 8601 text.
public enum PostgresTime {
    /// Seconds between 1970-01-01 and 2000-01-01.
    public static let unixEpochOffset: Int64 = 946_684_800

    /// `2026-11-29T10:00:00.123456Z`.
    public static func iso8601(microsecondsSince2000 value: Int64) -> String {
        let unixMicros = value + unixEpochOffset * 1_000_000
        var seconds = unixMicros / 1_000_000
        var micros = unixMicros % 1_000_000
        if micros < 0 { micros += 1_000_000; seconds -= 1 }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 { secondOfDay += 86_400; days -= 1 }
        let (year, month, day) = civilDate(daysSince1970: days)
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T" + pad(secondOfDay / 3600, 2) + ":"
            + pad(secondOfDay / 60 % 60, 2) + ":" + pad(secondOfDay % 60, 2) + "." + pad(micros, 6) + "Z"
    }

    /// Days since 1970-01-01 → proleptic Gregorian (year, month, day) (Howard Hinnant's algorithm).
    static func civilDate(daysSince1970: Int64) -> (Int64, Int64, Int64) {
        let z = daysSince1970 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}

/// Standard base64 (RFC 4648, with padding), without Foundation.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        bytes.withUnsafeBufferPointer { append($0, to: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the Base64 form of `bytes` (with `=` padding) to `out`.
    public static func append(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        alphabet.withUnsafeBufferPointer { alphabet in
            @inline(__always) func sextet(_ n: UInt32, _ shift: UInt32) -> UInt8 { alphabet[Int(n >> shift & 63)] }
            var index = 0
            while index + 2 < bytes.count {
                let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
                out.append(sextet(n, 18))
                out.append(sextet(n, 12))
                out.append(sextet(n, 6))
                out.append(sextet(n, 0))
                index += 3
            }
            let rest = bytes.count - index
            if rest == 1 {
                let n = UInt32(bytes[index]) << 16
                out.append(sextet(n, 18))
                out.append(sextet(n, 12))
                out.append(UInt8(ascii: "="))
                out.append(UInt8(ascii: "="))
            } else if rest == 2 {
                let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
                out.append(sextet(n, 18))
                out.append(sextet(n, 12))
                out.append(sextet(n, 6))
                out.append(UInt8(ascii: "="))
            }
        }
    }
}

/// A name-derived UUID (version 8, RFC 9562): the same name always gives the same id.
public enum StableUUID {
    public static func make(from name: String) -> String {
        func fnv1a(_ seed: UInt64) -> UInt64 {
            var hash: UInt64 = seed
            for byte in name.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
            return hash
        }
        var bytes = withUnsafeBytes(of: fnv1a(0xcbf2_9ce4_8422_2325).bigEndian, Array.init)
            + withUnsafeBytes(of: fnv1a(0x84222325_cbf29ce4).bigEndian, Array.init)
        bytes[6] = bytes[6] & 0x0F | 0x80 // version 8
        bytes[8] = bytes[8] & 0x3F | 0x80 // RFC variant
        let hex = bytes.map { byte in
            String(decoding: [JSONWriter.hexDigits[Int(byte >> 4)], JSONWriter.hexDigits[Int(byte & 0xF)]], as: UTF8.self)
        }.joined()
        let characters = Array(hex)
        let groups = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(characters[$0]) }
        return groups.joined(separator: "-")
    }
}
