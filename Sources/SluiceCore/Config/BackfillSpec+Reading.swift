extension BackfillSpec {
    static let fieldNames = ["table", "type", "sort_column", "start_position"]

    /// A sink's `initial_backfill: true` (every table of the sink: an empty list), or Sequin's list of
    /// `{table, type: full|partial, sort_column, start_position}`. Nil for none.
    static func initialBackfill(reading node: ConfigNode, at path: String, sinkTables: [TableName],
                                reader: inout ConfigReader) -> [BackfillSpec]? {
        if case .scalar = node { return reader.bool(node, at: path) == true ? [] : nil }
        guard case .sequence(let items) = node else {
            reader.report(.wrongType, at: path, "write true, or a list of {table, type: partial, sort_column, start_position}")
            return nil
        }
        return items.enumerated().compactMap { index, item in
            BackfillSpec(reading: item, at: "\(path)[\(index)]", sinkTables: sinkTables, reader: &reader)
        }
    }

    /// One entry of `initial_backfill`; its table must be one of the sink's, when the sink lists them.
    init?(reading node: ConfigNode, at path: String, sinkTables: [TableName], reader: inout ConfigReader) {
        guard let fields = reader.fields(node, at: path, allowed: Self.fieldNames) else { return nil }
        guard let text = reader.string("table", in: fields) else {
            if fields["table"] == nil { reader.report(.missingField, at: fields.path("table"), "is required: the table to backfill, e.g. public.orders") }
            return nil
        }
        guard let table = TableName(parsing: text) else {
            reader.report(.invalidValue, at: fields.path("table"), quoting: text, "— write schema.table, e.g. public.orders")
            return nil
        }
        if !sinkTables.isEmpty, !sinkTables.contains(table) {
            reader.report(.conflict, at: fields.path("table"), quoting: text, "is not one of this sink's tables — add it to tables, or remove it here")
        }
        self.init(table: table)
        let type = reader.string("type", in: fields) ?? "full"
        switch type {
        case "full":
            for key in ["sort_column", "start_position"] where fields[key] != nil {
                reader.report(.conflict, at: fields.path(key), "only partial backfills take \(key) — add type: partial, or remove it")
            }
        case "partial":
            sortColumn = reader.string("sort_column", in: fields)
            startPosition = reader.string("start_position", in: fields)
            if sortColumn == nil, fields["sort_column"] == nil {
                reader.report(.missingField, at: fields.path("sort_column"),
                              "is required for a partial backfill: the column to read in order, e.g. updated_at")
            }
            if startPosition == nil, fields["start_position"] == nil {
                reader.report(.missingField, at: fields.path("start_position"),
                              "is required for a partial backfill: rows with sort_column >= it are sent")
            }
        default:
            reader.report(.invalidValue, at: fields.path("type"), quoting: type, "— use full or partial")
        }
    }
}
