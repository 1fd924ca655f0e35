import Foundation
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

    @inline(__always) mutating func expect(_ byte: UInt8) throws(FunctionError) {
        if index < bytes.count, bytes[index] == byte {
            index += 1
            return
        }
        try expectSlowly(byte)
    }

    private mutating func expectSlowly(_ byte: UInt8) throws(FunctionError) {
        skipWhitespace()
        guard peek == byte else { throw unexpected("'\(Character(Unicode.Scalar(byte)))'") }
        index += 1
    }

    /// If the next byte is `byte`, consumes it.
    @inline(__always) mutating func take(_ byte: UInt8) -> Bool {
        if index < bytes.count, bytes[index] == byte {
            index += 1
            return true
        }
        skipWhitespace()
        if peek == byte { index += 1; return true }
        return false
    }

    func unexpected(_ wanted: String) -> FunctionError {
        if atEnd { return FunctionError("the message is not valid JSON: it ends early (expected \(wanted))") }
        return FunctionError("the message is not valid JSON: at byte \(index), expected \(wanted)")
    }

    // MARK: - Strings

    /// Where the first `"`, `\\` or control character (which JSON strings must escape) at or after
    /// `start` is (or a little before `end`: the caller checks the last bytes one by one). Eight bytes at a time.
    @inline(__always)
    static func plainRun(_ base: UnsafePointer<UInt8>, from start: Int, to end: Int) -> Int {
        var at = start
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        while at + 8 <= end {
            let word = UInt64(littleEndian: UnsafeRawPointer(base + at).loadUnaligned(as: UInt64.self))
            let quotes = word ^ 0x2222_2222_2222_2222, slashes = word ^ 0x5C5C_5C5C_5C5C_5C5C
            // A byte of 0 in either, or a byte below 0x20 in the word: its high bit is the lowest one
            // set (exact for the first such byte).
            let controls = (word &- 0x2020_2020_2020_2020) & ~word
            let found = ((quotes &- ones) & ~quotes | (slashes &- ones) & ~slashes | controls) & highs
            if found != 0 { return at + found.trailingZeroBitCount / 8 }
            at += 8
        }
        return at
    }

    /// The string starting at the cursor (after whitespace); `body` sees its bytes, unescaped.
    mutating func readString<T>(_ scratch: inout [UInt8], _ body: (UnsafeBufferPointer<UInt8>) -> T) throws(FunctionError) -> T {
        skipWhitespace()
        guard peek == UInt8(ascii: "\"") else { throw unexpected("a string") }
        index += 1
        let start = index
        index = Self.plainRun(bytes.baseAddress!, from: index, to: bytes.count)
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                return body(slice)
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw unescapedControlCharacter() }
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
            case 0..<0x20:
                index -= 1
                throw unescapedControlCharacter()
            default:
                scratch.append(byte)
            }
        }
        throw unexpected("the end of a string")
    }

    /// A raw byte below 0x20 inside a string: JSON wants it escaped (`\n`, `\u0001`).
    private func unescapedControlCharacter() -> FunctionError {
        FunctionError("the message is not valid JSON: at byte \(index), a control character inside a string (JSON escapes it, e.g. \\u0001)")
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

    /// The bytes of the number token at the cursor, which must follow JSON's number grammar (a path
    /// function or a transform may write it out as it came).
    mutating func readNumberToken() throws(FunctionError) -> Range<Int> {
        skipWhitespace()
        let start = index
        let base = bytes.baseAddress
        var at = index
        while at < bytes.count {
            switch base![at] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
                 UInt8(ascii: "e"), UInt8(ascii: "E"):
                at += 1
            default:
                return try numberToken(start..<at)
            }
        }
        return try numberToken(start..<at)
    }

    private mutating func numberToken(_ token: Range<Int>) throws(FunctionError) -> Range<Int> {
        if token.isEmpty { throw unexpected("a value") }
        guard ValueConverter.isJSONNumber(UnsafeBufferPointer(rebasing: bytes[token])) else { throw unexpected("a number") }
        index = token.upperBound
        return token
    }

    mutating func readLiteral(_ word: StaticString) throws(FunctionError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count, memcmp(bytes.baseAddress! + index, word.utf8Start, count) == 0 else {
            throw unexpected("\(word)")
        }
        index += count
    }

    // MARK: - Skipping

    /// Moves past one value of any kind and returns where it lay; checks it as strictly as reading
    /// it would (strings and their escapes too), so that a value skipped now reads without errors later.
    /// Nesting is counted like `LuaValueReader`'s: the value itself is at `depth`.
    @discardableResult
    mutating func skipValue(depth: Int = 0, maxDepth: Int = 512) throws(FunctionError) -> Range<Int> {
        guard depth < maxDepth else { throw FunctionError("the message nests deeper than \(maxDepth) levels") }
        skipWhitespace()
        let start = index
        switch peek {
        case UInt8(ascii: "{"):
            index += 1
            if !take(UInt8(ascii: "}")) {
                repeat {
                    try skipString()
                    try expect(UInt8(ascii: ":"))
                    try skipValue(depth: depth + 1, maxDepth: maxDepth)
                } while take(UInt8(ascii: ","))
                try expect(UInt8(ascii: "}"))
            }
        case UInt8(ascii: "["):
            index += 1
            if !take(UInt8(ascii: "]")) {
                repeat { try skipValue(depth: depth + 1, maxDepth: maxDepth) } while take(UInt8(ascii: ","))
                try expect(UInt8(ascii: "]"))
            }
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "t"): try readLiteral("true")
        case UInt8(ascii: "f"): try readLiteral("false")
        case UInt8(ascii: "n"): try readLiteral("null")
        default: _ = try readNumberToken()
        }
        return start..<index
    }

    /// Moves past an object (the cursor at its `{`) like `skipValue`, counting its fields.
    mutating func skipObject(maxDepth: Int) throws(FunctionError) -> (range: Range<Int>, fields: Int) {
        skipWhitespace()
        let start = index
        try expect(UInt8(ascii: "{"))
        var fields = 0
        if !take(UInt8(ascii: "}")) {
            repeat {
                try skipString()
                try expect(UInt8(ascii: ":"))
                try skipValue(depth: 1, maxDepth: maxDepth)
                fields += 1
            } while take(UInt8(ascii: ","))
            try expect(UInt8(ascii: "}"))
        }
        return (start..<index, fields)
    }

    /// Moves past a string, with the checks (and errors, at the same bytes) of `readString`.
    mutating func skipString() throws(FunctionError) {
        skipWhitespace()
        guard peek == UInt8(ascii: "\"") else { throw unexpected("a string") }
        let base = bytes.baseAddress!
        let end = bytes.count
        var at = Self.plainRun(base, from: index + 1, to: end)
        while at < end {
            let byte = base[at]
            at += 1
            if byte == UInt8(ascii: "\"") {
                index = at
                return
            }
            if byte != UInt8(ascii: "\\") {
                if byte < 0x20 {
                    index = at - 1
                    throw unescapedControlCharacter()
                }
                continue
            }
            index = at
            guard at < end else { throw unexpected("an escape") }
            let escape = base[at]
            index += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "n"), UInt8(ascii: "r"),
                 UInt8(ascii: "t"), UInt8(ascii: "b"), UInt8(ascii: "f"):
                break
            case UInt8(ascii: "u"):
                _ = try readHex4()
            default: throw unexpected("a valid escape")
            }
            at = index
        }
        index = at
        throw unexpected("the end of a string")
    }
}

/// A user function could not run on a message, or the message could not be given to it.
public struct FunctionError: Error, Sendable, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
