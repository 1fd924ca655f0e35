/// Reads PostgreSQL's composite (row) text form — `(1,"a b",,"","q""\\x")` — and writes a JSON object
/// keyed by attribute name, converting each attribute by its kind.
///
/// The form, as `record_out` writes it and `record_in` reads it: fields between `(` and `)`, separated
/// by `,`; an empty field is NULL (`""` is the empty string); inside double quotes `""` is a quote; a
/// backslash takes the next character literally (record_out doubles `"` and `\` inside quotes).
struct CompositeLiteralParser {
    let text: UnsafeBufferPointer<UInt8>
    var position = 0

    init(text: UnsafeBufferPointer<UInt8>) {
        self.text = text
    }

    /// Returns false (having written nothing) when the text is not a row literal with exactly
    /// `fields.count` fields.
    mutating func write(fields: [ValueKind.Field], to json: inout JSONWriter) -> Bool {
        guard text.first == UInt8(ascii: "(") else { return false }
        position = 1
        var out = JSONWriter(capacity: text.count + 16 * fields.count + 2)
        out.raw(UInt8(ascii: "{"))
        var value: [UInt8] = []
        for (index, field) in fields.enumerated() {
            if index > 0 { out.raw(UInt8(ascii: ",")) }
            out.key(field.name)
            guard let isNull = readField(into: &value) else { return false }
            if isNull {
                out.null()
            } else {
                value.withUnsafeBufferPointer { ValueConverter.write(text: $0, kind: field.kind, to: &out) }
            }
            // After the field: a comma before the next one, the closing parenthesis after the last.
            guard position < text.count else { return false }
            let expected = index == fields.count - 1 ? UInt8(ascii: ")") : UInt8(ascii: ",")
            guard text[position] == expected else { return false }
            position += 1
        }
        if fields.isEmpty {
            // A row type without attributes prints as `()`.
            guard position < text.count, text[position] == UInt8(ascii: ")") else { return false }
            position += 1
        }
        guard position == text.count else { return false }
        out.raw(UInt8(ascii: "}"))
        json.raw(out.bytes)
        return true
    }

    /// Reads one field up to (not including) the next unquoted `,` or `)`. Returns true for NULL,
    /// false for a value (in `value`), nil for a malformed field.
    private mutating func readField(into value: inout [UInt8]) -> Bool? {
        value.removeAll(keepingCapacity: true)
        guard position < text.count else { return nil }
        if text[position] == UInt8(ascii: ",") || text[position] == UInt8(ascii: ")") { return true }
        var inQuotes = false
        while position < text.count {
            let byte = text[position]
            if byte == UInt8(ascii: "\\") {
                guard position + 1 < text.count else { return nil }
                value.append(text[position + 1])
                position += 2
            } else if byte == UInt8(ascii: "\"") {
                if inQuotes, position + 1 < text.count, text[position + 1] == UInt8(ascii: "\"") {
                    value.append(byte)
                    position += 2
                } else {
                    inQuotes.toggle()
                    position += 1
                }
            } else if !inQuotes, byte == UInt8(ascii: ",") || byte == UInt8(ascii: ")") {
                return false
            } else {
                value.append(byte)
                position += 1
            }
        }
        return nil
    }
}
