extension SinkConfig {
    static let fieldNames = ["name", "tables", "actions", "message_grouping", "group_columns", "max_memory_mb", "park_after",
                             "destination", "filter", "transform", "routing", "initial_backfill", "backfill",
                             "source", "status", "annotations", "value_format", "enrichment", "delivery"]

    /// One entry of `sinks:`; its functions are names from `functions`. Nil when it is not a mapping
    /// or has no usable destination.
    init?(reading node: ConfigNode, at path: String, functions: DeclaredFunctions, reader: inout ConfigReader) {
        guard let fields = reader.fields(node, at: path, allowed: Self.fieldNames) else { return nil }
        func function(_ key: String, _ kinds: [FunctionConfig.Kind]) -> FunctionConfig? {
            fields[key].flatMap { functions.reference($0, at: fields.path(key), kinds: kinds, reader: &reader) }
        }
        let enrichment = function("enrichment", [.enrichment])
        let filter = function("filter", [.filter])
        let transform = function("transform", [.transform, .path])
        let routing = function("routing", [.routing])
        let name = reader.string("name", in: fields) ?? ""
        if name.isEmpty { reader.report(.missingField, at: fields.path("name"), "is required: give the sink a name, e.g. orders-to-kafka") }
        var tables: [TableName] = []
        var groupColumns: [TableName: [String]] = [:]
        if let node = fields["tables"] {
            Self.readTables(node, at: fields.path("tables"), tables: &tables, groupColumns: &groupColumns, reader: &reader)
        }
        let initialBackfill = fields["initial_backfill"].flatMap {
            BackfillSpec.initialBackfill(reading: $0, at: fields.path("initial_backfill"), sinkTables: tables, reader: &reader)
        }
        var maxQuery = 5_000
        if let node = fields["backfill"], let backfillFields = reader.fields(node, at: fields.path("backfill"), allowed: ["max_query_ms"]) {
            maxQuery = reader.integer("max_query_ms", in: backfillFields, range: 10...600_000) ?? 5_000
        }
        let actions = fields["actions"].map { Self.readActions($0, at: fields.path("actions"), reader: &reader) } ?? Set(Action.allCases)
        let grouping = reader.bool("message_grouping", in: fields) ?? true
        let memory = reader.integer("max_memory_mb", in: fields, range: 16...65536) ?? 128
        if let node = fields["group_columns"] {
            Self.readGroupColumns(node, at: fields.path("group_columns"), into: &groupColumns, reader: &reader)
        }
        var parkAfter = 120.0
        if let text = reader.string("park_after", in: fields) {
            let duration = ConfigDuration(text)
            if let duration, duration.seconds >= 1 { parkAfter = duration.seconds } else {
                reader.report(duration == nil ? .invalidValue : .outOfRange, at: fields.path("park_after"), quoting: text,
                              "— write a duration of at least 1s, such as 2m")
            }
        }
        guard let destinationNode = fields["destination"] else {
            reader.report(.missingField, at: fields.path("destination"), "is required: add a destination with type: kafka, hosts and topic")
            return nil
        }
        guard let destination = KafkaDestination(reading: destinationNode, at: fields.path("destination"),
                                                 topicOptional: routing != nil, reader: &reader) else { return nil }
        self.init(name: name, tables: tables, actions: actions, messageGrouping: grouping, groupColumns: groupColumns,
                  maxMemoryMB: memory, parkAfter: parkAfter, destination: destination, filter: filter,
                  routing: routing, transform: transform)
        self.initialBackfill = initialBackfill
        backfillMaxQueryMS = maxQuery
        self.enrichment = enrichment
        if !grouping && !groupColumns.isEmpty {
            reader.report(.conflict, at: fields.path("message_grouping"),
                          "is false while group columns are set for \(groupColumns.keys.map(\.description).sorted().joined(separator: ", ")) — remove them, or turn grouping on")
        }
        if let node = fields["source"], let source = SinkSource(reading: node, at: fields.path("source"), reader: &reader) { self.source = source }
        switch reader.string("status", in: fields) {
        case nil: break
        case "active": enabled = true
        case "disabled": enabled = false
        case .some(let text): reader.report(.invalidValue, at: fields.path("status"), quoting: text, "— use active or disabled")
        }
        annotations = fields["annotations"].flatMap { reader.annotations($0, at: fields.path("annotations")) } ?? "{}"
        if let text = reader.string("delivery", in: fields) {
            if let mode = DeliveryMode(rawValue: text) { delivery = mode } else {
                reader.report(.invalidValue, at: fields.path("delivery"), quoting: text, "— use at_least_once or exactly_once")
            }
        }
        if delivery == .atLeastOnce, case .mapping(let pairs) = destinationNode {
            for key in ["transactional_id", "transaction_timeout", "offsets_topic"] where pairs.contains(where: { $0.0 == key }) {
                reader.report(.conflict, at: fields.path("destination") + "." + key,
                              "is set but the sink's delivery is at_least_once — set delivery: exactly_once, or remove it")
            }
        }
        if let text = reader.string("value_format", in: fields) {
            if let format = ValueFormat(rawValue: text) { valueFormat = format } else {
                reader.report(.invalidValue, at: fields.path("value_format"), quoting: text, "— use sluice (exact JSON values) or sequin (Sequin's forms)")
            }
        }
    }

