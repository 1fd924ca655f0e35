import Foundation

/// Validates a configuration tree and builds `SluiceConfig`, collecting every problem with the
/// field it concerns rather than stopping at the first.
public struct ConfigReader {
    public private(set) var errors: [ConfigError] = []
    let environment: [String: String]
    /// Where `functions[].file` paths start: the YAML file's folder.
    let baseDirectory: String
    /// Declared functions by name, for the sinks' references.
    var functions: [String: FunctionConfig] = [:]
    /// Declared functions that were refused: a sink naming one gets no second, misleading error.
    var refusedFunctions: Set<String> = []

    public init(environment: [String: String], baseDirectory: String = ".") {
        self.environment = environment
        self.baseDirectory = baseDirectory
    }

    /// Returns the configuration, or every problem found.
    public static func read(_ root: ConfigNode, environment: [String: String],
                            baseDirectory: String = ".") -> Result<SluiceConfig, ConfigErrors> {
        var reader = ConfigReader(environment: environment, baseDirectory: baseDirectory)
        let config = reader.readRoot(root)
        if let config, reader.errors.isEmpty { return .success(config) }
        return .failure(ConfigErrors(errors: reader.errors))
    }

    // MARK: - Sections

    mutating func readRoot(_ root: ConfigNode) -> SluiceConfig? {
        guard let fields = mapping(root, at: "", allowed: ["database", "state", "console", "functions", "sinks", "log_format"]) else { return nil }
        let database = fields["database"].flatMap { readDatabase($0, at: "database") }
        if fields["database"] == nil { errors.append(ConfigError("database", "is required")) }

        var statePath = "./sluice-state.sqlite"
        if let state = fields["state"], let stateFields = mapping(state, at: "state", allowed: ["path"]) {
            statePath = stateFields["path"].flatMap { string($0, at: "state.path") } ?? statePath
        }
        var console: ConsoleConfig?
        if let node = fields["console"], let consoleFields = mapping(node, at: "console", allowed: ["listen", "token"]) {
            let listen = consoleFields["listen"].flatMap { string($0, at: "console.listen") } ?? "127.0.0.1:7376"
            if let listen = parseHostPort(listen), listen.port > 0 {} else {
                errors.append(ConfigError("console.listen", "\(quoted(listen)) — write host:port, e.g. 127.0.0.1:7376"))
            }
            console = ConsoleConfig(listen: listen, token: consoleFields["token"].flatMap { string($0, at: "console.token", secret: true) } ?? "")
        }

        var declared: [FunctionConfig] = []
        if let node = fields["functions"] {
            for (index, item) in list(node, at: "functions").enumerated() {
                guard let function = readFunction(item, at: "functions[\(index)]") else {
                    if case .mapping(let pairs) = item, case .scalar(let name)? = pairs.first(where: { $0.0 == "name" })?.1 {
                        refusedFunctions.insert(name)
                    }
                    continue
                }
                if function.name.isEmpty || function.name == "none" { continue }  // readFunction said why
                if functions[function.name] != nil {
                    errors.append(ConfigError("functions[\(index)].name", "\(quoted(function.name)) is used by another function — function names must be unique"))
                    continue
                }
                functions[function.name] = function
                declared.append(function)
            }
        }

        var sinks: [SinkConfig] = []
        if let node = fields["sinks"] {
            if case .sequence(let items) = node, !items.isEmpty {
                for (index, item) in items.enumerated() {
                    if let sink = readSink(item, at: "sinks[\(index)]") { sinks.append(sink) }
                }
            } else {
                errors.append(ConfigError("sinks", "must be a list with at least one sink"))
            }
        } else {
            errors.append(ConfigError("sinks", "is required: add at least one sink with a kafka destination"))
        }
        var seen: Set<String> = []
        for (index, sink) in sinks.enumerated() where !seen.insert(sink.name).inserted {
            errors.append(ConfigError("sinks[\(index)].name", "\(quoted(sink.name)) is used by another sink — sink names must be unique"))
        }
        if let database, !database.publicationTables.isEmpty {
            let published = Set(database.publicationTables)
            for (sinkIndex, sink) in sinks.enumerated() {
                for (tableIndex, table) in sink.tables.enumerated() where !published.contains(table) {
                    errors.append(ConfigError("sinks[\(sinkIndex)].tables[\(tableIndex)]",
                                              "\(quoted(table.description)) is not in database.publication.tables — add it there"))
                }
            }
        }
        var logFormat = LogFormat.text
        if let text = fields["log_format"].flatMap({ string($0, at: "log_format") }) {
            if let format = LogFormat(rawValue: text) { logFormat = format } else {
                errors.append(ConfigError("log_format", "\(quoted(text)) — use text or json"))
            }
        }
        guard let database else { return nil }
        var config = SluiceConfig(database: database, statePath: statePath, console: console, functions: declared, sinks: sinks)
        config.logFormat = logFormat
        return config
    }

