/// How a column's text value becomes JSON. Resolved once per column when its relation arrives,
/// so the hot path does not look types up.
public indirect enum ValueKind: Hashable, Sendable {
    case bool
    /// Integers, oids and transaction ids: the text is already a JSON number.
    case integer
    /// float4/float8: a number, except NaN and ±Infinity, which become strings.
    case float
    /// numeric: exact digits as a JSON number; NaN and ±Infinity as strings.
    case numeric
    /// json/jsonb: the server's text is valid JSON and is embedded as is.
    case json
    case timestamptz
    case timestamp
    /// date: ISO 8601 (`2026-11-29`; BC years astronomical, `-0043-03-15`; years past 9999 signed,
    /// `+12345-01-02`); ±infinity as text.
    case date
    case interval
    case array(element: ValueKind, delimiter: UInt8)
    /// A composite (row) type: a JSON object keyed by attribute name, each attribute converted by its kind.
    case composite(fields: [Field])
    /// Everything else (text, uuid, enums, bytea as `\x…`, time, timetz, money, network, geometric,
    /// bit strings, xml, text search, ranges and multiranges, extension types such as citext and
    /// hstore, unknown types): the text form, as a JSON string.
    case text

    /// One attribute of a composite type.
    public struct Field: Hashable, Sendable {
        public var name: String
        public var kind: ValueKind

        public init(name: String, kind: ValueKind) {
            self.name = name
            self.kind = kind
        }
    }

    /// The same type as Sequin writes it: numeric as a JSON string of its digits (Sequin's decimals),
    /// composites as their text form; arrays element by element; everything else as Sluice does.
    public var sequinForm: ValueKind {
        switch self {
        case .numeric, .composite: .text
        case .array(let element, let delimiter): .array(element: element.sequinForm, delimiter: delimiter)
        default: self
        }
    }

    /// The kind for a built-in type OID, or nil when the OID is not built in (look it up in the catalog).
    public static func builtin(oid: UInt32) -> ValueKind? {
        let comma = UInt8(ascii: ",")
        switch oid {
        case 16: return .bool
        case 20, 21, 23, 26, 28, 29, 5069: return .integer // int8, int2, int4, oid, xid, cid, xid8
        case 700, 701: return .float
        case 1700: return .numeric
        case 114, 3802: return .json
        case 1184: return .timestamptz
        case 1114: return .timestamp
        case 1082: return .date
        case 1186: return .interval
        // Arrays of the kinds above.
        case 1000: return .array(element: .bool, delimiter: comma)
        case 1005, 1007, 1016, 1028, 1011, 1012, 271: return .array(element: .integer, delimiter: comma)
        case 1021, 1022: return .array(element: .float, delimiter: comma)
        case 1231: return .array(element: .numeric, delimiter: comma)
        case 199, 3807: return .array(element: .json, delimiter: comma)
        case 1185: return .array(element: .timestamptz, delimiter: comma)
        case 1115: return .array(element: .timestamp, delimiter: comma)
        case 1182: return .array(element: .date, delimiter: comma)
        case 1187: return .array(element: .interval, delimiter: comma)
        case 1020: return .array(element: .text, delimiter: UInt8(ascii: ";")) // box[] uses ';'
        // Arrays of text-form types: bytea, "char", name, text, bpchar, varchar, time, timetz, uuid,
        // inet, cidr, macaddr, macaddr8, bit, varbit, xml, tsvector, tsquery, point, lseg, path,
        // polygon, line, circle, money, pg_lsn, int2vector, oidvector, tid, jsonpath, reg*, aclitem,
        // txid_snapshot, pg_snapshot, refcursor, ranges, multiranges.
        case 1001, 1002, 1003, 1009, 1014, 1015, 1183, 1270, 2951, 1041, 651, 1040, 775, 1561, 1563, 143,
             3643, 3645, 1017, 1018, 1019, 1027, 629, 719, 791, 3221, 1006, 1013, 1010, 4073, 1008, 2207,
             2208, 2209, 2210, 2211, 3735, 3770, 4090, 4097, 4192, 1034, 2949, 5039, 2201,
             3905, 3907, 3909, 3911, 3913, 3927, 6150, 6151, 6152, 6153, 6155, 6157:
            return .array(element: .text, delimiter: comma)
        // Text-form types. int2vector and oidvector (22, 30) are listed so that the catalog's
        // array category does not claim them: their text is space-separated, not `{…}`.
        case 17, 18, 19, 25, 1042, 1043, 2950, 1083, 1266, 869, 650, 829, 774, 1560, 1562, 142, 3614,
             3615, 600, 601, 602, 603, 604, 628, 718, 790, 3220, 22, 30, 27, 4072, 24, 2202, 2203, 2204,
             2205, 2206, 3734, 3769, 4089, 4096, 4191, 1033, 2970, 5038, 1790,
             // Ranges and multiranges keep their text form, e.g. `[1,10)`, `{[1,3),[5,7)}`, `empty`:
             // bounds, inclusivity and emptiness stay exact, and the form is PostgreSQL's own input syntax.
             3904, 3906, 3908, 3910, 3912, 3926, 4451, 4532, 4533, 4534, 4535, 4536:
            return .text
        default: return nil
        }
    }
}

