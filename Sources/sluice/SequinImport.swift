import SluiceCore

/// Translates a Sequin configuration (sequin.yml, as read without environment interpolation) into
/// Sluice configurations: one per Sequin database that a Kafka sink reads, plus a note for every
/// item or setting that was not carried over, or was changed on the way.
///
/// Pure: it reads only the tree it is given and, for `file:` functions, the `readFile` closure.
struct SequinImport {
    /// One line of the import's report, naming the Sequin field: `sinks[2] (webhook "audit"): skipped — …`.
    struct Note: Equatable, CustomStringConvertible {
        var path: String
        var message: String
        var description: String { "\(path): \(message)" }
    }

    /// Input the import cannot work from (exit code 2), naming the field.
    struct Failure: Error, CustomStringConvertible {
        var path: String
        var message: String
        var description: String { path.isEmpty ? message : "\(path): \(message)" }
    }

    /// The Sluice configuration for one Sequin database.
    struct Output {
        var databaseName: String
        /// The database name reduced to file-name characters, unique among the outputs.
        var tag: String
        var document: [(String, YAMLValue)]
        var sinkNames: [String]
        var functionNames: [String]
    }

    /// The notes so far, in the order of the input; complete after `run` returned or threw.
    private(set) var notes: [Note] = []
    /// Reads a `file:` function's code; the path is as written in sequin.yml.
    let readFile: (String) -> String?

    init(readFile: @escaping (String) -> String?) {
        self.readFile = readFile
    }

    // MARK: - Whole file

    mutating func run(_ input: ConfigNode) throws(Failure) -> [Output] {
        defer { sortNotes() }
        let root = input.resolvingMerges()
        guard let top = root.pairs else {
            throw Failure(path: "", message: "not a Sequin configuration — expected a mapping with databases: and sinks:")
        }
        let handled: Set<String> = ["databases", "sinks", "functions", "transforms"]
        for (key, _) in top where !handled.contains(key) {
            note(key, "skipped — " + (Self.topLevelReasons[key] ?? "not a Sequin setting (Sequin ignores it too)"))
        }
        if root["functions"] != nil && root["transforms"] != nil {
            throw Failure(path: "transforms", message: "give functions or the older transforms, not both (Sequin refuses both too)")
        }

        let databases = try readDatabases(root["databases"])
        // Functions are read first (sinks refer to them); their notes are sorted into place at the end.
        let functions = try readFunctions(root["functions"] ?? root["transforms"], key: root["functions"] == nil ? "transforms" : "functions")
        let sinks = readSinks(root["sinks"], databases: databases.map(\.name), functions: functions)

        guard !sinks.isEmpty else {
            let items = root["sinks"]?.items ?? []
            if items.contains(where: { $0["destination"]?["type"]?.text == "kafka" }) {
                throw Failure(path: "sinks", message: "none of the Kafka sinks could be carried over (see the lines above), so there is nothing to write")
            }
            let found = items.isEmpty ? "no sinks" : (items.count == 1 ? "its one sink is not a Kafka sink" : "none of its \(items.count) sinks is a Kafka sink")
            throw Failure(path: "sinks", message: "\(found) — Sluice only has Kafka sinks (destination type: kafka), so there is nothing to write")
        }

        let read = databases.filter { database in sinks.contains { $0.database == database.name } }
        for database in databases where !read.contains(where: { $0.name == database.name }) {
            note(database.path, "skipped — no Kafka sink reads from it")
        }
        let used = Set(sinks.flatMap(\.functionNames))
        for function in functions where function.output != nil && !used.contains(function.name) {
            note(function.label, "skipped — no Kafka sink uses it")
        }
        return zip(read, Self.fileTags(read.map(\.name))).map { database, tag in
            // One state file per running sluice: with several files, each database has its own.
            let state = read.count == 1 ? "./sluice-state.sqlite" : "./sluice-state.\(tag).sqlite"
            return output(database, tag: tag, statePath: state, sinks: sinks.filter { $0.database == database.name },
                          functions: functions)
        }
    }

    /// One Sluice file: the database, its state file, the functions its sinks use (in declaration order), the sinks.
    private func output(_ database: Database, tag: String, statePath: String, sinks: [Sink], functions: [Function]) -> Output {
        let referenced = Set(sinks.flatMap(\.functionNames))
        let declared = functions.filter { $0.output != nil && referenced.contains($0.name) }
        var document: [(String, YAMLValue)] = [("database", .map(database.pairs)), ("state", .map([("path", .string(statePath))]))]
        if !declared.isEmpty { document.append(("functions", .list(declared.compactMap { $0.output.map(YAMLValue.map) }))) }
        document.append(("sinks", .list(sinks.map { .map($0.pairs) })))
        return Output(databaseName: database.name, tag: tag, document: document,
                      sinkNames: sinks.map(\.name), functionNames: declared.map(\.name))
    }

    static let topLevelReasons: [String: String] = [
        "account": "Sluice has no accounts: one sluice.yml configures one running sluice",
        "users": "Sluice has no user logins; its console is protected by console.token",
        "api_tokens": "Sluice has no API tokens; its console API is protected by console.token",
        "http_endpoints": "HTTP endpoints serve webhook sinks, and Sluice only has Kafka sinks",
        "change_retentions": "Sluice has no change retention (writing changes into a table)",
    ]