    mutating func readDatabase(_ node: ConfigNode, at path: String) -> DatabaseConfig? {
        let connectionKeys = ["url", "host", "port", "dbname", "user", "password"]
        guard let fields = mapping(node, at: path, allowed: connectionKeys + ["slot", "publication", "heartbeat_interval", "name", "annotations"])
        else { return nil }
        var parameters: [(String, String)] = []
        if let url = fields["url"].flatMap({ string($0, at: "\(path).url", secret: true) }) {
            if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
                parameters.append(("dbname", url))
            } else {
                errors.append(ConfigError("\(path).url", "must start with postgres:// or postgresql://, e.g. postgres://user@127.0.0.1:5432/app"))
            }
        }
        for key in connectionKeys.dropFirst() {
            guard let value = fields[key].flatMap({ string($0, at: "\(path).\(key)", secret: key == "password") }) else { continue }
            if key == "port", Int(value).map({ (1...65535).contains($0) }) != true {
                errors.append(ConfigError("\(path).port", "\(quoted(value)) — port must be 1-65535"))
                continue
            }
            parameters.append((key, value))
        }
        if fields["url"] == nil && fields["host"] == nil && fields["dbname"] == nil {
            errors.append(ConfigError(path, "give url (postgres://user:password@host:port/dbname) or host and dbname"))
        }