/// One column as the Relation message of pgoutput describes it.
public struct Column: Hashable, Sendable {
    public var name: String
    public var typeOID: UInt32
    public var typeModifier: Int32
    /// Part of the replica identity (with REPLICA IDENTITY FULL every column is).
    public var isReplicaIdentity: Bool
    /// Part of the table's primary key, looked up in the catalog.
    public var isPrimaryKey: Bool
    public var kind: ValueKind
    /// The kind under `value_format: sequin` (Sequin's value caster and JSON encoder).
    public var sequinKind: ValueKind

    public init(name: String, typeOID: UInt32, typeModifier: Int32 = -1, isReplicaIdentity: Bool = false,
                isPrimaryKey: Bool = false, kind: ValueKind? = nil, sequinKind: ValueKind? = nil) {
        self.name = name
        self.typeOID = typeOID
        self.typeModifier = typeModifier
        self.isReplicaIdentity = isReplicaIdentity
        self.isPrimaryKey = isPrimaryKey
        let kind = kind ?? ValueKind.builtin(oid: typeOID) ?? .text
        self.kind = kind
        self.sequinKind = sequinKind ?? kind.sequinForm
    }
}

/// A table as the replication stream knows it, keyed by its OID. Immutable and shared: every change
/// of the table refers to one instance, so handing a change on costs one reference, not a copy of
/// its columns and names.
public final class Relation: Hashable, Sendable {
    public enum ReplicaIdentity: UInt8, Sendable {
        case `default` = 100 // 'd'
        case nothing = 110   // 'n'
        case full = 102      // 'f'
        case index = 105     // 'i'
    }

    public let id: UInt32
    public let schema: String
    public let name: String
    public let replicaIdentity: ReplicaIdentity
    public let columns: [Column]
    /// `schema.name`, as the configuration names tables.
    public let qualifiedName: String
    /// Indexes of the columns that identify a row: the primary key, or failing that the replica
    /// identity columns (unless that is every column, as with REPLICA IDENTITY FULL).
    /// Worked out once here: every message of the table needs them.
    public let keyColumnIndexes: [Int]
    /// Each column's `"name":` as JSON, escaped once here instead of once per message: column i's
    /// is `columnKeysJSON[columnKeyRanges[i]]`.
    public let columnKeysJSON: [UInt8]
    public let columnKeyRanges: [Range<Int>]
    /// `{"table_schema":"…","table_name":"…"`: how every message of the table starts its metadata.
    public let metadataHeadJSON: [UInt8]

    public init(id: UInt32, schema: String, name: String, replicaIdentity: ReplicaIdentity, columns: [Column]) {
        self.id = id
        self.schema = schema
        self.name = name
        self.replicaIdentity = replicaIdentity
        self.columns = columns
        self.qualifiedName = "\(schema).\(name)"
        let primary = columns.indices.filter { columns[$0].isPrimaryKey }
        if !primary.isEmpty {
            keyColumnIndexes = primary
        } else if replicaIdentity == .full {
            keyColumnIndexes = []
        } else {
            keyColumnIndexes = columns.indices.filter { columns[$0].isReplicaIdentity }
        }
        var keys = JSONWriter(capacity: columns.reduce(0) { $0 + $1.name.utf8.count + 3 })
        columnKeyRanges = columns.map { column in
            let start = keys.bytes.count
            keys.key(column.name)
            return start..<keys.bytes.count
        }
        columnKeysJSON = keys.bytes
        var head = JSONWriter(capacity: 64)
        head.raw("{\"table_schema\":")
        head.string(schema)
        head.raw(",\"table_name\":")
        head.string(name)
        metadataHeadJSON = head.bytes
    }

    public static func == (lhs: Relation, rhs: Relation) -> Bool {
        lhs === rhs || (lhs.id == rhs.id && lhs.schema == rhs.schema && lhs.name == rhs.name
            && lhs.replicaIdentity == rhs.replicaIdentity && lhs.columns == rhs.columns)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(schema)
        hasher.combine(name)
        hasher.combine(replicaIdentity)
        hasher.combine(columns)
    }
}
