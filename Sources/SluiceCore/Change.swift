/// What happened to a row.
public enum Action: String, Sendable, CaseIterable {
    case insert, update, delete, read
    /// TRUNCATE: one message per table, with an empty record.
    case truncate
}

/// The transaction a change belongs to, as the Begin message announces it.
public struct TransactionInfo: Hashable, Sendable {
    public var xid: UInt32
    /// LSN of the commit record (pgoutput's "final LSN").
    public var commitLSN: LSN
    /// Microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's epoch).
    public var commitTimestamp: Int64

    public init(xid: UInt32, commitLSN: LSN, commitTimestamp: Int64) {
        self.xid = xid
        self.commitLSN = commitLSN
        self.commitTimestamp = commitTimestamp
    }
}

/// One row change, ready to become a message.
public struct Change: Sendable {
    public var action: Action
    public var relation: Relation
    /// The row after the change (insert, update, read).
    public var new: Tuple?
    /// The row before the change: key columns, or every column under REPLICA IDENTITY FULL.
    public var old: Tuple?
    public var transaction: TransactionInfo
    /// Position of this change within its transaction, from 0.
    public var commitIndex: Int
    /// For `read` rows: the backfill they came from; their idempotency key is `<backfill id>:<pk text>`.
    public var backfillID: String?
    /// `metadata.transaction_annotations`: the JSON set by the transaction's last
    /// `sequin:transaction_annotations.set` message before this change; nil for none.
    public var transactionAnnotations: [UInt8]?

    public init(action: Action, relation: Relation, new: Tuple?, old: Tuple?, transaction: TransactionInfo,
                commitIndex: Int) {
        self.action = action
        self.relation = relation
        self.new = new
        self.old = old
        self.transaction = transaction
        self.commitIndex = commitIndex
    }
}
