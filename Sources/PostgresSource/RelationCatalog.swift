import SluiceCore

/// Completes Relation messages from the catalog: which columns form the primary key, and how
/// each column's type converts to JSON (domains as their base type, arrays by element type).
public final class RelationCatalog {
    let connection: PostgresConnection
    private var kinds: [UInt32: ValueKind] = [:]

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    public func relation(from description: RelationDescription) throws(PostgresError) -> Relation {
        let keys = try primaryKeyColumns(relationID: description.id)
        var columns: [Column] = []
        for column in description.columns {
            columns.append(Column(name: column.name, typeOID: column.typeOID, typeModifier: column.typeModifier,
                                  isReplicaIdentity: column.isKey, isPrimaryKey: keys.contains(column.name),
                                  kind: try kind(of: column.typeOID)))
        }
        return Relation(id: description.id, schema: description.schema, name: description.name,
                        replicaIdentity: description.replicaIdentity, columns: columns)
    }

    func primaryKeyColumns(relationID: UInt32) throws(PostgresError) -> Set<String> {
        let result = try connection.query("""
            SELECT a.attname FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = $1::oid AND i.indisprimary
            """, [String(relationID)])
        return Set(result.rows.compactMap { $0[0] })
    }

    public func kind(of oid: UInt32, depth: Int = 0) throws(PostgresError) -> ValueKind {
        if let builtin = ValueKind.builtin(oid: oid) { return builtin }
        if let known = kinds[oid] { return known }
        let result = try connection.query(
            "SELECT typtype, typcategory, typelem, typbasetype, typdelim FROM pg_type WHERE oid = $1::oid",
            [String(oid)])
        var kind = ValueKind.text
        if depth < 8, let row = result.rows.first {
            let elementOID = UInt32(row[2] ?? "0") ?? 0
            let baseOID = UInt32(row[3] ?? "0") ?? 0
            if row[0] == "d", baseOID != 0 {
                kind = try self.kind(of: baseOID, depth: depth + 1)
            } else if row[1] == "A", elementOID != 0 {
                let elementDelimiter = try connection.query("SELECT typdelim FROM pg_type WHERE oid = $1::oid", [String(elementOID)])
                let delimiter = elementDelimiter.rows.first?[0]?.utf8.first ?? UInt8(ascii: ",")
                kind = .array(element: try self.kind(of: elementOID, depth: depth + 1), delimiter: delimiter)
            }
        }
        kinds[oid] = kind
        return kind
    }
}