    static func readActions(_ node: ConfigNode, at path: String, reader: inout ConfigReader) -> Set<Action> {
        var actions: Set<Action> = []
        for (index, item) in reader.list(node, at: path).enumerated() {
            guard let text = reader.string(item, at: "\(path)[\(index)]") else { continue }
            if let action = Action(rawValue: text) { actions.insert(action) } else {
                reader.report(.invalidValue, at: "\(path)[\(index)]", quoting: text, "— use insert, update, delete, read or truncate")
            }
        }
        return actions
    }

    /// `tables:` of a sink: `public.orders` entries narrow the sink to those tables (Sluice's form);
    /// `{name: public.orders, group_column_names: [account_id]}` entries (Sequin's form) set a table's
    /// group columns without narrowing, as in Sequin, where `source` selects tables.
    static func readTables(_ node: ConfigNode, at path: String, tables: inout [TableName],
                           groupColumns: inout [TableName: [String]], reader: inout ConfigReader) {
        for (index, item) in reader.list(node, at: path).enumerated() {
            let itemPath = "\(path)[\(index)]"
            if case .mapping = item {
                guard let fields = reader.fields(item, at: itemPath, allowed: ["name", "group_column_names"]) else { continue }
                guard let text = reader.string("name", in: fields) else {
                    if fields["name"] == nil { reader.report(.missingField, at: fields.path("name"), "is required: schema.table, e.g. public.orders") }
                    continue
                }
                guard let table = TableName(parsing: text) else {
                    reader.report(.invalidValue, at: fields.path("name"), quoting: text, "— write schema.table, e.g. public.orders")
                    continue
                }
                if let columnsNode = fields["group_column_names"] {
                    let columnsPath = fields.path("group_column_names")
                    let columns = reader.strings(columnsNode, at: columnsPath)
                    if columns.isEmpty { reader.report(.empty, at: columnsPath, "list at least one column") }
                    groupColumns[table] = columns
                }
                continue
            }
            guard let text = reader.string(item, at: itemPath) else { continue }
            if let table = TableName(parsing: text) { tables.append(table) } else {
                reader.report(.invalidValue, at: itemPath, quoting: text, "— write schema.table, e.g. public.orders")
            }
        }
    }

    /// `group_columns: {public.orders: [customer_id]}` — Sluice's form of what Sequin's `tables:` entries set.
    static func readGroupColumns(_ node: ConfigNode, at path: String, into groupColumns: inout [TableName: [String]],
                                 reader: inout ConfigReader) {
        guard case .mapping(let pairs) = node else {
            reader.report(.wrongType, at: path, "must map tables to column lists, e.g. public.orders: [customer_id]")
            return
        }
        for (tableText, columnsNode) in pairs {
            let fieldPath = "\(path).\(tableText)"
            guard let table = TableName(parsing: tableText) else {
                reader.report(.invalidValue, at: fieldPath, quoting: tableText, "— write schema.table, e.g. public.orders")
                continue
            }
            let columns = reader.strings(columnsNode, at: fieldPath)
            if columns.isEmpty { reader.report(.empty, at: fieldPath, "list at least one column") }
            if groupColumns[table] != nil {
                reader.report(.duplicate, at: fieldPath, "group columns of \(table) are also set in tables — set them in one place")
            }
            groupColumns[table] = columns
        }
    }
}
