import SluiceCore

/// `sinks:` → Sluice sinks. Kafka sinks carry over with every setting; other sink types are listed.
extension SequinImport {
    struct Sink {
        var name: String
        var database: String
        var pairs: [(String, YAMLValue)]
        /// Functions it refers to (enrichment, filter, routing, transform).
        var functionNames: [String]
    }

    mutating func readSinks(_ node: ConfigNode?, databases: [String], functions: [Function]) -> [Sink] {
        var sinks: [Sink] = []
        for (index, item) in (node?.items ?? []).enumerated() {
            let path = "sinks[\(index)]"
            let name = item["name"]?.text ?? ""
            let type = item["destination"]?["type"]?.text
            let label = Self.label(path, kind: type, name: name)
            guard item.pairs != nil else { note(path, "skipped — not a mapping of sink settings"); continue }
            guard let destination = item["destination"] else { note(label, "skipped — it has no destination"); continue }
            guard type == "kafka" else { note(label, "skipped — Sluice only has Kafka sinks"); continue }
            guard !name.isEmpty else { note(label, "skipped — it has no name (Sequin needs one too)"); continue }
            guard !sinks.contains(where: { $0.name == name }) else {
                note(label, "skipped — another sink has the same name (Sequin would update that one instead)")
                continue
            }
            let database: String
            if let named = item["database"]?.text {
                guard databases.contains(named) else {
                    note(label, "skipped — its database \(Self.shown(named)) is not declared under databases")
                    continue
                }
                database = named
            } else if databases.count == 1 {
                database = databases[0]
            } else {
                note(label, "skipped — it names no database (Sequin needs database: to know which one it reads)")
                continue
            }
            sinks.append(readKafkaSink(item, destination: destination, name: name, database: database, at: path, functions: functions))
        }
        return sinks
    }

    private mutating func readKafkaSink(_ node: ConfigNode, destination: ConfigNode, name: String, database: String,
                                        at path: String, functions: [Function]) -> Sink {
        var pairs: [(String, YAMLValue)] = [("name", .string(name))]
        if let status = node["status"]?.text {
            if status == "paused" {
                note("\(path).status", "\"paused\" written as disabled — Sluice has no paused state (active or disabled)")
                pairs.append(("status", .string("disabled")))
            } else {
                pairs.append(("status", .string(status)))
            }
        }
        if let source = readSource(node, at: path) { pairs.append(("source", source)) }
        if let tables = readTables(node, at: path) { pairs.append(("tables", tables)) }
        // Sequin's default: insert, update and delete; Sluice's would add truncate.
        pairs.append(("actions", node["actions"]?.strings ?? .list(["insert", "update", "delete"].map(YAMLValue.string))))
        if let grouping = node["message_grouping"]?.boolean { pairs.append(("message_grouping", grouping)) }
        if let annotations = node["annotations"] { pairs.append(("annotations", annotations.verbatim)) }

        var referenced: [String] = []
        for key in ["enrichment", "filter", "routing", "transform"] {
            guard let reference = node[key]?.text else { continue }
            pairs.append((key, .string(reference)))
            guard reference != "none" else { continue }
            referenced.append(reference)
            if !functions.contains(where: { $0.name == reference && $0.output != nil }) {
                note("\(path).\(key)", "\(Self.shown(reference)) is kept, but no function of that name was carried over — declare one under functions (sluice check refuses the file until then)")
            }
        }
        if let backfill = readInitialBackfill(node["initial_backfill"], at: "\(path).initial_backfill") {
            pairs.append(("initial_backfill", backfill))
        }
        for (key, value) in node.pairs ?? [] where !Self.sinkKeys.contains(key) && Self.isWorthANote(key, value)
            && !Self.isSluiceBehaviour(key, value) {
            note("\(path).\(key)", "skipped — " + (Self.sinkReasons[key] ?? "not a Sequin sink setting"))
        }
        pairs.append(("value_format", .string("sequin")))
        pairs.append(("destination", .map(readKafkaDestination(destination, sinkBatchSize: node["batch_size"], at: path))))
        return Sink(name: name, database: database, pairs: pairs, functionNames: referenced)
    }

    static let sinkKeys: Set<String> = [
        "name", "database", "status", "source", "tables", "table", "schema", "group_column_names", "actions",
        "message_grouping", "annotations", "enrichment", "filter", "routing", "transform", "initial_backfill",
        "batch_size", "destination",
    ]

    static let sinkReasons: [String: String] = [
        "timestamp_format": "Sluice writes timestamps in ISO 8601 only (Sequin's iso8601)",
        "max_retry_count": "Sluice retries a failing message until it is delivered or cancelled; it has no retry limit",
        "load_shedding_policy": "Sluice never discards messages: it pauses reading at max_memory_mb or max_ack_pending (as pause_on_full does)",
        "filters": "Sluice has no column filters: write them as a filter function",
        "consumer_start": "Sequin ignores it too",
        "active_backfill": "Sequin ignores it too",
        "active_backfills": "Sequin ignores it too",
        "message_kind": "Sequin ignores it too",
    ]

    /// Values that name what Sluice does anyway (as a Sequin export writes them): no line.
    static func isSluiceBehaviour(_ key: String, _ value: ConfigNode) -> Bool {
        (key == "timestamp_format" && value.text == "iso8601") || (key == "load_shedding_policy" && value.text == "pause_on_full")
    }

    // MARK: - Tables

