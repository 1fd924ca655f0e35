/// A strict JSON check (RFC 8259: one value, no trailing commas, escaped control characters, UTF-8):
/// for JSON text Sluice embeds in a message as it is (transaction annotations), and for the fuzz
/// targets' oracles. Iterative, so deep nesting cannot overflow the stack.
public enum JSONValidator {
    /// nil when `bytes` hold exactly one JSON value (whitespace around it allowed), otherwise what is
    /// wrong and where. `requireUTF8` also checks that the text is valid UTF-8 (a JSON text must be).
    public static func problem(in bytes: [UInt8], requireUTF8: Bool = true) -> String? {
        bytes.withUnsafeBufferPointer { buffer -> String? in
            if requireUTF8, String(validating: buffer, as: UTF8.self) == nil { return "not valid UTF-8" }
            var checker = Checker(bytes: buffer)
            do throws(Failure) {
                try checker.document()
                return nil
            } catch {
                return "\(error.reason) at byte \(checker.index) of \(buffer.count)"
            }
        }
    }

    struct Failure: Error { var reason: String }

    struct Checker {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func whitespace() {
            while let byte = peek, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
        }

        mutating func expect(_ byte: UInt8) throws(Failure) {
            guard peek == byte else { throw Failure(reason: "expected '\(Character(Unicode.Scalar(byte)))'") }
            index += 1
        }

        /// One value and nothing after it. Containers are tracked on an explicit stack.
        mutating func document() throws(Failure) {
            var open: [UInt8] = []
            whitespace()
            while true {
                // A value starts here (after `[`, `,`, or `"key":`).
                switch peek {
                case UInt8(ascii: "{"):
                    index += 1
                    whitespace()
                    if peek == UInt8(ascii: "}") {
                        index += 1  // `{}`
                    } else {
                        open.append(UInt8(ascii: "{"))
                        try member()
                        continue
                    }
                case UInt8(ascii: "["):
                    index += 1
                    whitespace()
                    if peek == UInt8(ascii: "]") {
                        index += 1  // `[]`
                    } else {
                        open.append(UInt8(ascii: "["))
                        continue
                    }
                case UInt8(ascii: "\""): try string()
                case UInt8(ascii: "t"): try literal("true")
                case UInt8(ascii: "f"): try literal("false")
                case UInt8(ascii: "n"): try literal("null")
                case nil: throw Failure(reason: "ends where a value should start")
                default: try number()
                }
                // After a value: close containers, or go on to the next element.
                while true {
                    whitespace()
                    guard let container = open.last else {
                        guard index == bytes.count else { throw Failure(reason: "text after the value") }
                        return
                    }
                    if peek == UInt8(ascii: ",") {
                        index += 1
                        whitespace()
                        if container == UInt8(ascii: "{") { try member() }
                        break
                    }
                    let close = container == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                    try expect(close)
                    open.removeLast()
                }
            }
        }

        /// `"key":` with the whitespace after it.
        mutating func member() throws(Failure) {
            try string()
            whitespace()
            try expect(UInt8(ascii: ":"))
            whitespace()
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count,
                  UnsafeBufferPointer(rebasing: bytes[index..<(index + count)]).elementsEqual(
                      UnsafeBufferPointer(start: word.utf8Start, count: count)) else {
                throw Failure(reason: "expected \(word)")
            }
            index += count
        }

        mutating func string() throws(Failure) {
            try expect(UInt8(ascii: "\""))
            while let byte = peek {
                index += 1
                switch byte {
                case UInt8(ascii: "\""): return
                case UInt8(ascii: "\\"):
                    guard let escape = peek else { throw Failure(reason: "ends inside an escape") }
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                         UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        break
                    case UInt8(ascii: "u"):
                        for _ in 0..<4 {
                            guard let digit = peek, isHexDigit(digit) else { throw Failure(reason: "bad \\u escape") }
                            index += 1
                        }
                    default: throw Failure(reason: "bad escape")
                    }
                case 0..<0x20: throw Failure(reason: "unescaped control character in a string")
                default: break
                }
            }
            throw Failure(reason: "unterminated string")
        }

        /// A number token, by the grammar `ValueConverter` checks numbers with.
        mutating func number() throws(Failure) {
            let start = index
            while let byte = peek, isDigit(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+")
                    || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                index += 1
            }
            guard index > start else { throw Failure(reason: "not a value") }
            guard ValueConverter.isJSONNumber(UnsafeBufferPointer(rebasing: bytes[start..<index])) else {
                index = start
                throw Failure(reason: "not a JSON number")
            }
        }

        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

        func isHexDigit(_ byte: UInt8) -> Bool {
            isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
        }
    }
}
