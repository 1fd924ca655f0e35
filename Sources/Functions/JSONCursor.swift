import SluiceCore

/// Reads JSON text in place: the messages Sluice encodes itself (and `sluice fn test` inputs),
/// for pushing them into Lua and for path functions. No intermediate Swift values are built.
struct JSONCursor {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    var atEnd: Bool { index >= bytes.count }

    @inline(__always) var peek: UInt8 { index < bytes.count ? bytes[index] : 0 }

    @inline(__always) mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    mutating func expect(_ byte: UInt8) throws(FunctionError) {
        skipWhitespace()
        guard peek == byte else { throw unexpected("'\(Character(Unicode.Scalar(byte)))'") }
        index += 1
    }

    /// If the next byte is `byte`, consumes it.
    mutating func take(_ byte: UInt8) -> Bool {
        skipWhitespace()
        if peek == byte { index += 1; return true }
        return false
    }

    func unexpected(_ wanted: String) -> FunctionError {
        if atEnd { return FunctionError("the message is not valid JSON: it ends early (expected \(wanted))") }
        return FunctionError("the message is not valid JSON: at byte \(index), expected \(wanted)")
    }

    // MARK: - Strings

    /// The string starting at the cursor (after whitespace); `body` sees its bytes, unescaped.
    mutating func readString<T>(_ scratch: inout [UInt8], _ body: (UnsafeBufferPointer<UInt8>) -> T) throws(FunctionError) -> T {
        skipWhitespace()
        guard peek == UInt8(ascii: "\"") else { throw unexpected("a string") }
        index += 1
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                return body(slice)
            }
            if byte == UInt8(ascii: "\\") { break }
            index += 1
        }
        // Escapes: unescape into the scratch buffer.
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return scratch.withUnsafeBufferPointer(body)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw unexpected("an escape") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(escape)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "u"):
                    var scalar = try readHex4()
                    if (0xD800..<0xDC00).contains(scalar), index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                       bytes[index + 1] == UInt8(ascii: "u") {
                        index += 2
                        let low = try readHex4()
                        if (0xDC00..<0xE000).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            Self.appendUTF8(0xFFFD, to: &scratch)
                            scalar = low
                        }
                    }
                    Self.appendUTF8((0xD800..<0xE000).contains(scalar) ? 0xFFFD : scalar, to: &scratch)
                default: throw unexpected("a valid escape")
                }
            default:
                scratch.append(byte)
            }
        }
        throw unexpected("the end of a string")
    }

    private mutating func readHex4() throws(FunctionError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw unexpected("four hex digits") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw unexpected("a hex digit")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    static func appendUTF8(_ scalar: UInt32, to buffer: inout [UInt8]) {
        switch scalar {
        case 0..<0x80: buffer.append(UInt8(scalar))
        case 0x80..<0x800:
            buffer.append(UInt8(0xC0 | (scalar >> 6)))
            buffer.append(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            buffer.append(UInt8(0xE0 | (scalar >> 12)))
            buffer.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            buffer.append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            buffer.append(UInt8(0xF0 | (scalar >> 18)))
            buffer.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            buffer.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            buffer.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }

    // MARK: - Numbers and literals

    /// The bytes of the number token at the cursor.
    mutating func readNumberToken() throws(FunctionError) -> Range<Int> {
        skipWhitespace()
        let start = index
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
                 UInt8(ascii: "e"), UInt8(ascii: "E"):
                index += 1
            default:
                if index == start { throw unexpected("a value") }
                return start..<index
            }
        }
        if index == start { throw unexpected("a value") }
        return start..<index
    }

    mutating func readLiteral(_ word: StaticString) throws(FunctionError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw unexpected("\(word)") }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] {
            throw unexpected("\(word)")
        }
        index += count
    }

    // MARK: - Skipping

    /// Moves past one value of any kind and returns where it lay.
    @discardableResult
    mutating func skipValue(depth: Int = 0) throws(FunctionError) -> Range<Int> {
        guard depth < 512 else { throw FunctionError("the message nests deeper than 512 levels") }
        skipWhitespace()
        let start = index
        var scratch: [UInt8] = []
        switch peek {
        case UInt8(ascii: "{"):
            index += 1
            if !take(UInt8(ascii: "}")) {
                repeat {
                    try readString(&scratch) { _ in () }
                    try expect(UInt8(ascii: ":"))
                    try skipValue(depth: depth + 1)
                } while take(UInt8(ascii: ","))
                try expect(UInt8(ascii: "}"))
            }
        case UInt8(ascii: "["):
            index += 1
            if !take(UInt8(ascii: "]")) {
                repeat { try skipValue(depth: depth + 1) } while take(UInt8(ascii: ","))
                try expect(UInt8(ascii: "]"))
            }
        case UInt8(ascii: "\""): try readString(&scratch) { _ in () }
        case UInt8(ascii: "t"): try readLiteral("true")
        case UInt8(ascii: "f"): try readLiteral("false")
        case UInt8(ascii: "n"): try readLiteral("null")
        default: _ = try readNumberToken()
        }
        return start..<index
    }
}

/// A user function could not run on a message, or the message could not be given to it.
public struct FunctionError: Error, Sendable, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
