extension SluiceConfig {
    static let fieldNames = ["database", "state", "ha", "console", "functions", "sinks", "log_format"]

    /// Reads the whole file: every section, then the rules between sections (unique sink names,
    /// sink tables within the publication). Nil when a section it cannot do without is unusable.
    init?(reading root: ConfigNode, reader: inout ConfigReader) {
        guard let fields = reader.fields(root, at: "", allowed: Self.fieldNames) else { return nil }
        let database = fields["database"].flatMap { DatabaseConfig(reading: $0, at: "database", reader: &reader) }
        if fields["database"] == nil { reader.report(.missingField, at: "database", "is required") }

        var statePath = "./sluice-state.sqlite"
        var store = StateStoreConfig.sqlite
        if let state = fields["state"], let stateFields = reader.fields(state, at: "state", allowed: ["path", "store", "url", "schema"]) {
            statePath = reader.string("path", in: stateFields) ?? statePath
            store = StateStoreConfig(reading: stateFields, database: database, reader: &reader)
        }
        let ha = HAConfig(reading: fields, store: store, reader: &reader)
        let console = fields["console"].flatMap { ConsoleConfig(reading: $0, at: "console", reader: &reader) }
        let functions = fields["functions"].map { DeclaredFunctions(reading: $0, at: "functions", reader: &reader) } ?? DeclaredFunctions()

        var sinks: [SinkConfig] = []
        if let node = fields["sinks"] {
            if case .sequence(let items) = node, !items.isEmpty {
                for (index, item) in items.enumerated() {
                    if let sink = SinkConfig(reading: item, at: "sinks[\(index)]", functions: functions, reader: &reader) { sinks.append(sink) }
                }
            } else {
                reader.report(node == .sequence([]) ? .empty : .wrongType, at: "sinks", "must be a list with at least one sink")
            }
        } else {
            reader.report(.missingField, at: "sinks", "is required: add at least one sink with a kafka destination")
        }
        Self.checkSinkNames(sinks, reader: &reader)
        if let database { Self.checkPublished(sinks, database: database, reader: &reader) }

        var logFormat = LogFormat.text
        if let text = reader.string("log_format", in: fields) {
            if let format = LogFormat(rawValue: text) { logFormat = format } else {
                reader.report(.invalidValue, at: "log_format", quoting: text, "— use text or json")
            }
        }
        guard let database else { return nil }
        self.init(database: database, statePath: statePath, console: console, functions: functions.declared, sinks: sinks)
        self.logFormat = logFormat
        self.stateStore = store
        self.ha = ha
    }

    static func checkSinkNames(_ sinks: [SinkConfig], reader: inout ConfigReader) {
        var seen: Set<String> = []
        for (index, sink) in sinks.enumerated() where !seen.insert(sink.name).inserted {
            reader.report(.duplicate, at: "sinks[\(index)].name", quoting: sink.name, "is used by another sink — sink names must be unique")
        }
    }

    /// With `database.publication.tables` listed, a sink's tables must be among them.
    static func checkPublished(_ sinks: [SinkConfig], database: DatabaseConfig, reader: inout ConfigReader) {
        guard !database.publicationTables.isEmpty else { return }
        let published = Set(database.publicationTables)
        for (sinkIndex, sink) in sinks.enumerated() {
            for (tableIndex, table) in sink.tables.enumerated() where !published.contains(table) {
                reader.report(.conflict, at: "sinks[\(sinkIndex)].tables[\(tableIndex)]", quoting: table.description,
                              "is not in database.publication.tables — add it there")
            }
        }
    }
}