    /// Each database name reduced to letters, digits, `.`, `_` and `-` (for `sluice.<tag>.yml`), made unique.
    static func fileTags(_ names: [String]) -> [String] {
        var taken: Set<String> = []
        return names.map { name in
            let kept = String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) ? $0 : "-" })
            let base = kept.trimmingDotsAndDashes.isEmpty ? "database" : kept.trimmingDotsAndDashes
            var tag = base, suffix = 2
            while !taken.insert(tag).inserted { tag = "\(base)-\(suffix)"; suffix += 1 }
            return tag
        }
    }

    // MARK: - Notes

    mutating func note(_ path: String, _ message: String) {
        notes.append(Note(path: path, message: message))
    }

    /// Top-level keys first, then databases, sinks and functions, each by its index in the file.
    private mutating func sortNotes() {
        func rank(_ note: Note) -> (Int, Int) {
            let sections = ["databases", "sinks", "functions", "transforms"]
            guard let section = sections.firstIndex(where: { note.path.hasPrefix($0 + "[") }) else { return (0, 0) }
            let digits = note.path.drop(while: { $0 != "[" }).dropFirst().prefix(while: \.isNumber)
            return (1 + min(section, 2), Int(digits) ?? 0)
        }
        notes = notes.enumerated().sorted { a, b in
            let (ra, rb) = (rank(a.element), rank(b.element))
            return ra != rb ? ra < rb : a.offset < b.offset
        }.map(\.element)
    }

    /// Bookkeeping that `sequin config export` adds and Sequin ignores when it loads the file: no
    /// setting, so no line.
    static let exportFields: Set<String> = ["id", "health", "inserted_at", "updated_at", "account_id", "replication_slot_id", "sequence_id"]

    /// Whether a key not carried over deserves a line: it is set (not null, not an empty list) and
    /// is not export bookkeeping.
    static func isWorthANote(_ key: String, _ value: ConfigNode) -> Bool {
        if exportFields.contains(key) { return false }
        switch value {
        case .null: return false
        case .sequence(let items): return !items.isEmpty
        default: return true
        }
    }

    /// A password as `sequin config export` masks it without its sensitive-values option (`Bf8***…***x2`):
    /// copied, but named, since it will not log in. The value itself is never shown.
    mutating func noteIfMasked(_ secret: String, at path: String) {
        guard secret.contains("***"), !secret.contains("${") else { return }
        note(path, "copied, but it looks masked by a Sequin export — write the real value or a ${VAR} reference")
    }

    /// `sinks[2] (webhook "audit")`: the item's place, kind and name.
    static func label(_ path: String, kind: String?, name: String) -> String {
        let parts = [kind.map { String(shown($0).dropFirst().dropLast()) }, name.isEmpty ? nil : shown(name)].compactMap { $0 }
        return parts.isEmpty ? path : "\(path) (\(parts.joined(separator: " ")))"
    }

    /// A name or value from the input as notes show it: quoted, one line, never long.
    static func shown(_ text: String) -> String {
        let clipped = text.count > 60 ? String(text.prefix(57)) + "..." : text
        return YAMLWriter.doubleQuoted(clipped)
    }
}

// MARK: - Reading the tree

extension ConfigNode {
    var pairs: [(String, ConfigNode)]? {
        if case .mapping(let pairs) = self { return pairs }
        return nil
    }

    var items: [ConfigNode]? {
        if case .sequence(let items) = self { return items }
        return nil
    }

    var text: String? {
        if case .scalar(let text) = self { return text }
        return nil
    }

    subscript(key: String) -> ConfigNode? {
        guard let pairs, let value = pairs.first(where: { $0.0 == key })?.1 else { return nil }
        if case .null = value { return nil }
        return value
    }

    /// YAML merge keys (`<<: *base`) applied, as Sequin reads its file: keys written in the mapping
    /// win over merged ones, and earlier merged mappings over later ones.
    func resolvingMerges() -> ConfigNode {
        switch self {
        case .sequence(let items): return .sequence(items.map { $0.resolvingMerges() })
        case .mapping(let pairs):
            var result = pairs.filter { $0.0 != "<<" }.map { ($0.0, $0.1.resolvingMerges()) }
            for (key, value) in pairs where key == "<<" {
                let sources = value.items ?? [value]
                for source in sources {
                    for (mergedKey, mergedValue) in source.resolvingMerges().pairs ?? [] where !result.contains(where: { $0.0 == mergedKey }) {
                        result.append((mergedKey, mergedValue))
                    }
                }
            }
            return .mapping(result)
        default: return self
        }
    }

    /// The value as copied through untyped (annotations): mappings, lists and scalars as they are.
    var verbatim: YAMLValue {
        switch self {
        case .scalar(let text): .verbatim(text)
        case .sequence(let items): .list(items.map(\.verbatim))
        case .mapping(let pairs): .map(pairs.map { ($0.0, $0.1.verbatim) })
        case .null: .verbatim("null")
        }
    }

    /// A boolean written as `true`/`false` when it is one, else as the text it is (`${TLS}`).
    var boolean: YAMLValue? {
        guard let text else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return .bool(true)
        case "false", "no", "off": return .bool(false)
        default: return .string(text)
        }
    }

    /// A whole number written as one, else as the text it is (`${PORT}`).
    var integer: YAMLValue? {
        guard let text else { return nil }
        return Int(text).map(YAMLValue.int) ?? .string(text)
    }

    /// A list of strings (a single string counts as a list of one).
    var strings: YAMLValue? {
        if let text { return .list([.string(text)]) }
        guard let items else { return nil }
        return .list(items.map { $0.text.map(YAMLValue.string) ?? $0.verbatim })
    }
}

extension String {
    var trimmingDotsAndDashes: String {
        String(drop(while: { $0 == "." || $0 == "-" }).reversed().drop(while: { $0 == "." || $0 == "-" }).reversed())
    }
}
