import SluiceCore

/// Why streaming cannot go on without the operator: the slot or the publication is gone or unusable,
/// or a table a sink reads was renamed. Reconnecting cannot cure these, so sluice stops (non-zero exit)
/// instead of retrying forever; `message` is one line naming the object, what was lost and what to do.
public struct ReplicationFailure: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// The slot was dropped (or never created) while sluice needs it.
        case slotMissing
        /// PostgreSQL removed WAL the slot still needed (`max_slot_wal_keep_size`): it can never be read again.
        case slotInvalidated
        /// The publication was dropped: the slot cannot decode past that point, even once it is created again.
        case publicationMissing
        /// A table a sink selects by name now has another name: its changes would be dropped.
        case tableRenamed
    }

    public var kind: Kind
    public var message: String
    public var description: String { message }

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// What the backfill advice says, in every message that loses changes.
    static let backfillAdvice = "backfill the sinks' tables (sluice backfill start --sink NAME), which resends their rows as they are now"

    /// PostgreSQL's refusal of START_REPLICATION or its end of the stream (SQLSTATE and message), as a
    /// failure the operator must act on; nil for an error a reconnect may cure. `confirmed`: the last
    /// position sluice confirmed, where what was lost begins.
    public static func classify(_ error: PostgresError, slot: String, publication: String, confirmed: LSN) -> ReplicationFailure? {
        let text = error.message
        let state = error.sqlState
        let since = confirmed == .zero ? "" : " after \(confirmed)"
        if state == "42704" && text.contains("replication slot \"\(slot)\" does not exist") {
            return ReplicationFailure(.slotMissing, """
                replication slot "\(slot)" does not exist (dropped while sluice streamed?) — the changes\(since) that sluice had not \
                confirmed cannot be read again; start sluice again to create a new slot (database.slot.create_if_not_exists: true), \
                then \(backfillAdvice)
                """)
        }
        let invalidated = (state == "55000" && text.contains("slot \"\(slot)\"") && text.contains("invalidated"))
            || (state == "58P01" && text.contains("has already been removed"))
        if invalidated {
            return ReplicationFailure(.slotInvalidated, """
                replication slot "\(slot)" was invalidated: PostgreSQL removed WAL it still needed (max_slot_wal_keep_size) — the \
                changes\(since) that sluice had not delivered are lost; drop the slot (SELECT pg_drop_replication_slot('\(slot)')), \
                start sluice again to create a new one, then \(backfillAdvice) (rows deleted meanwhile stay missing)
                """)
        }
        if state == "42704" && text.contains("publication \"\(publication)\" does not exist") {
            return publicationMissing(publication: publication, slot: slot, confirmed: confirmed)
        }
        return nil
    }

    static func publicationMissing(publication: String, slot: String, confirmed: LSN) -> ReplicationFailure {
        let since = confirmed == .zero ? "" : " since \(confirmed)"
        return ReplicationFailure(.publicationMissing, """
            publication "\(publication)" was dropped — slot "\(slot)" cannot decode changes made after that, even once the \
            publication exists again, so the changes\(since) were not sent; drop the slot (SELECT pg_drop_replication_slot('\(slot)')), \
            start sluice again (it creates both with create_if_not_exists: true), then \(backfillAdvice)
            """)
    }
}
