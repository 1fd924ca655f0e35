/// Appends JSON text to a byte buffer. Messages are written straight to bytes: no intermediate
/// dictionaries, and numeric values keep their exact digits.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 512) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inline(__always) public mutating func raw(_ byte: UInt8) { bytes.append(byte) }

    @inline(__always) public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    public mutating func raw<C: Collection>(_ utf8: C) where C.Element == UInt8 {
        bytes.append(contentsOf: utf8)
    }

    public mutating func null() { raw("null") }

    public mutating func bool(_ value: Bool) { value ? raw("true") : raw("false") }

    public mutating func number<I: BinaryInteger>(_ value: I) { raw(String(value).utf8) }

    // The integers every message has (LSNs, indexes, interval parts): digits straight into the buffer.
    public mutating func number(_ value: Int) { number(Int64(value)) }

    public mutating func number(_ value: Int64) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        Self.appendDigits(value.magnitude, to: &bytes)
    }

    public mutating func number(_ value: UInt64) { Self.appendDigits(value, to: &bytes) }

    /// Appends the decimal digits of `value`.
    static func appendDigits(_ value: UInt64, to out: inout [UInt8]) {
        var rest = value
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(truncatingIfNeeded: rest % 10) &+ UInt8(ascii: "0")
                rest /= 10
            } while rest > 0
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// Writes `bytes` in Base64 as a JSON string (its alphabet never needs escaping).
    public mutating func base64String(_ data: UnsafeBufferPointer<UInt8>) {
        bytes.append(UInt8(ascii: "\""))
        Base64.append(data, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func string(_ text: String) {
        var text = text
        text.withUTF8 { string(utf8: $0) }
    }

    /// Writes `utf8` as a JSON string, escaping quotes, backslashes and control characters.
    /// Runs of bytes that need no escape are copied in one go.
    public mutating func string<C: Collection>(utf8: C) where C.Element == UInt8 {
        bytes.append(UInt8(ascii: "\""))
        let copied: Void? = utf8.withContiguousStorageIfAvailable { appendEscaped($0) }
        if copied == nil {
            for byte in utf8 { appendEscaped(byte) }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    @inline(__always) static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == 0x7F
    }

    private mutating func appendEscaped(_ buffer: UnsafeBufferPointer<UInt8>) {
        var runStart = 0
        for index in 0..<buffer.count where Self.needsEscape(buffer[index]) {
            if runStart < index { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[runStart..<index])) }
            appendEscaped(buffer[index])
            runStart = index + 1
        }
        if runStart < buffer.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[runStart...])) }
    }

    @inline(__always) private mutating func appendEscaped(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): raw("\\\"")
        case UInt8(ascii: "\\"): raw("\\\\")
        case UInt8(ascii: "\n"): raw("\\n")
        case UInt8(ascii: "\r"): raw("\\r")
        case UInt8(ascii: "\t"): raw("\\t")
        case 0x08: raw("\\b")
        case 0x0C: raw("\\f")
        case 0..<0x20, 0x7F:
            raw("\\u00")
            bytes.append(Self.hexDigits[Int(byte >> 4)])
            bytes.append(Self.hexDigits[Int(byte & 0xF)])
        default: bytes.append(byte)
        }
    }

    /// Writes `"key":`.
    public mutating func key(_ name: String) {
        string(name)
        bytes.append(UInt8(ascii: ":"))
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}
