import Foundation

/// Turns a PostgreSQL value's text form into JSON, by the mapping in ARCHITECTURE.md.
/// One converter serves the replication stream and backfills. It expects the session settings
/// that Sluice's connections set: DateStyle ISO, TimeZone UTC, IntervalStyle iso_8601, bytea hex.
public enum ValueConverter {
    /// Writes the value of `cell` (from `tuple`) as JSON. Unchanged TOAST values must be handled
    /// by the caller; they are written as null here.
    public static func write(_ cell: Cell, of tuple: Tuple, kind: ValueKind, to json: inout JSONWriter) {
        switch cell {
        case .null, .unchangedToast:
            json.null()
        case .text(let range):
            tuple.bytes.withUnsafeBufferPointer { buffer in
                write(text: UnsafeBufferPointer(rebasing: buffer[range]), kind: kind, to: &json)
            }
        case .binary(let range):
            // Sluice asks for text format; a binary value is shown as bytea hex so nothing is lost.
            var hex: [UInt8] = Array("\\x".utf8)
            for byte in tuple.bytes[range] {
                hex.append(JSONWriter.hexDigits[Int(byte >> 4)])
                hex.append(JSONWriter.hexDigits[Int(byte & 0xF)])
            }
            json.string(utf8: hex)
        }
    }

    /// Converts a text value to a JSON string, e.g. for tests: `convert("t", .bool) == "true"`.
    public static func convert(_ text: String, kind: ValueKind) -> String {
        var json = JSONWriter()
        var text = text
        text.withUTF8 { write(text: $0, kind: kind, to: &json) }
        return String(decoding: json.bytes, as: UTF8.self)
    }

    public static func write(text: UnsafeBufferPointer<UInt8>, kind: ValueKind, to json: inout JSONWriter) {
        switch kind {
        case .bool:
            json.bool(text.first == UInt8(ascii: "t"))
        case .integer:
            // Always digits from the server; anything else (a stale composite attribute type) stays text
            // rather than break the message.
            if isJSONNumber(text) { json.raw(text) } else { json.string(utf8: text) }
        case .float, .numeric:
            // PostgreSQL ≥ 12 prints floats in their shortest exact form when extra_float_digits > 0
            // (`1.1`, `1e+20`, `1e-07`, `-0`): all JSON numbers. numeric never uses an exponent.
            if isJSONNumber(text) { json.raw(text) } else { json.string(utf8: text) }
        case .json:
            json.raw(text)
        case .timestamptz:
            writeTimestamp(text, withZone: true, to: &json)
        case .timestamp:
            writeTimestamp(text, withZone: false, to: &json)
        case .date:
            writeDate(text, to: &json)
        case .interval:
            writeInterval(text, to: &json)
        case .array(let element, let delimiter):
            var parser = ArrayLiteralParser(text: text, delimiter: delimiter)
            if !parser.write(element: element, to: &json) {
                // Not an array literal we understand: keep the text rather than invent a value.
                json.string(utf8: text)
            }
        case .composite(let fields):
            var parser = CompositeLiteralParser(text: text)
            if !parser.write(fields: fields, to: &json) {
                // Not a row literal with these attributes (e.g. the type changed since it was looked up).
                json.string(utf8: text)
            }
        case .text:
            json.string(utf8: text)
        }
    }

    /// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`. Rejects NaN, Infinity
    /// and anything else that is not a JSON number.
    public static func isJSONNumber(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        let count = text.count
        @inline(__always) func isDigit(_ i: Int) -> Bool { i < count && text[i] >= 0x30 && text[i] <= 0x39 }
        if index < count, text[index] == UInt8(ascii: "-") { index += 1 }
        guard isDigit(index) else { return false }
        if text[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while isDigit(index) { index += 1 }
        }
        if index < count, text[index] == UInt8(ascii: ".") {
            index += 1
            guard isDigit(index) else { return false }
            while isDigit(index) { index += 1 }
        }
        if index < count, text[index] == UInt8(ascii: "e") || text[index] == UInt8(ascii: "E") {
            index += 1
            if index < count, text[index] == UInt8(ascii: "+") || text[index] == UInt8(ascii: "-") { index += 1 }
            guard isDigit(index) else { return false }
            while isDigit(index) { index += 1 }
        }
        return index == count
    }

    // MARK: - Dates and timestamps

