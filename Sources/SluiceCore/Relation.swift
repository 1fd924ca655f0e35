/// How a column's text value becomes JSON. Resolved once per column when its relation arrives,
/// so the hot path does not look types up.
public indirect enum ValueKind: Hashable, Sendable {
    case bool
    /// Integers and oids: the text is already a JSON number.
    case integer
    /// float4/float8: a number, except NaN and ±Infinity, which become strings.
    case float
    /// numeric: exact digits as a JSON number; NaN and ±Infinity as strings.
    case numeric
    /// json/jsonb: the server's text is valid JSON and is embedded as is.
    case json
    case timestamptz
    case timestamp
    case interval
    case array(element: ValueKind, delimiter: UInt8)
    /// Everything else (text, uuid, enums, bytea as `\x…`, dates, unknown types): the text form.
    case text

    /// The kind for a built-in type OID, or nil when the OID is not built in (look it up in the catalog).
    public static func builtin(oid: UInt32) -> ValueKind? {
        switch oid {
        case 16: return .bool
        case 20, 21, 23, 26, 28, 29: return .integer // int8, int2, int4, oid, xid, cid
        case 700, 701: return .float
        case 1700: return .numeric
        case 114, 3802: return .json
        case 1184: return .timestamptz
        case 1114: return .timestamp
        case 1186: return .interval
        case 1000: return .array(element: .bool, delimiter: 44)
        case 1005, 1007, 1016, 1028: return .array(element: .integer, delimiter: 44)
        case 1021, 1022: return .array(element: .float, delimiter: 44)
        case 1231: return .array(element: .numeric, delimiter: 44)
        case 199, 3807: return .array(element: .json, delimiter: 44)
        case 1185: return .array(element: .timestamptz, delimiter: 44)
        case 1115: return .array(element: .timestamp, delimiter: 44)
        case 1187: return .array(element: .interval, delimiter: 44)
        case 1020: return .array(element: .text, delimiter: 59) // box[] uses ';'
        case 1001, 1002, 1003, 1009, 1014, 1015, 1182, 1183, 1270, 2951, 1041, 651, 1040, 775, 1561, 1563:
            return .array(element: .text, delimiter: 44)
        case 17, 18, 19, 25, 1042, 1043, 2950, 1082, 1083, 1266, 869, 650, 829, 774, 1560, 1562, 142, 3614,
             3615, 600, 601, 602, 603, 604, 628, 718, 790, 3220:
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

    public init(name: String, typeOID: UInt32, typeModifier: Int32 = -1, isReplicaIdentity: Bool = false,
                isPrimaryKey: Bool = false, kind: ValueKind? = nil) {
        self.name = name
        self.typeOID = typeOID
        self.typeModifier = typeModifier
        self.isReplicaIdentity = isReplicaIdentity
        self.isPrimaryKey = isPrimaryKey
        self.kind = kind ?? ValueKind.builtin(oid: typeOID) ?? .text
    }
}

/// A table as the replication stream knows it, keyed by its OID.
public struct Relation: Hashable, Sendable {
    public enum ReplicaIdentity: UInt8, Sendable {
        case `default` = 100 // 'd'
        case nothing = 110   // 'n'
        case full = 102      // 'f'
        case index = 105     // 'i'
    }

    public var id: UInt32
    public var schema: String
    public var name: String
    public var replicaIdentity: ReplicaIdentity
    public var columns: [Column]

    public init(id: UInt32, schema: String, name: String, replicaIdentity: ReplicaIdentity, columns: [Column]) {
        self.id = id
        self.schema = schema
        self.name = name
        self.replicaIdentity = replicaIdentity
        self.columns = columns
    }

    /// `schema.name`, as the configuration names tables.
    public var qualifiedName: String { "\(schema).\(name)" }

    /// Indexes of the columns that identify a row: the primary key, or failing that the replica
    /// identity columns (unless that is every column, as with REPLICA IDENTITY FULL).
    public var keyColumnIndexes: [Int] {
        let primary = columns.indices.filter { columns[$0].isPrimaryKey }
        if !primary.isEmpty { return primary }
        if replicaIdentity == .full { return [] }
        return columns.indices.filter { columns[$0].isReplicaIdentity }
    }
}
