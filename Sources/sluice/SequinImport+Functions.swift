import SluiceCore

/// `functions:` (or the older `transforms:`) → Sluice functions. Path and enrichment functions carry
/// over as they are; Elixir code becomes a Lua function that fails until someone ports it.
extension SequinImport {
    struct Function {
        var name: String
        /// `functions[1] (filter "vip")`, as notes name it.
        var label: String
        /// The Sluice declaration; nil when it was not carried over.
        var output: [(String, YAMLValue)]?
    }

    mutating func readFunctions(_ node: ConfigNode?, key: String) throws(Failure) -> [Function] {
        var functions: [Function] = []
        for (index, item) in (node?.items ?? []).enumerated() {
            let path = "\(key)[\(index)]"
            guard let fields = try flattened(item, at: path) else {
                note(path, "skipped — not a mapping of function settings")
                continue
            }
            let name = fields["name"]?.text ?? ""
            let type = fields["type"]?.text.map { $0 == "function" ? "transform" : $0 }  // Sequin's older name
            let label = Self.label(path, kind: type, name: name)
            var function = Function(name: name, label: label, output: nil)
            defer { functions.append(function) }
            guard !name.isEmpty else { note(label, "skipped — it has no name (Sequin needs one too)"); continue }
            guard !functions.contains(where: { $0.name == name }) else {
                note(label, "skipped — another function has the same name (Sequin would update that one instead)")
                continue
            }
            for (field, value) in fields.pairs ?? [] where !["name", "type", "description", "code", "file", "path", "sink_type"].contains(field)
                && Self.isWorthANote(field, value) {
                note("\(path).\(field)", "skipped — not a Sequin function setting")
            }
            function.output = try declaration(fields, name: name, type: type, label: label, at: path)
        }
        return functions
    }

    /// One function's fields in Sequin's flat form: the older nested `function:` / `transform:` block
    /// is lifted beside name and description.
    private func flattened(_ node: ConfigNode, at path: String) throws(Failure) -> ConfigNode? {
        guard let pairs = node.pairs else { return nil }
        if node["function"] != nil && node["transform"] != nil {
            throw Failure(path: "\(path).transform", message: "give function or transform, not both (Sequin refuses both too)")
        }
        guard let inner = (node["function"] ?? node["transform"])?.pairs else { return node }
        let outer = pairs.filter { $0.0 != "function" && $0.0 != "transform" && !inner.map(\.0).contains($0.0) }
        return .mapping(outer + inner)
    }

    private mutating func declaration(_ fields: ConfigNode, name: String, type: String?, label: String,
                                      at path: String) throws(Failure) -> [(String, YAMLValue)]? {
        guard let type else { note(label, "skipped — it has no type (Sequin needs one too)"); return nil }
        var pairs: [(String, YAMLValue)] = [("name", .string(name)), ("type", .string(type))]
        if let description = fields["description"]?.text { pairs.append(("description", .string(description))) }
        switch type {
        case "path":
            guard let text = fields["path"]?.text else { note(label, "skipped — a path function needs path:"); return nil }
            return pairs + [("path", .string(text))]
        case "enrichment":
            guard let sql = try code(fields, at: path) else { note(label, "skipped — it has no code (the SQL)"); return nil }
            return pairs + [("code", .string(sql))]
        case "filter", "transform", "routing":
            if type == "routing", let sinkType = fields["sink_type"]?.text, sinkType != "kafka" {
                note(label, "skipped — it routes \(Self.shown(sinkType)) sinks; Sluice only has Kafka sinks")
                return nil
            }
            guard let elixir = try code(fields, at: path) else { note(label, "skipped — it has no code"); return nil }
            note(label, "written as a Lua stub that fails until you port it — the Elixir code is in its comment")
            return pairs + [("code", .string(Self.luaStub(type: type, name: name, elixir: elixir)))]
        default:
            note(label, "skipped — Sluice has no \(Self.shown(type)) functions (filter, transform, path, routing, enrichment)")
            return nil
        }
    }

    /// `code:` as written, or the text of `file:` (relative to sequin.yml's folder), as Sequin's CLI reads it.
    private func code(_ fields: ConfigNode, at path: String) throws(Failure) -> String? {
        if let code = fields["code"]?.text { return code }
        guard let file = fields["file"]?.text else { return nil }
        guard let text = readFile(file) else {
            throw Failure(path: "\(path).file", message: "\(Self.shown(file)) — no readable UTF-8 file there (paths are relative to the Sequin file's folder)")
        }
        return text
    }

    /// The Lua function Sluice calls for this type, raising until ported, with the Elixir original
    /// above it as comment lines (line comments: Elixir may hold `]]`).
    static func luaStub(type: String, name: String, elixir: String) -> String {
        let entry = type == "routing" ? "route" : type
        let original = elixir.replacingCarriageReturns.split(separator: "\n", omittingEmptySubsequences: false)
            .reversed().drop { $0.allSatisfy(\.isWhitespace) }.reversed()
            .map { line in line.isEmpty ? "--" : "-- " + line }
        let oneLineName = String(shown(name).dropFirst().dropLast())
        return ([
            "-- Sequin function \"\(oneLineName)\", imported by sluice import-sequin. Sluice runs Lua:",
            "-- rewrite the Elixir below as the Lua function underneath (README, \"Functions\")",
            "-- and remove the error() line.",
            "--",
        ] + original + [
            "function \(entry)(action, record, changes, metadata)",
            "  error(\"\(PortMarkers.marker)\")",
            "end",
        ]).joined(separator: "\n") + "\n"
    }
}

extension String {
    /// `\r\n` and lone `\r` as `\n`.
    var replacingCarriageReturns: String {
        var out = ""
        var previousCR = false
        for scalar in unicodeScalars {
            if scalar == "\r" { out += "\n"; previousCR = true; continue }
            if scalar == "\n" && previousCR { previousCR = false; continue }
            previousCR = false
            out.unicodeScalars.append(scalar)
        }
        return out
    }
}