    /// Writes the date part of an ISO-style value (`2026-11-29`, `0044-03-15` with `isBC`, `12345-01-02`)
    /// as ISO 8601: BC years in astronomical numbering with a sign (44 BC → `-0043`, 1 BC → `0000`),
    /// years past 9999 in the expanded form with a `+` (`+12345-01-02`), as java.time prints and parses them.
    static func appendISODate<C: Collection>(_ datePart: C, isBC: Bool, to out: inout [UInt8]) where C.Element == UInt8 {
        let yearDigits = datePart.prefix(while: { $0 != UInt8(ascii: "-") })
        let rest = datePart.drop(while: { $0 != UInt8(ascii: "-") })
        if isBC, let year = Int(String(decoding: yearDigits, as: UTF8.self)) {
            let astronomical = String(year - 1)
            if year > 1 { out.append(UInt8(ascii: "-")) } // 1 BC is year 0000
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: max(0, 4 - astronomical.count)))
            out.append(contentsOf: astronomical.utf8)
        } else {
            if yearDigits.count > 4 { out.append(UInt8(ascii: "+")) }
            out.append(contentsOf: yearDigits)
        }
        out.append(contentsOf: rest)
    }

    /// `2026-11-29` stays; `0044-03-15 BC` → `-0043-03-15`; `12345-01-02` → `+12345-01-02`;
    /// `infinity`/`-infinity` keep their text.
    static func writeDate(_ text: UnsafeBufferPointer<UInt8>, to json: inout JSONWriter) {
        guard let first = text.first, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else {
            json.string(utf8: text)
            return
        }
        var datePart = text[...]
        var isBC = false
        if text.count > 3, text.suffix(3).elementsEqual(" BC".utf8) {
            isBC = true
            datePart = text.dropLast(3)
        }
        var out: [UInt8] = []
        out.reserveCapacity(text.count + 2)
        appendISODate(datePart, isBC: isBC, to: &out)
        json.string(utf8: out)
    }

    /// `2026-11-29 10:00:00.5+00` → `2026-11-29T10:00:00.500000Z`; ±infinity keep their text;
    /// BC and five-digit years as in `appendISODate` (`-0043-03-15T…`, `+12345-01-02T…`).
    static func writeTimestamp(_ text: UnsafeBufferPointer<UInt8>, withZone: Bool, to json: inout JSONWriter) {
        if writeCommonTimestamp(text, withZone: withZone, to: &json) { return }
        var chars = Array(text)
        guard let space = chars.firstIndex(of: UInt8(ascii: " ")), space > 0,
              chars[0] != UInt8(ascii: "i"), chars[0] != UInt8(ascii: "-") || chars.count > 10
        else { json.string(utf8: text); return }

        var isBC = false
        if chars.count > 3, chars.suffix(3).elementsEqual(" BC".utf8) {
            isBC = true
            chars.removeLast(3)
        }
        // `1 BC`: the only space was the one before BC, so there is no time part.
        guard space < chars.count else { json.string(utf8: text); return }
        let datePart = chars[..<space]
        var timePart = Array(chars[(space + 1)...])
        var zone: [UInt8] = []
        if withZone, let sign = timePart.lastIndex(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }) {
            zone = Array(timePart[sign...])
            timePart.removeSubrange(sign...)
        }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        appendISODate(datePart, isBC: isBC, to: &out)
        out.append(UInt8(ascii: "T"))
        // hh:mm:ss then always six fractional digits.
        if let dot = timePart.firstIndex(of: UInt8(ascii: ".")) {
            out.append(contentsOf: timePart[..<dot])
            let fraction = timePart[(dot + 1)...]
            out.append(UInt8(ascii: "."))
            out.append(contentsOf: fraction.prefix(6))
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: max(0, 6 - fraction.count)))
        } else {
            out.append(contentsOf: timePart)
            out.append(contentsOf: ".000000".utf8)
        }
        if withZone {
            if zone.isEmpty || zone.elementsEqual("+00".utf8) {
                out.append(UInt8(ascii: "Z"))
            } else {
                // A session not in UTC: keep the offset, written ±hh:mm.
                out.append(contentsOf: zone.prefix(3))
                out.append(UInt8(ascii: ":"))
                out.append(contentsOf: zone.count >= 6 ? Array(zone[4..<6]) : Array("00".utf8))
            }
        }
        json.string(utf8: out)
    }

    /// The form nearly every value has, `2026-11-29 10:00:00[.f…]` (plus `+00` with a zone, as Sluice's
    /// UTC sessions print it), written without building pieces. false for anything else (BC, years past
    /// 9999, infinities, another zone), which the general path handles.
    private static func writeCommonTimestamp(_ text: UnsafeBufferPointer<UInt8>, withZone: Bool,
                                             to json: inout JSONWriter) -> Bool {
        var end = text.count
        if withZone {
            guard end >= 22, text[end - 3] == UInt8(ascii: "+"), text[end - 2] == UInt8(ascii: "0"),
                  text[end - 1] == UInt8(ascii: "0") else { return false }
            end -= 3
        }
        guard end >= 19, end <= 26, end != 20 else { return false }
        @inline(__always) func isDigit(_ i: Int) -> Bool { text[i] &- UInt8(ascii: "0") < 10 }
        for i in 0..<19 where i != 4 && i != 7 && i != 10 && i != 13 && i != 16 && !isDigit(i) { return false }
        guard text[4] == UInt8(ascii: "-"), text[7] == UInt8(ascii: "-"), text[10] == UInt8(ascii: " "),
              text[13] == UInt8(ascii: ":"), text[16] == UInt8(ascii: ":") else { return false }
        if end > 19 {
            guard text[19] == UInt8(ascii: ".") else { return false }
            for i in 20..<end where !isDigit(i) { return false }
        }
        // "YYYY-MM-DDTHH:MM:SS.ffffff" then Z with a zone.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 29) { out in
            for i in 0..<19 { out[i + 1] = text[i] }
            out[0] = UInt8(ascii: "\"")
            out[11] = UInt8(ascii: "T")
            out[20] = UInt8(ascii: ".")
            for i in 0..<6 { out[21 + i] = 20 + i < end ? text[20 + i] : UInt8(ascii: "0") }
            var count = 27
            if withZone { out[count] = UInt8(ascii: "Z"); count += 1 }
            out[count] = UInt8(ascii: "\"")
            json.raw(UnsafeBufferPointer(rebasing: out[..<(count + 1)]))
        }
        return true
    }

    // MARK: - Intervals

    /// IntervalStyle iso_8601 (`P1Y2M3DT4H5M6.5S`, signs per component) →
    /// `{"months":14,"days":3,"microseconds":14706500000}`.
    static func writeInterval(_ text: UnsafeBufferPointer<UInt8>, to json: inout JSONWriter) {
        guard let parsed = parseISOInterval(text) else { json.string(utf8: text); return }
        json.raw("{\"months\":")
        json.number(parsed.months)
        json.raw(",\"days\":")
        json.number(parsed.days)
        json.raw(",\"microseconds\":")
        json.number(parsed.microseconds)
        json.raw(UInt8(ascii: "}"))
    }

    /// nil when the text is not such an interval, or a part does not fit 64 bits (PostgreSQL's own
    /// intervals always fit: months and days are 32-bit, the time part is 64-bit microseconds).
    static func parseISOInterval(_ text: UnsafeBufferPointer<UInt8>) -> (months: Int64, days: Int64, microseconds: Int64)? {
        guard text.first == UInt8(ascii: "P") else { return nil }
        var months: Int64 = 0, days: Int64 = 0, micros: Int64 = 0
        var inTime = false
        var number: [UInt8] = []
        /// `total += number × factor`, false on overflow or when the number is not an integer.
        func add(_ total: inout Int64, _ string: String, times factor: Int64) -> Bool {
            guard let value = Int64(string) else { return false }
            let (product, overflowed) = value.multipliedReportingOverflow(by: factor)
            let (sum, sumOverflowed) = total.addingReportingOverflow(product)
            if overflowed || sumOverflowed { return false }
            total = sum
            return true
        }
        for byte in text.dropFirst() {
            switch byte {
            case UInt8(ascii: "T"): inTime = true
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."):
                number.append(byte)
            default:
                let string = String(decoding: number, as: UTF8.self)
                number.removeAll(keepingCapacity: true)
                let added: Bool
                switch (byte, inTime) {
                case (UInt8(ascii: "Y"), false): added = add(&months, string, times: 12)
                case (UInt8(ascii: "M"), false): added = add(&months, string, times: 1)
                case (UInt8(ascii: "W"), false): added = add(&days, string, times: 7)
                case (UInt8(ascii: "D"), false): added = add(&days, string, times: 1)
                case (UInt8(ascii: "H"), true): added = add(&micros, string, times: 3_600_000_000)
                case (UInt8(ascii: "M"), true): added = add(&micros, string, times: 60_000_000)
                case (UInt8(ascii: "S"), true):
                    guard let value = secondsToMicros(string) else { return nil }
                    let (sum, overflowed) = micros.addingReportingOverflow(value)
                    added = !overflowed
                    micros = sum
                default: return nil
                }
                guard added else { return nil }
            }
        }
        return number.isEmpty ? (months, days, micros) : nil
    }

    /// `-6.5` → -6500000, exactly (no floating point); nil past 64 bits of microseconds.
    static func secondsToMicros(_ text: String) -> Int64? {
        let negative = text.hasPrefix("-")
        let body = negative || text.hasPrefix("+") ? text.dropFirst() : Substring(text)
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = Int64(parts[0].isEmpty ? "0" : parts[0]) else { return nil }
        var fraction: Int64 = 0
        if parts.count == 2 {
            let digits = String(parts[1].prefix(6)).padding(toLength: 6, withPad: "0", startingAt: 0)
            guard let value = Int64(digits) else { return nil }
            fraction = value
        }
        let (scaled, overflowed) = whole.multipliedReportingOverflow(by: 1_000_000)
        let (magnitude, sumOverflowed) = scaled.addingReportingOverflow(fraction)
        guard !overflowed, !sumOverflowed else { return nil }
        guard negative else { return magnitude }
        let (negated, negationOverflowed) = Int64(0).subtractingReportingOverflow(magnitude)
        return negationOverflowed ? nil : negated
    }
}
