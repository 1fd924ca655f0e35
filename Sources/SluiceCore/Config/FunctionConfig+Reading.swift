import Foundation

extension FunctionConfig {
    static let fieldNames = ["name", "type", "code", "file", "path", "description", "max_instructions", "max_memory_mb",
                             "statement_timeout"]

    /// One entry of `functions:`. Nil when it cannot be used; a name that is empty or "none" is
    /// reported but still read, so that its other problems show too.
    init?(reading node: ConfigNode, at path: String, reader: inout ConfigReader) {
        guard let fields = reader.fields(node, at: path, allowed: Self.fieldNames) else { return nil }
        let name = reader.string("name", in: fields) ?? ""
        if name.isEmpty {
            reader.report(.missingField, at: fields.path("name"), "is required: give the function a name, e.g. paid-only")
        } else if name == "none" {
            reader.report(.invalidValue, at: fields.path("name"), quoting: name, "means no function — choose another name")
        }
        guard let typeText = reader.string("type", in: fields) else {
            if fields["type"] == nil { reader.report(.missingField, at: fields.path("type"), "is required: filter, transform, path, routing or enrichment") }
            return nil
        }
        guard let kind = Kind(rawValue: typeText) else {
            reader.report(.invalidValue, at: fields.path("type"), quoting: typeText, "— use filter, transform, path, routing or enrichment")
            return nil
        }
        self.init(name: name, kind: kind,
                  maxInstructions: reader.integer("max_instructions", in: fields, range: 1_000...1_000_000_000) ?? 1_000_000,
                  maxMemoryMB: reader.integer("max_memory_mb", in: fields, range: 1...1_024) ?? 16)
        if let text = reader.string("statement_timeout", in: fields) {
            let timeout = ConfigDuration(text)
            if kind != .enrichment {
                reader.report(.conflict, at: fields.path("statement_timeout"), "only enrichment functions run SQL — remove it")
            } else if let timeout, timeout.seconds >= 0.001 {
                statementTimeout = timeout.seconds
            } else {
                reader.report(timeout == nil ? .invalidValue : .outOfRange, at: fields.path("statement_timeout"), quoting: text,
                              "— write a duration such as 5s or 500ms")
            }
        }
        if kind == .path {
            guard readPath(fields, reader: &reader) else { return nil }
            return
        }
        if fields["path"] != nil {
            reader.report(.conflict, at: fields.path("path"), "only path functions take a path — remove it, or use type: path")
        }
        guard readCode(fields, reader: &reader) else { return nil }
        if kind == .enrichment, code.trimmingSpaces.isEmpty {
            reader.report(.empty, at: origin, "is empty — write the SQL query")
        }
    }

    /// A path function's `path: record.address.city`; it takes no code.
    private mutating func readPath(_ fields: ConfigFields, reader: inout ConfigReader) -> Bool {
        for key in ["code", "file"] where fields[key] != nil {
            reader.report(.conflict, at: fields.path(key), "a path function has no code — give path: record.field, or use type: transform")
        }
        guard let text = reader.string("path", in: fields) else {
            if fields["path"] == nil { reader.report(.missingField, at: fields.path("path"), "is required: e.g. record, or record.address.city") }
            return false
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard let first = parts.first, ["record", "changes", "action", "metadata"].contains(String(first)),
              parts.allSatisfy({ !$0.isEmpty }) else {
            reader.report(.invalidValue, at: fields.path("path"), quoting: text,
                          "— start with record, changes, action or metadata, then .field.field…")
            return false
        }
        path = text
        return true
    }

    /// `code:` as written (`${...}` in Lua is Lua's, not an environment variable), or `file:`,
    /// relative to the configuration file's folder.
    private mutating func readCode(_ fields: ConfigFields, reader: inout ConfigReader) -> Bool {
        switch (fields["code"], fields["file"]) {
        case (.some, .some):
            reader.report(.conflict, at: fields.path, "give code or file, not both")
            return false
        case (.some(let node), nil):
            guard case .scalar(let text) = node else {
                reader.report(.wrongType, at: fields.path("code"), "must be text: the Lua chunk, e.g. code: |")
                return false
            }
            code = text
            origin = fields.path("code")
        case (nil, .some(let node)):
            guard let file = reader.string(node, at: fields.path("file")) else { return false }
            let full = file.hasPrefix("/") ? file : (reader.baseDirectory as NSString).appendingPathComponent(file)
            guard let text = try? String(contentsOfFile: full, encoding: .utf8) else {
                reader.report(.unreadableFile, at: fields.path("file"), quoting: file,
                              "— no readable UTF-8 file at \(full); paths are relative to the configuration file's folder")
                return false
            }
            code = text
            origin = file
        case (nil, nil):
            if kind == .enrichment {
                reader.report(.missingField, at: fields.path,
                              "give code: the SQL query, with $1 for the batch's primary-key values (e.g. WHERE u.id = ANY($1))")
            } else {
                let entry = kind.entryPoint ?? kind.rawValue
                reader.report(.missingField, at: fields.path, "give code (a Lua chunk defining function \(entry)(action, record, changes, metadata)) or file")
            }
            return false
        }
        return true
    }
}

/// The functions declared under `functions:`, by name, for the sinks' references.
struct DeclaredFunctions {
    /// In declaration order, without the refused ones.
    private(set) var declared: [FunctionConfig] = []
    private var byName: [String: FunctionConfig] = [:]
    /// Declarations that were refused: a sink naming one gets no second, misleading error.
    private var refused: Set<String> = []

    init() {}

    init(reading node: ConfigNode, at path: String, reader: inout ConfigReader) {
        for (index, item) in reader.list(node, at: path).enumerated() {
            guard let function = FunctionConfig(reading: item, at: "\(path)[\(index)]", reader: &reader) else {
                if case .mapping(let pairs) = item, case .scalar(let name)? = pairs.first(where: { $0.0 == "name" })?.1 {
                    refused.insert(name)
                }
                continue
            }
            if function.name.isEmpty || function.name == "none" { continue }  // reading it said why
            if byName[function.name] != nil {
                reader.report(.duplicate, at: "\(path)[\(index)].name", quoting: function.name,
                              "is used by another function — function names must be unique")
                continue
            }
            byName[function.name] = function
            declared.append(function)
        }
    }

    /// A sink's `filter:`, `transform:`, `routing:` or `enrichment:`: the name of a declared function
    /// of one of `kinds`, or "none".
    func reference(_ node: ConfigNode, at path: String, kinds: [FunctionConfig.Kind], reader: inout ConfigReader) -> FunctionConfig? {
        guard let name = reader.string(node, at: path), name != "none", !name.isEmpty else { return nil }
        let kindNames = kinds.map(\.rawValue).joined(separator: " or ")
        guard let function = byName[name] else {
            if refused.contains(name) { return nil }  // its declaration's error says why
            let nearest = ConfigReader.nearest(to: name, in: declared.filter { kinds.contains($0.kind) }.map(\.name))
            let hint = nearest.map { " — did you mean \($0)?" } ?? " — declare it under functions: with type: \(kindNames), or write none"
            reader.report(.undeclaredFunction, at: path, quoting: name, "is not a declared function\(hint)", suggestion: nearest)
            return nil
        }
        guard kinds.contains(function.kind) else {
            reader.report(.wrongFunctionType, at: path, quoting: name, "is a \(function.kind.rawValue) function — this takes a \(kindNames) function")
            return nil
        }
        return function
    }
}
