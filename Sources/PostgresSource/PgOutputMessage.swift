import SluiceCore

/// One logical replication message of the pgoutput plugin (protocol version 1).
public enum PgOutputMessage: Sendable {
    case begin(TransactionInfo)
    case commit(commitLSN: LSN, endLSN: LSN, timestamp: Int64)
    case origin(commitLSN: LSN, name: String)
    case relation(RelationDescription)
    case type(oid: UInt32, schema: String, name: String)
    case insert(relationID: UInt32, new: Tuple)
    /// `old` is the key (`K`) or the whole old row (`O`, REPLICA IDENTITY FULL) when the server sent one.
    case update(relationID: UInt32, old: Tuple?, oldIsKeyOnly: Bool, new: Tuple)
    case delete(relationID: UInt32, old: Tuple, oldIsKeyOnly: Bool)
    case truncate(relationIDs: [UInt32], cascade: Bool, restartIdentity: Bool)
    case message(transactional: Bool, lsn: LSN, prefix: String, content: [UInt8])
    /// Protocol 2: a chunk of an in-progress (streamed) transaction begins.
    case streamStart(xid: UInt32, firstSegment: Bool)
    case streamStop
    case streamCommit(xid: UInt32, commitLSN: LSN, endLSN: LSN, timestamp: Int64)
    /// `subtransactionXid == xid` aborts the whole transaction, otherwise only that subtransaction.
    case streamAbort(xid: UInt32, subtransactionXid: UInt32)
}

/// The Relation message as sent: columns with their flags and type OIDs. Primary-key
/// membership and value kinds are added from the catalog by `RelationCatalog`.
public struct RelationDescription: Sendable, Hashable {
    public struct ColumnDescription: Sendable, Hashable {
        public var name: String
        public var typeOID: UInt32
        public var typeModifier: Int32
        public var isKey: Bool
    }

    public var id: UInt32
    public var schema: String
    public var name: String
    public var replicaIdentity: Relation.ReplicaIdentity
    public var columns: [ColumnDescription]
}

/// Why a pgoutput message could not be decoded.
public struct PgOutputError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { "pgoutput: \(message)" }
}
