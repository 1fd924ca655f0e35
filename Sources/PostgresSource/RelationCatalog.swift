import SluiceCore

/// Completes Relation messages from the catalog: which columns form the primary key, and how
/// each column's type converts to JSON (domains as their base type, arrays by element type,
/// composites by attribute).
public final class RelationCatalog {
    let connection: PostgresConnection
    private var kinds: [UInt32: ValueKind] = [:]
    private var sequinKinds: [UInt32: ValueKind] = [:]

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    public func relation(from description: RelationDescription) throws(PostgresError) -> Relation {
        // Types can change while Sluice streams (ALTER TYPE … ADD/DROP ATTRIBUTE, a domain or enum
        // recreated): look them up afresh whenever the server describes a relation again.
        kinds.removeAll(keepingCapacity: true)
        sequinKinds.removeAll(keepingCapacity: true)
        let keys = try primaryKeyColumns(relationID: description.id)
        var columns: [Column] = []
        for column in description.columns {
            columns.append(Column(name: column.name, typeOID: column.typeOID, typeModifier: column.typeModifier,
                                  isReplicaIdentity: column.isKey, isPrimaryKey: keys.contains(column.name),
                                  kind: try kind(of: column.typeOID), sequinKind: try sequinKind(of: column.typeOID)))
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

    /// How values of type `oid` convert: built-in types from the table in `ValueKind.builtin`, others
    /// from pg_type — domains as their base type, arrays by element type (with the element's delimiter),
    /// composite types as objects of their attributes (pg_attribute of the type's relation, in attribute
    /// order, dropped ones left out), and everything else (enums, ranges, multiranges, extension types
    /// such as citext or hstore) as its text form.
    public func kind(of oid: UInt32, depth: Int = 0) throws(PostgresError) -> ValueKind {
        if let builtin = ValueKind.builtin(oid: oid) { return builtin }
        if let known = kinds[oid] { return known }
        let result = try connection.query("""
            SELECT t.typtype, t.typcategory, t.typelem, t.typbasetype, e.typdelim, t.typrelid
            FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem WHERE t.oid = $1::oid
            """, [String(oid)])
        var kind = ValueKind.text
        if depth < 8, let row = result.rows.first {
            let elementOID = UInt32(row[2] ?? "0") ?? 0
            let baseOID = UInt32(row[3] ?? "0") ?? 0
            let relationOID = UInt32(row[5] ?? "0") ?? 0
            if row[0] == "d", baseOID != 0 {
                kind = try self.kind(of: baseOID, depth: depth + 1)
            } else if row[1] == "A", elementOID != 0 {
                let delimiter = row[4]?.utf8.first ?? UInt8(ascii: ",")
                kind = .array(element: try self.kind(of: elementOID, depth: depth + 1), delimiter: delimiter)
            } else if row[0] == "c", relationOID != 0 {
                let attributes = try connection.query("""
                    SELECT attname, atttypid FROM pg_attribute
                    WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum
                    """, [String(relationOID)])
                var fields: [ValueKind.Field] = []
                for attribute in attributes.rows {
                    guard let name = attribute[0], let typeOID = UInt32(attribute[1] ?? "") else { continue }
                    fields.append(ValueKind.Field(name: name, kind: try self.kind(of: typeOID, depth: depth + 1)))
                }
                kind = .composite(fields: fields)
            }
        }
        kinds[oid] = kind
        return kind
    }

    /// How values of type `oid` convert under `value_format: sequin`, as Sequin's value caster does it:
    /// Sequin casts by the type's name, taking a domain's base type one level down; so a domain over a
    /// built-in type is that type, while composites, enums, a domain over a domain and the elements of
    /// arrays of such types keep their text form. numeric becomes a string of its digits.
    public func sequinKind(of oid: UInt32, depth: Int = 0) throws(PostgresError) -> ValueKind {
        if let builtin = ValueKind.builtin(oid: oid) { return builtin.sequinForm }
        if let known = sequinKinds[oid] { return known }
        let result = try connection.query("""
            SELECT t.typtype, t.typcategory, t.typelem, t.typbasetype, b.typtype
            FROM pg_type t LEFT JOIN pg_type b ON b.oid = t.typbasetype WHERE t.oid = $1::oid
            """, [String(oid)])
        var kind = ValueKind.text
        if depth < 8, let row = result.rows.first {
            let elementOID = UInt32(row[2] ?? "0") ?? 0
            let baseOID = UInt32(row[3] ?? "0") ?? 0
            if row[0] == "d", baseOID != 0 {
                kind = row[4] == "d" ? .text : try sequinKind(of: baseOID, depth: depth + 1)
            } else if row[1] == "A", elementOID != 0, case .array(_, let delimiter) = try self.kind(of: oid) {
                kind = .array(element: ValueKind.builtin(oid: elementOID)?.sequinForm ?? .text, delimiter: delimiter)
            }
        }
        sequinKinds[oid] = kind
        return kind
    }
}