    /// `source:` as written; the older `table:` and `schema:` become its include_tables and include_schemas.
    private mutating func readSource(_ node: ConfigNode, at path: String) -> YAMLValue? {
        if let table = node["table"]?.text {
            for older in ["source", "schema"] where node[older] != nil {
                note("\(path).\(older)", "skipped — table: is given too, and Sequin uses that")
            }
            return .map([("include_tables", .list([.string(table)]))])
        }
        if let source = node["source"] {
            if node["schema"] != nil { note("\(path).schema", "skipped — source: is given too, and Sequin uses that") }
            var pairs: [(String, YAMLValue)] = []
            for (key, value) in source.pairs ?? [] where Self.isWorthANote(key, value) {
                if ["include_schemas", "exclude_schemas", "include_tables", "exclude_tables"].contains(key) {
                    if let list = value.strings { pairs.append((key, list)) }
                } else {
                    note("\(path).source.\(key)", "skipped — not a Sequin source setting")
                }
            }
            return pairs.isEmpty ? nil : .map(pairs)
        }
        if let schema = node["schema"]?.text { return .map([("include_schemas", .list([.string(schema)]))]) }
        return nil
    }

    /// `tables: [{name, group_column_names}]` as written; the older sink-level `group_column_names`
    /// (beside `table:`) becomes one entry.
    private mutating func readTables(_ node: ConfigNode, at path: String) -> YAMLValue? {
        let olderGroups = node["group_column_names"]
        if let tables = node["tables"] {
            if olderGroups != nil { note("\(path).group_column_names", "skipped — tables: is given too, and its group_column_names are used") }
            var entries: [YAMLValue] = []
            for (index, item) in (tables.items ?? [tables]).enumerated() {
                // Sequin's entries only configure a table; a bare name in Sluice would narrow the sink.
                if let text = item.text { entries.append(.map([("name", .string(text))])); continue }
                var pairs: [(String, YAMLValue)] = []
                for (key, value) in item.pairs ?? [] {
                    switch key {
                    case "name": if let text = value.text { pairs.append((key, .string(text))) }
                    case "group_column_names":
                        // An export writes [] for "the primary key", which Sluice takes as leaving it out.
                        if let list = value.strings, list != .list([]) { pairs.append((key, list)) }
                    default: note("\(path).tables[\(index)].\(key)", "skipped — not a Sequin table setting")
                    }
                }
                entries.append(.map(pairs))
            }
            return .list(entries)
        }
        guard let olderGroups else { return nil }
        guard let table = node["table"]?.text, let columns = olderGroups.strings else {
            note("\(path).group_column_names", "skipped — Sequin takes it only beside table:")
            return nil
        }
        return .list([.map([("name", .string(table)), ("group_column_names", columns)])])
    }

    /// `true`/`false`, or the list of `{table, type, sort_column, start_position}` — the same in both.
    private mutating func readInitialBackfill(_ node: ConfigNode?, at path: String) -> YAMLValue? {
        guard let node else { return nil }
        if node.text != nil { return node.boolean }
        var entries: [YAMLValue] = []
        for (index, item) in (node.items ?? []).enumerated() {
            var pairs: [(String, YAMLValue)] = []
            for (key, value) in item.pairs ?? [] {
                if ["table", "type", "sort_column", "start_position"].contains(key), let text = value.text {
                    pairs.append((key, .string(text)))
                } else {
                    note("\(path)[\(index)].\(key)", "skipped — not a Sequin backfill setting")
                }
            }
            entries.append(.map(pairs))
        }
        return .list(entries)
    }

    // MARK: - Destination

    private mutating func readKafkaDestination(_ node: ConfigNode, sinkBatchSize: ConfigNode?, at sinkPath: String) -> [(String, YAMLValue)] {
        let path = "\(sinkPath).destination"
        var pairs: [(String, YAMLValue)] = [("type", .string("kafka"))]
        for key in ["hosts", "topic"] {
            if let text = node[key]?.text { pairs.append((key, .string(text))) }
        }
        if let tls = node["tls"]?.boolean { pairs.append(("tls", tls)) }
        for key in ["username", "password"] {
            if let text = node[key]?.text { pairs.append((key, .string(text))) }
        }
        if let password = node["password"]?.text { noteIfMasked(password, at: "\(path).password") }
        if let mechanism = node["sasl_mechanism"]?.text {
            if mechanism == "aws_msk_iam" {
                note("\(path).sasl_mechanism", "skipped — Sluice has no AWS MSK IAM authentication; use SASL/SCRAM (username, password, sasl_mechanism)")
            } else {
                pairs.append(("sasl_mechanism", .string(mechanism)))
            }
        }
        if let compression = node["compression"]?.text { pairs.append(("compression", .string(compression))) }
        if let batch = node["batch_size"]?.integer {
            pairs.append(("batch_size", batch))
            if sinkBatchSize != nil {
                note("\(sinkPath).batch_size", "skipped — destination.batch_size is given too, and is used")
            }
        } else if let batch = sinkBatchSize?.integer {
            pairs.append(("batch_size", batch))
        }
        let known: Set<String> = ["type", "hosts", "topic", "tls", "username", "password", "sasl_mechanism", "compression", "batch_size"]
        for (key, value) in node.pairs ?? [] where !known.contains(key) && Self.isWorthANote(key, value) {
            if key.hasPrefix("aws_") {
                note("\(path).\(key)", "skipped — Sluice has no AWS MSK IAM authentication")
            } else {
                note("\(path).\(key)", "skipped — not a Sequin Kafka setting")
            }
        }
        return pairs
    }
}
