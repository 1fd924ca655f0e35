/// A YAML value to write, with its keys in the order they should appear.
indirect enum YAMLValue {
    /// Text: written plain when YAML reads it back as the same string, otherwise double-quoted;
    /// multi-line text becomes a `|` block.
    case string(String)
    /// A scalar copied from the input whose type only its text tells (annotation values, which Sluice
    /// types as JSON does): plain for `5`, `true` and `null`, so YAML tools read them alike; quoted
    /// for text YAML alone would type (`yes`, `0755`).
    case verbatim(String)
    case bool(Bool)
    case int(Int)
    case list([YAMLValue])
    case map([(String, YAMLValue)])
}

extension YAMLValue: Equatable {
    static func == (lhs: YAMLValue, rhs: YAMLValue) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)), (.verbatim(let a), .verbatim(let b)): a == b
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.list(let a), .list(let b)): a == b
        case (.map(let a), .map(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }
}

/// Writes `YAMLValue` trees as block-style YAML. Strings are quoted whenever a plain scalar could
/// be misread (`yes`, `0755`, `${VAR}`, `a: b`), so what is read back is what was written.
enum YAMLWriter {
    static func document(_ pairs: [(String, YAMLValue)], header: [String] = []) -> String {
        var out = header.map { "# " + $0.filter { $0 != "\n" && $0 != "\r" } + "\n" }.joined()
        if !header.isEmpty { out += "\n" }
        for (key, value) in pairs { writeEntry(key, value, indent: 0, into: &out) }
        return out
    }

    // MARK: - Block structure

    private static func writeEntry(_ key: String, _ value: YAMLValue, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        out += pad + scalarKey(key) + ":"
        writeValue(value, indent: indent, into: &out)
    }

    /// The part after `key:` — inline for scalars and empty or short collections, else on the next lines.
    private static func writeValue(_ value: YAMLValue, indent: Int, into out: inout String) {
        switch value {
        case .map(let pairs) where pairs.isEmpty:
            out += " {}\n"
        case .map(let pairs):
            out += "\n"
            for (key, child) in pairs { writeEntry(key, child, indent: indent + 2, into: &out) }
        case .list(let items):
            if let flow = flowList(items) {
                out += " " + flow + "\n"
            } else {
                out += "\n"
                for item in items { writeItem(item, indent: indent + 2, into: &out) }
            }
        case .string(let text) where isBlockCandidate(text):
            out += " " + blockScalar(text, indent: indent + 2)
        default:
            out += " " + inlineScalar(value) + "\n"
        }
    }

    private static func writeItem(_ item: YAMLValue, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch item {
        case .map(let pairs) where !pairs.isEmpty:
            // The first key sits on the dash line; the rest line up under it.
            out += pad + "- " + scalarKey(pairs[0].0) + ":"
            writeValue(pairs[0].1, indent: indent + 2, into: &out)
            for (key, child) in pairs.dropFirst() { writeEntry(key, child, indent: indent + 2, into: &out) }
        case .map:
            out += pad + "- {}\n"
        case .list(let items):
            if let flow = flowList(items) {
                out += pad + "- " + flow + "\n"
            } else {
                out += pad + "-\n"
                for inner in items { writeItem(inner, indent: indent + 2, into: &out) }
            }
        case .string(let text) where isBlockCandidate(text):
            out += pad + "- " + blockScalar(text, indent: indent + 2)
        default:
            out += pad + "- " + inlineScalar(item) + "\n"
        }
    }

    /// `[a, b, c]` for a short list of plain scalars; nil when block style reads better or is needed.
    private static func flowList(_ items: [YAMLValue]) -> String? {
        if items.isEmpty { return "[]" }
        var parts: [String] = []
        for item in items {
            switch item {
            case .string(let text) where isPlainSafe(text) && !looksTyped(text): parts.append(text)
            case .verbatim(let text) where isPlainVerbatim(text): parts.append(text)
            case .bool, .int: parts.append(inlineScalar(item))
            default: return nil
            }
        }
        let flow = "[" + parts.joined(separator: ", ") + "]"
        return flow.count <= 72 ? flow : nil
    }

    // MARK: - Scalars

