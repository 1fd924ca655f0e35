/// Reads PostgreSQL's array text form (`{1,2,NULL}`, `{{"a b","c\"d"},{e,f}}`, `[0:1]={7,8}`)
/// and writes nested JSON arrays, converting each element by its kind.
struct ArrayLiteralParser {
    let text: UnsafeBufferPointer<UInt8>
    let delimiter: UInt8
    var position = 0
    /// PostgreSQL arrays have at most 6 dimensions (MAXDIM); text nested deeper is not an array
    /// literal it printed, and each level costs a stack frame here.
    static let maxDepth = 64

    init(text: UnsafeBufferPointer<UInt8>, delimiter: UInt8) {
        self.text = text
        self.delimiter = delimiter
    }

    /// Returns false (having written nothing useful) when the text is not an array literal.
    mutating func write(element: ValueKind, to json: inout JSONWriter) -> Bool {
        // Skip a dimension decoration such as `[0:2]=`.
        if text.first == UInt8(ascii: "[") {
            guard let equals = text.firstIndex(of: UInt8(ascii: "=")) else { return false }
            position = equals + 1
        }
        var out = JSONWriter(capacity: text.count + 16)
        guard parseArray(element: element, into: &out, depth: 1), position == text.count else { return false }
        json.raw(out.bytes)
        return true
    }

    private mutating func parseArray(element: ValueKind, into json: inout JSONWriter, depth: Int) -> Bool {
        guard depth <= Self.maxDepth, position < text.count, text[position] == UInt8(ascii: "{") else { return false }
        position += 1
        json.raw(UInt8(ascii: "["))
        if position < text.count, text[position] == UInt8(ascii: "}") {
            position += 1
            json.raw(UInt8(ascii: "]"))
            return true
        }
        var first = true
        while position < text.count {
            if !first { json.raw(UInt8(ascii: ",")) }
            first = false
            switch text[position] {
            case UInt8(ascii: "{"):
                guard parseArray(element: element, into: &json, depth: depth + 1) else { return false }
            case UInt8(ascii: "\""):
                guard let value = parseQuoted() else { return false }
                value.withUnsafeBufferPointer { ValueConverter.write(text: $0, kind: element, to: &json) }
            default:
                let start = position
                while position < text.count, text[position] != delimiter, text[position] != UInt8(ascii: "}") {
                    position += 1
                }
                let raw = UnsafeBufferPointer(rebasing: text[start..<position])
                if raw.count == 4, raw.elementsEqual("NULL".utf8) {
                    json.null()
                } else {
                    ValueConverter.write(text: raw, kind: element, to: &json)
                }
            }
            guard position < text.count else { return false }
            if text[position] == delimiter {
                position += 1
            } else if text[position] == UInt8(ascii: "}") {
                position += 1
                json.raw(UInt8(ascii: "]"))
                return true
            } else {
                return false
            }
        }
        return false
    }

    private mutating func parseQuoted() -> [UInt8]? {
        position += 1
        var value: [UInt8] = []
        while position < text.count {
            let byte = text[position]
            position += 1
            if byte == UInt8(ascii: "\\") {
                guard position < text.count else { return nil }
                value.append(text[position])
                position += 1
            } else if byte == UInt8(ascii: "\"") {
                return value
            } else {
                value.append(byte)
            }
        }
        return nil
    }
}
