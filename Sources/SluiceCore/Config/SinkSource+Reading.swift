extension SinkSource {
    static let fieldNames = ["include_schemas", "exclude_schemas", "include_tables", "exclude_tables"]

    /// Sequin's sink `source:`. An include list and its exclude list are not given together.
    init?(reading node: ConfigNode, at path: String, reader: inout ConfigReader) {
        guard let fields = reader.fields(node, at: path, allowed: Self.fieldNames) else { return nil }
        for (include, exclude) in [("include_schemas", "exclude_schemas"), ("include_tables", "exclude_tables")]
        where fields[include] != nil && fields[exclude] != nil {
            reader.report(.conflict, at: fields.path(exclude), "cannot be set together with \(include) — keep one of them")
        }
        func schemas(_ key: String) -> Set<String>? {
            guard let node = fields[key] else { return nil }
            let names = reader.strings(node, at: fields.path(key))
            if names.isEmpty { reader.report(.empty, at: fields.path(key), "list at least one schema, or leave it out") }
            return Set(names)
        }
        func tables(_ key: String) -> Set<TableName>? {
            guard let node = fields[key] else { return nil }
            let names = reader.tableNames(node, at: fields.path(key))
            if names.isEmpty, case .sequence(let items) = node, items.isEmpty {
                reader.report(.empty, at: fields.path(key), "list at least one table, or leave it out")
            }
            return Set(names)
        }
        self.init(includeSchemas: schemas("include_schemas"), excludeSchemas: schemas("exclude_schemas"),
                  includeTables: tables("include_tables"), excludeTables: tables("exclude_tables"))
    }
}