        var slotName = "sluice", createSlot = true
        if let slot = fields["slot"], let slotFields = mapping(slot, at: "\(path).slot", allowed: ["name", "create_if_not_exists"]) {
            if let name = slotFields["name"].flatMap({ string($0, at: "\(path).slot.name") }) {
                if Self.isValidSlotName(name) { slotName = name } else {
                    errors.append(ConfigError("\(path).slot.name", "\(quoted(name)) — slot names use only lower-case letters, digits and _ (at most 63)"))
                }
            }
            createSlot = slotFields["create_if_not_exists"].flatMap { bool($0, at: "\(path).slot.create_if_not_exists") } ?? true
        }
        var publicationName = "sluice", createPublication = true
        var tables: [TableName] = []
        var viaRoot = true
        if let publication = fields["publication"],
           let pubFields = mapping(publication, at: "\(path).publication",
                                   allowed: ["name", "create_if_not_exists", "tables", "publish_via_partition_root"]) {
            if let name = pubFields["name"].flatMap({ string($0, at: "\(path).publication.name") }) {
                if !name.isEmpty && name.utf8.count <= 63 { publicationName = name } else {
                    errors.append(ConfigError("\(path).publication.name", "\(quoted(name)) — a publication name has 1-63 characters"))
                }
            }
            createPublication = pubFields["create_if_not_exists"].flatMap { bool($0, at: "\(path).publication.create_if_not_exists") } ?? true
            tables = pubFields["tables"].map { tableList($0, at: "\(path).publication.tables") } ?? []
            viaRoot = pubFields["publish_via_partition_root"].flatMap { bool($0, at: "\(path).publication.publish_via_partition_root") } ?? true
        }
        var heartbeat = 15.0
        if let node = fields["heartbeat_interval"], let text = string(node, at: "\(path).heartbeat_interval") {
            if let seconds = Self.parseDuration(text) { heartbeat = seconds } else {
                errors.append(ConfigError("\(path).heartbeat_interval", "\(quoted(text)) — write a duration such as 15s, 500ms or 2m (0 turns heartbeats off)"))
            }
        }
        var database = DatabaseConfig(connectionParameters: parameters, slotName: slotName, createSlot: createSlot,
                                      publicationName: publicationName, createPublication: createPublication,
                                      publicationTables: tables, publishViaPartitionRoot: viaRoot, heartbeatInterval: heartbeat)
        database.name = fields["name"].flatMap { string($0, at: "\(path).name") }
        if database.name?.isEmpty == true {
            errors.append(ConfigError("\(path).name", "is empty — give the name consumers see in metadata.database.name, or leave it out"))
        }
        database.annotations = fields["annotations"].flatMap { annotations($0, at: "\(path).annotations") } ?? "{}"
        return database
    }

    mutating func readSink(_ node: ConfigNode, at path: String) -> SinkConfig? {
        let allowed = ["name", "tables", "actions", "message_grouping", "group_columns", "max_memory_mb", "park_after",
                       "destination", "filter", "transform", "routing", "initial_backfill", "backfill",
                       "source", "status", "annotations", "value_format", "enrichment"]
        guard let fields = mapping(node, at: path, allowed: allowed) else { return nil }
        let enrichment = fields["enrichment"].flatMap { functionReference($0, at: "\(path).enrichment", kinds: [.enrichment]) }
        let filter = fields["filter"].flatMap { functionReference($0, at: "\(path).filter", kinds: [.filter]) }
        let transform = fields["transform"].flatMap { functionReference($0, at: "\(path).transform", kinds: [.transform, .path]) }
        let routing = fields["routing"].flatMap { functionReference($0, at: "\(path).routing", kinds: [.routing]) }
        let name = fields["name"].flatMap { string($0, at: "\(path).name") } ?? ""
        if name.isEmpty { errors.append(ConfigError("\(path).name", "is required: give the sink a name, e.g. orders-to-kafka")) }
        var tables: [TableName] = []
        var groupColumns: [TableName: [String]] = [:]
        if let node = fields["tables"] { readSinkTables(node, at: "\(path).tables", tables: &tables, groupColumns: &groupColumns) }
        let initialBackfill = fields["initial_backfill"].flatMap { readInitialBackfill($0, at: "\(path).initial_backfill", sinkTables: tables) }
        var maxQuery = 5_000
        if let node = fields["backfill"], let backfillFields = mapping(node, at: "\(path).backfill", allowed: ["max_query_ms"]) {
            maxQuery = backfillFields["max_query_ms"].flatMap { integer($0, at: "\(path).backfill.max_query_ms", range: 10...600_000) } ?? 5_000
        }
        var actions = Set(Action.allCases)
        if let node = fields["actions"] {
            actions = []
            for (index, item) in list(node, at: "\(path).actions").enumerated() {
                guard let text = string(item, at: "\(path).actions[\(index)]") else { continue }
                if let action = Action(rawValue: text) { actions.insert(action) } else {
                    errors.append(ConfigError("\(path).actions[\(index)]", "\(quoted(text)) — use insert, update, delete, read or truncate"))
                }
            }
        }
        let grouping = fields["message_grouping"].flatMap { bool($0, at: "\(path).message_grouping") } ?? true
        let memory = fields["max_memory_mb"].flatMap { integer($0, at: "\(path).max_memory_mb", range: 16...65536) } ?? 128
        if let node = fields["group_columns"] {
            if case .mapping(let pairs) = node {
                for (tableText, columnsNode) in pairs {
                    let fieldPath = "\(path).group_columns.\(tableText)"
                    guard let table = TableName(parsing: tableText) else {
                        errors.append(ConfigError(fieldPath, "\(quoted(tableText)) — write schema.table, e.g. public.orders"))
                        continue
                    }
                    let columns = list(columnsNode, at: fieldPath).enumerated().compactMap { string($1, at: "\(fieldPath)[\($0)]") }
                    if columns.isEmpty { errors.append(ConfigError(fieldPath, "list at least one column")) }
                    if groupColumns[table] != nil {
                        errors.append(ConfigError(fieldPath, "group columns of \(table) are also set in tables — set them in one place"))
                    }
                    groupColumns[table] = columns
                }
            } else {
                errors.append(ConfigError("\(path).group_columns", "must map tables to column lists, e.g. public.orders: [customer_id]"))
            }
        }
        var parkAfter = 120.0
        if let node = fields["park_after"], let text = string(node, at: "\(path).park_after") {
            if let seconds = Self.parseDuration(text), seconds >= 1 { parkAfter = seconds } else {
                errors.append(ConfigError("\(path).park_after", "\(quoted(text)) — write a duration of at least 1s, such as 2m"))
            }
        }
        guard let destinationNode = fields["destination"] else {
            errors.append(ConfigError("\(path).destination", "is required: add a destination with type: kafka, hosts and topic"))
            return nil
        }
        guard let destination = readKafka(destinationNode, at: "\(path).destination", topicOptional: routing != nil) else { return nil }
        var sink = SinkConfig(name: name, tables: tables, actions: actions, messageGrouping: grouping, groupColumns: groupColumns,
                              maxMemoryMB: memory, parkAfter: parkAfter, destination: destination, filter: filter,
                              routing: routing, transform: transform)
        sink.initialBackfill = initialBackfill
        sink.backfillMaxQueryMS = maxQuery
        sink.enrichment = enrichment
        if !grouping && !groupColumns.isEmpty {
            errors.append(ConfigError("\(path).message_grouping", "is false while group columns are set for \(groupColumns.keys.map(\.description).sorted().joined(separator: ", ")) — remove them, or turn grouping on"))
        }
        if let node = fields["source"], let source = readSource(node, at: "\(path).source") { sink.source = source }
        if let text = fields["status"].flatMap({ string($0, at: "\(path).status") }) {
            switch text {
            case "active": sink.enabled = true
            case "disabled": sink.enabled = false
            default: errors.append(ConfigError("\(path).status", "\(quoted(text)) — use active or disabled"))
            }
        }
        sink.annotations = fields["annotations"].flatMap { annotations($0, at: "\(path).annotations") } ?? "{}"
        if let text = fields["value_format"].flatMap({ string($0, at: "\(path).value_format") }) {
            if let format = ValueFormat(rawValue: text) { sink.valueFormat = format } else {
                errors.append(ConfigError("\(path).value_format", "\(quoted(text)) — use sluice (exact JSON values) or sequin (Sequin's forms)"))
            }
        }
        return sink
    }

    mutating func readKafka(_ node: ConfigNode, at path: String, topicOptional: Bool = false) -> KafkaDestination? {
        let allowed = ["type", "hosts", "topic", "tls", "username", "password", "sasl_mechanism", "compression",
                       "batch_size", "max_ack_pending", "max_message_bytes"]
        guard let fields = mapping(node, at: path, allowed: allowed) else { return nil }
        let type = fields["type"].flatMap { string($0, at: "\(path).type") }
        if type != "kafka" {
            errors.append(ConfigError("\(path).type", type.map { "\(quoted($0)) — the only destination type is kafka" } ?? "is required: type: kafka"))
        }
        var hosts: [HostPort] = []
        if let text = fields["hosts"].flatMap({ string($0, at: "\(path).hosts") }) {
            for entry in text.split(separator: ",").map({ $0.trimmingSpaces }) {
                guard let host = parseHostPort(entry), !host.host.isEmpty else {
                    errors.append(ConfigError("\(path).hosts", "\(quoted(entry)) — write host:port, e.g. 127.0.0.1:9092 or [::1]:9092"))
                    continue
                }
                guard (1...65535).contains(host.port) else {
                    errors.append(ConfigError("\(path).hosts", "\(quoted(entry)) — port must be 1-65535"))
                    continue
                }
                hosts.append(host)
            }
            if hosts.isEmpty && text.trimmingSpaces.isEmpty {
                errors.append(ConfigError("\(path).hosts", "is empty — list brokers as host:port, comma-separated"))
            }
        } else if fields["hosts"] == nil {
            errors.append(ConfigError("\(path).hosts", "is required: list brokers as host:port, comma-separated"))
        }
        var topic = ""
        if let text = fields["topic"].flatMap({ string($0, at: "\(path).topic") }) {
            if let problem = Self.topicProblem(text) { errors.append(ConfigError("\(path).topic", "\(quoted(text)) — \(problem)")) }
            topic = text
        } else if fields["topic"] == nil && !topicOptional {
            errors.append(ConfigError("\(path).topic", "is required: the Kafka topic to write to (or set a routing function that sets topic)"))
        }
        let tls = fields["tls"].flatMap { readTLS($0, at: "\(path).tls") }
        let username = fields["username"].flatMap { string($0, at: "\(path).username") }
        let password = fields["password"].flatMap { string($0, at: "\(path).password", secret: true) }
        // Judge by what was written: a password whose variable is unset was still given.
        if (fields["username"] == nil) != (fields["password"] == nil) {
            errors.append(ConfigError(fields["username"] == nil ? "\(path).username" : "\(path).password",
                                      "username and password go together — give both or neither"))
        }
        var mechanism: KafkaDestination.SASLMechanism?
        if let text = fields["sasl_mechanism"].flatMap({ string($0, at: "\(path).sasl_mechanism") }) {
            mechanism = KafkaDestination.SASLMechanism(rawValue: text)
            if mechanism == nil {
                errors.append(ConfigError("\(path).sasl_mechanism", "\(quoted(text)) — use plain, scram_sha_256 or scram_sha_512"))
            } else if fields["username"] == nil {
                errors.append(ConfigError("\(path).sasl_mechanism", "needs username and password"))
            }
        } else if fields["username"] != nil {
            errors.append(ConfigError("\(path).sasl_mechanism", "is required with username and password: plain, scram_sha_256 or scram_sha_512"))
        }
        var compression = KafkaDestination.Compression.none
        if let text = fields["compression"].flatMap({ string($0, at: "\(path).compression") }) {
            if let value = KafkaDestination.Compression(rawValue: text) { compression = value } else {
                errors.append(ConfigError("\(path).compression", "\(quoted(text)) — use none, gzip, snappy, lz4 or zstd"))
            }
        }
        let batchSize = fields["batch_size"].flatMap { integer($0, at: "\(path).batch_size", range: 1...10_000) } ?? 200
        let maxAckPending = fields["max_ack_pending"].flatMap { integer($0, at: "\(path).max_ack_pending", range: 1...1_000_000) } ?? 10_000
        let maxMessageBytes = fields["max_message_bytes"].flatMap {
            integer($0, at: "\(path).max_message_bytes", range: 1_000...100_000_000)
        } ?? 1_000_000
        return KafkaDestination(hosts: hosts, topic: topic, tls: tls, username: username, password: password,
                                saslMechanism: mechanism, compression: compression, batchSize: batchSize,
                                maxAckPending: maxAckPending, maxMessageBytes: maxMessageBytes)
    }

    /// `tls: true|false`, or `tls: {ca_file, cert_file, key_file, verify}` (verify defaults to true there).
    mutating func readTLS(_ node: ConfigNode, at path: String) -> KafkaDestination.TLS? {
        if case .scalar = node {
            return bool(node, at: path).flatMap { $0 ? KafkaDestination.TLS(verify: false) : nil }
        }
        guard let fields = mapping(node, at: path, allowed: ["ca_file", "cert_file", "key_file", "verify"]) else { return nil }
        var tls = KafkaDestination.TLS(verify: fields["verify"].flatMap { bool($0, at: "\(path).verify") } ?? true)
        func file(_ key: String) -> String? {
            guard let value = fields[key].flatMap({ string($0, at: "\(path).\(key)") }) else { return nil }
            if !FileManager.default.isReadableFile(atPath: value) {
                errors.append(ConfigError("\(path).\(key)", "\(quoted(value)) — no readable file there; give the path of a PEM file"))
            }
            return value
        }
        tls.caFile = file("ca_file")
        tls.certFile = file("cert_file")
        tls.keyFile = file("key_file")
        if (tls.certFile == nil) != (tls.keyFile == nil) {
            errors.append(ConfigError(tls.certFile == nil ? "\(path).cert_file" : "\(path).key_file",
                                      "cert_file and key_file go together — give both for a client certificate, or neither"))
        }
        return tls
    }

    // MARK: - Backfills

    /// `initial_backfill: true`, or Sequin's list of `{table, type: full|partial, sort_column, start_position}`.
    mutating func readInitialBackfill(_ node: ConfigNode, at path: String, sinkTables: [TableName]) -> [BackfillSpec]? {
        if case .scalar = node { return bool(node, at: path) == true ? [] : nil }
        guard case .sequence(let items) = node else {
            errors.append(ConfigError(path, "write true, or a list of {table, type: partial, sort_column, start_position}"))
            return nil
        }
        var specs: [BackfillSpec] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard let fields = mapping(item, at: itemPath, allowed: ["table", "type", "sort_column", "start_position"]) else { continue }
            guard let text = fields["table"].flatMap({ string($0, at: "\(itemPath).table") }) else {
                if fields["table"] == nil { errors.append(ConfigError("\(itemPath).table", "is required: the table to backfill, e.g. public.orders")) }
                continue
            }
            guard let table = TableName(parsing: text) else {
                errors.append(ConfigError("\(itemPath).table", "\(quoted(text)) — write schema.table, e.g. public.orders"))
                continue
            }
            if !sinkTables.isEmpty, !sinkTables.contains(table) {
                errors.append(ConfigError("\(itemPath).table", "\(quoted(text)) is not one of this sink's tables — add it to tables, or remove it here"))
            }
            let type = fields["type"].flatMap { string($0, at: "\(itemPath).type") } ?? "full"
            var spec = BackfillSpec(table: table)
            switch type {
            case "full":
                for key in ["sort_column", "start_position"] where fields[key] != nil {
                    errors.append(ConfigError("\(itemPath).\(key)", "only partial backfills take \(key) — add type: partial, or remove it"))
                }
            case "partial":
                spec.sortColumn = fields["sort_column"].flatMap { string($0, at: "\(itemPath).sort_column") }
                spec.startPosition = fields["start_position"].flatMap { string($0, at: "\(itemPath).start_position") }
                if spec.sortColumn == nil, fields["sort_column"] == nil {
                    errors.append(ConfigError("\(itemPath).sort_column", "is required for a partial backfill: the column to read in order, e.g. updated_at"))
                }
                if spec.startPosition == nil, fields["start_position"] == nil {
                    errors.append(ConfigError("\(itemPath).start_position", "is required for a partial backfill: rows with sort_column >= it are sent"))
                }
            default:
                errors.append(ConfigError("\(itemPath).type", "\(quoted(type)) — use full or partial"))
            }
            specs.append(spec)
        }
        return specs
    }

    // MARK: - Functions

    mutating func readFunction(_ node: ConfigNode, at path: String) -> FunctionConfig? {
        let allowed = ["name", "type", "code", "file", "path", "description", "max_instructions", "max_memory_mb",
                       "statement_timeout"]
        guard let fields = mapping(node, at: path, allowed: allowed) else { return nil }
        let name = fields["name"].flatMap { string($0, at: "\(path).name") } ?? ""
        if name.isEmpty || name == "none" {
            errors.append(ConfigError("\(path).name", name.isEmpty ? "is required: give the function a name, e.g. paid-only"
                                                                   : "\"none\" means no function — choose another name"))
        }
        guard let typeText = fields["type"].flatMap({ string($0, at: "\(path).type") }) else {
            if fields["type"] == nil { errors.append(ConfigError("\(path).type", "is required: filter, transform, path, routing or enrichment")) }
            return nil
        }
        guard let kind = FunctionConfig.Kind(rawValue: typeText) else {
            errors.append(ConfigError("\(path).type", "\(quoted(typeText)) — use filter, transform, path, routing or enrichment"))
            return nil
        }
        let maxInstructions = fields["max_instructions"].flatMap {
            integer($0, at: "\(path).max_instructions", range: 1_000...1_000_000_000)
        } ?? 1_000_000
        let maxMemory = fields["max_memory_mb"].flatMap { integer($0, at: "\(path).max_memory_mb", range: 1...1_024) } ?? 16
        var function = FunctionConfig(name: name, kind: kind, maxInstructions: maxInstructions, maxMemoryMB: maxMemory)
        if let node = fields["statement_timeout"], let text = string(node, at: "\(path).statement_timeout") {
            if kind != .enrichment {
                errors.append(ConfigError("\(path).statement_timeout", "only enrichment functions run SQL — remove it"))
            } else if let seconds = Self.parseDuration(text), seconds >= 0.001 {
                function.statementTimeout = seconds
            } else {
                errors.append(ConfigError("\(path).statement_timeout", "\(quoted(text)) — write a duration such as 5s or 500ms"))
            }
        }

        if kind == .path {
            for key in ["code", "file"] where fields[key] != nil {
                errors.append(ConfigError("\(path).\(key)", "a path function has no code — give path: record.field, or use type: transform"))
            }
            guard let text = fields["path"].flatMap({ string($0, at: "\(path).path") }) else {
                if fields["path"] == nil { errors.append(ConfigError("\(path).path", "is required: e.g. record, or record.address.city")) }
                return nil
            }
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            if let first = parts.first, ["record", "changes", "action", "metadata"].contains(String(first)), parts.allSatisfy({ !$0.isEmpty }) {
                function.path = text
            } else {
                errors.append(ConfigError("\(path).path", "\(quoted(text)) — start with record, changes, action or metadata, then .field.field…"))
                return nil
            }
            return function
        }

        if fields["path"] != nil {
            errors.append(ConfigError("\(path).path", "only path functions take a path — remove it, or use type: path"))
        }
        switch (fields["code"], fields["file"]) {
        case (.some, .some):
            errors.append(ConfigError(path, "give code or file, not both"))
            return nil
        case (.some(let node), nil):
            // Code is taken as written: ${...} in Lua is Lua's, not an environment variable.
            guard case .scalar(let code) = node else {
                errors.append(ConfigError("\(path).code", "must be text: the Lua chunk, e.g. code: |"))
                return nil
            }
            function.code = code
            function.origin = "\(path).code"
        case (nil, .some(let node)):
            guard let file = string(node, at: "\(path).file") else { return nil }
            let full = file.hasPrefix("/") ? file : (baseDirectory as NSString).appendingPathComponent(file)
            guard let code = try? String(contentsOfFile: full, encoding: .utf8) else {
                errors.append(ConfigError("\(path).file", "\(quoted(file)) — no readable UTF-8 file at \(full); paths are relative to the configuration file's folder"))
                return nil
            }
            function.code = code
            function.origin = file
        case (nil, nil):
            if kind == .enrichment {
                errors.append(ConfigError(path, "give code: the SQL query, with $1 for the batch's primary-key values (e.g. WHERE u.id = ANY($1))"))
                return nil
            }
            let entry = kind.entryPoint ?? kind.rawValue
            errors.append(ConfigError(path, "give code (a Lua chunk defining function \(entry)(action, record, changes, metadata)) or file"))
            return nil
        }
        if kind == .enrichment, function.code.trimmingSpaces.isEmpty {
            errors.append(ConfigError(function.origin, "is empty — write the SQL query"))
        }
        return function
    }

    /// A sink's `filter:`, `transform:` or `routing:`: the name of a declared function of the right type, or "none".
    mutating func functionReference(_ node: ConfigNode, at path: String, kinds: [FunctionConfig.Kind]) -> FunctionConfig? {
        guard let name = string(node, at: path), name != "none", !name.isEmpty else { return nil }
        guard let function = functions[name] else {
            if refusedFunctions.contains(name) { return nil }  // its declaration's error says why
            let kindNames = kinds.map(\.rawValue).joined(separator: " or ")
            let hint = Self.nearest(to: name, in: functions.values.filter { kinds.contains($0.kind) }.map(\.name))
                .map { " — did you mean \($0)?" } ?? " — declare it under functions: with type: \(kindNames), or write none"
            errors.append(ConfigError(path, "\(quoted(name)) is not a declared function\(hint)"))
            return nil
        }
        guard kinds.contains(function.kind) else {
            errors.append(ConfigError(path, "\(quoted(name)) is a \(function.kind.rawValue) function — this takes a \(kinds.map(\.rawValue).joined(separator: " or ")) function"))
            return nil
        }
        return function
    }

    /// `tables:` of a sink: `public.orders` entries narrow the sink to those tables (Sluice's form);
    /// `{name: public.orders, group_column_names: [account_id]}` entries (Sequin's form) set a table's
    /// group columns without narrowing, as in Sequin, where `source` selects tables.
    mutating func readSinkTables(_ node: ConfigNode, at path: String, tables: inout [TableName],
                                 groupColumns: inout [TableName: [String]]) {
        for (index, item) in list(node, at: path).enumerated() {
            let itemPath = "\(path)[\(index)]"
            if case .mapping = item {
                guard let fields = mapping(item, at: itemPath, allowed: ["name", "group_column_names"]) else { continue }
                guard let text = fields["name"].flatMap({ string($0, at: "\(itemPath).name") }) else {
                    if fields["name"] == nil { errors.append(ConfigError("\(itemPath).name", "is required: schema.table, e.g. public.orders")) }
                    continue
                }
                guard let table = TableName(parsing: text) else {
                    errors.append(ConfigError("\(itemPath).name", "\(quoted(text)) — write schema.table, e.g. public.orders"))
                    continue
                }
                if let columnsNode = fields["group_column_names"] {
                    let columnsPath = "\(itemPath).group_column_names"
                    let columns = list(columnsNode, at: columnsPath).enumerated().compactMap { string($1, at: "\(columnsPath)[\($0)]") }
                    if columns.isEmpty { errors.append(ConfigError(columnsPath, "list at least one column")) }
                    groupColumns[table] = columns
                }
                continue
            }
            guard let text = string(item, at: itemPath) else { continue }
            if let table = TableName(parsing: text) { tables.append(table) } else {
                errors.append(ConfigError(itemPath, "\(quoted(text)) — write schema.table, e.g. public.orders"))
            }
        }
    }

    /// Sequin's sink `source`.
    mutating func readSource(_ node: ConfigNode, at path: String) -> SinkSource? {
        let keys = ["include_schemas", "exclude_schemas", "include_tables", "exclude_tables"]
        guard let fields = mapping(node, at: path, allowed: keys) else { return nil }
        func schemas(_ key: String) -> Set<String>? {
            guard let node = fields[key] else { return nil }
            let names = list(node, at: "\(path).\(key)").enumerated().compactMap { string($1, at: "\(path).\(key)[\($0)]") }
            if names.isEmpty { errors.append(ConfigError("\(path).\(key)", "list at least one schema, or leave it out")) }
            return Set(names)
        }
        func tables(_ key: String) -> Set<TableName>? {
            guard let node = fields[key] else { return nil }
            let names = tableList(node, at: "\(path).\(key)")
            if names.isEmpty, case .sequence(let items) = node, items.isEmpty {
                errors.append(ConfigError("\(path).\(key)", "list at least one table, or leave it out"))
            }
            return Set(names)
        }
        for (include, exclude) in [("include_schemas", "exclude_schemas"), ("include_tables", "exclude_tables")]
        where fields[include] != nil && fields[exclude] != nil {
            errors.append(ConfigError("\(path).\(exclude)", "cannot be set together with \(include) — keep one of them"))
        }
        return SinkSource(includeSchemas: schemas("include_schemas"), excludeSchemas: schemas("exclude_schemas"),
                          includeTables: tables("include_tables"), excludeTables: tables("exclude_tables"))
    }

    /// `annotations:` — a mapping, written as a JSON object. YAML's plain scalars keep their YAML type
    /// (numbers, true/false, null); everything else is a string.
    mutating func annotations(_ node: ConfigNode, at path: String) -> String? {
        guard case .mapping = node else {
            if case .null = node { return "{}" }
            errors.append(ConfigError(path, "must be a mapping, e.g. annotations: {team: billing}"))
            return nil
        }
        var json = JSONWriter()
        Self.writeJSON(node, to: &json)
        return String(decoding: json.bytes, as: UTF8.self)
    }

    static func writeJSON(_ node: ConfigNode, to json: inout JSONWriter) {
        switch node {
        case .null:
            json.null()
        case .scalar(let text):
            if text == "true" || text == "false" {
                json.bool(text == "true")
            } else if text.utf8.first.map({ $0 == UInt8(ascii: "-") || ($0 >= 0x30 && $0 <= 0x39) }) == true,
                      text.utf8.withContiguousStorageIfAvailable({ ValueConverter.isJSONNumber($0) }) == true {
                json.raw(text.utf8)
            } else {
                json.string(text)
            }
        case .sequence(let items):
            json.raw(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { json.raw(UInt8(ascii: ",")) }
                writeJSON(item, to: &json)
            }
            json.raw(UInt8(ascii: "]"))
        case .mapping(let pairs):
            json.raw(UInt8(ascii: "{"))
            for (index, (key, value)) in pairs.enumerated() {
                if index > 0 { json.raw(UInt8(ascii: ",")) }
                json.key(key)
                writeJSON(value, to: &json)
            }
            json.raw(UInt8(ascii: "}"))
        }
    }

    // MARK: - Rules

    /// Kafka's own rule: 1-255 of `[a-zA-Z0-9._-]`, not `.` or `..`.
    public static func topicProblem(_ topic: String) -> String? {
        if topic.isEmpty { return "a topic name cannot be empty" }
        if topic.utf8.count > 255 { return "a topic name has at most 255 characters (this one has \(topic.utf8.count))" }
        if topic == "." || topic == ".." { return "a topic cannot be named . or .." }
        let legal = topic.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        return legal ? nil : "a topic name uses only letters, digits, '.', '_' and '-'"
    }

    static func isValidSlotName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 63 && name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "_")
        }
    }

    /// `15s`, `500ms`, `2m`, `1h`, or a plain number of seconds.
    public static func parseDuration(_ text: String) -> Double? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value >= 0 else { return nil }
            return value * factor
        }
        guard let value = Double(text), value >= 0 else { return nil }
        return value
    }

    // MARK: - Field readers

    mutating func mapping(_ node: ConfigNode, at path: String, allowed: [String]) -> [String: ConfigNode]? {
        guard case .mapping(let pairs) = node else {
            errors.append(ConfigError(path, "must be a mapping of fields"))
            return nil
        }
        var result: [String: ConfigNode] = [:]
        for (key, value) in pairs {
            let fieldPath = path.isEmpty ? key : "\(path).\(key)"
            guard allowed.contains(key) else {
                let hint = Self.nearest(to: key, in: allowed).map { " — did you mean \($0)?" } ?? " — remove it"
                errors.append(ConfigError(fieldPath, "unknown field\(hint)"))
                continue
            }
            result[key] = value
        }
        return result
    }

    mutating func string(_ node: ConfigNode, at path: String, secret: Bool = false) -> String? {
        guard case .scalar(let raw) = node else {
            errors.append(ConfigError(path, "must be a single value"))
            return nil
        }
        switch EnvironmentInterpolation.apply(raw, environment: environment) {
        case .success(let value): return value
        case .failure(.unset(let name)):
            errors.append(ConfigError(path, "environment variable \(name) is not set — export it, or write ${\(name):-default}"))
        case .failure(.unterminated):
            errors.append(ConfigError(path, secret ? "has an unterminated ${ — close it with }" : "\(quoted(raw)) has an unterminated ${ — close it with }"))
        }
        return nil
    }

    mutating func bool(_ node: ConfigNode, at path: String) -> Bool? {
        guard let text = string(node, at: path) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            errors.append(ConfigError(path, "\(quoted(text)) — use true or false"))
            return nil
        }
    }

    mutating func integer(_ node: ConfigNode, at path: String, range: ClosedRange<Int>) -> Int? {
        guard let text = string(node, at: path) else { return nil }
        guard let value = Int(text.replacingUnderscores), range.contains(value) else {
            errors.append(ConfigError(path, "\(quoted(text)) — must be a whole number from \(range.lowerBound) to \(range.upperBound)"))
            return nil
        }
        return value
    }

    mutating func list(_ node: ConfigNode, at path: String) -> [ConfigNode] {
        switch node {
        case .sequence(let items): return items
        case .scalar: return [node]
        default:
            errors.append(ConfigError(path, "must be a list"))
            return []
        }
    }

    mutating func tableList(_ node: ConfigNode, at path: String) -> [TableName] {
        var tables: [TableName] = []
        for (index, item) in list(node, at: path).enumerated() {
            guard let text = string(item, at: "\(path)[\(index)]") else { continue }
            if let table = TableName(parsing: text) { tables.append(table) } else {
                errors.append(ConfigError("\(path)[\(index)]", "\(quoted(text)) — write schema.table, e.g. public.orders"))
            }
        }
        return tables
    }

    func parseHostPort(_ text: String) -> HostPort? {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":"),
                  let port = Int(text[text.index(close, offsetBy: 2)...]) else { return nil }
            return HostPort(host: String(text[text.index(after: text.startIndex)..<close]), port: port)
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]) else { return nil }
        return HostPort(host: String(parts[0]), port: port)
    }

    func quoted(_ text: String) -> String { "\"\(text)\"" }

    /// The allowed key closest to a misspelt one (edit distance ≤ 3).
    static func nearest(to key: String, in candidates: [String]) -> String? {
        let best = candidates.map { ($0, editDistance(key, $0)) }.min { $0.1 < $1.1 }
        guard let best, best.1 <= 3 else { return nil }
        return best.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return a.isEmpty ? b.count : previous[b.count]
    }
}

/// Every problem found in a configuration, one line each.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public init(errors: [ConfigError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }

    var replacingUnderscores: String { String(filter { $0 != "_" }) }
}