    private static func inlineScalar(_ value: YAMLValue) -> String {
        switch value {
        case .bool(let flag): flag ? "true" : "false"
        case .int(let number): String(number)
        case .string(let text): isPlainSafe(text) && !looksTyped(text) ? text : doubleQuoted(text)
        case .verbatim(let text): isPlainVerbatim(text) ? text : doubleQuoted(text)
        case .list, .map: "~"  // not reached: collections are written by writeValue
        }
    }

    private static func scalarKey(_ key: String) -> String {
        isPlainSafe(key) && !looksTyped(key) ? key : doubleQuoted(key)
    }

    /// A conservative test: letters, digits and a few punctuation marks that mean nothing to YAML
    /// here; anything else (spaces, `#`, `{`, `$`, a leading `-`) is quoted.
    static func isPlainSafe(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, !text.hasSuffix(":") else { return false }
        let allowed: (Unicode.Scalar) -> Bool = { scalar in
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "_", ".", "/", "-", "+", "=", "~", "(", ")", ":", "@": true
            default: false
            }
        }
        guard text.unicodeScalars.allSatisfy(allowed) else { return false }
        return !["-", ":", "@", "~", "="].contains(first) && !text.contains("::")
    }

    /// Plain when YAML reads it as what JSON would: text, `true`, `false`, `null` or a JSON number.
    static func isPlainVerbatim(_ text: String) -> Bool {
        if isJSONNumber(text) { return true }
        return isPlainSafe(text) && (!looksTyped(text) || ["true", "false", "null"].contains(text))
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    static func isJSONNumber(_ text: String) -> Bool {
        var rest = Substring(text)
        func digits() -> Int {
            let count = rest.prefix(while: { $0.isASCII && $0.isNumber }).count
            rest = rest.dropFirst(count)
            return count
        }
        if rest.hasPrefix("-") { rest = rest.dropFirst() }
        if rest.hasPrefix("0") { rest = rest.dropFirst() } else if digits() == 0 { return false }
        if rest.hasPrefix(".") { rest = rest.dropFirst(); if digits() == 0 { return false } }
        if let e = rest.first, e == "e" || e == "E" {
            rest = rest.dropFirst()
            if let sign = rest.first, sign == "+" || sign == "-" { rest = rest.dropFirst() }
            if digits() == 0 { return false }
        }
        return rest.isEmpty
    }

    /// True when a plain scalar of this text would be read as null, a boolean or a number (YAML 1.1 or 1.2).
    static func looksTyped(_ text: String) -> Bool {
        let words: Set<String> = ["null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"]
        if words.contains(text.lowercased()) { return true }
        var rest = Substring(text)
        if let sign = rest.first, sign == "+" || sign == "-" { rest = rest.dropFirst() }
        if rest.hasPrefix(".") { rest = rest.dropFirst() }
        if let first = rest.first, first.isASCII, first.isNumber { return true }
        return ["inf", "nan"].contains(rest.lowercased()) && text.contains(".")
    }

    static func doubleQuoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x85
                || scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xFEFF:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Multi-line text that a literal block can hold exactly (no carriage returns or other control characters).
    private static func isBlockCandidate(_ text: String) -> Bool {
        guard text.contains("\n"), text.contains(where: { !$0.isWhitespace }) else { return false }
        return text.unicodeScalars.allSatisfy { scalar in
            scalar == "\n" || scalar == "\t" || !(scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x85
                || scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xFEFF)
        }
    }

    /// `|` (one final newline), `|-` (none) or `|+` (several), with an indentation indicator when the
    /// first line starts with a space; each line indented by `indent`.
    private static func blockScalar(_ text: String, indent: Int) -> String {
        var body = Substring(text)
        var trailing = 0
        while body.hasSuffix("\n") { body = body.dropLast(); trailing += 1 }
        let chomp = trailing == 0 ? "-" : (trailing == 1 ? "" : "+")
        let lines = body.split(separator: "\n", omittingEmptySubsequences: false)
        let firstContent = lines.first { !$0.isEmpty }
        let indicator = firstContent.map { $0.hasPrefix(" ") } == true ? "2" : ""
        let pad = String(repeating: " ", count: indent)
        var out = "|" + indicator + chomp + "\n"
        for line in lines { out += line.isEmpty ? "\n" : pad + line + "\n" }
        out += String(repeating: "\n", count: max(0, trailing - 1))
        return out
    }
}
