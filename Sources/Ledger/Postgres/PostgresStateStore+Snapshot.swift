import Foundation
import PostgresSource
import SluiceCore

/// The slot's whole state as a `StateSnapshot`, and back (`sluice state copy`). Rows of other slots in
/// the schema are neither read nor touched.
extension PostgresStateStore {
    public func snapshot() throws -> StateSnapshot {
        // One repeatable-read transaction: every table as of the same moment.
        try connection.run(transaction: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") { connection in
            func rows(_ columns: String, _ name: String, orderedBy order: String? = nil) throws -> [StateRow] {
                try connection.query("SELECT \(columns) FROM \(table(name)) WHERE slot = $1\(order.map { " ORDER BY \($0)" } ?? "")",
                                     [slot]).stateRows
            }
            var snapshot = StateSnapshot()
            snapshot.parked = try rows(Self.parkedColumns, "parked").map { try $0.parked() }
            snapshot.attemptErrors = try rows("sink, commit_lsn, commit_idx, at, error", "attempt_error", orderedBy: "id").map { row in
                StateSnapshot.AttemptError(sink: try row.text("sink"), position: try row.position(), at: try row.date("at"),
                                           error: try row.text("error"))
            }
            snapshot.delivered = try rows(Self.deliveredColumns, "delivered", orderedBy: "id").map { try $0.delivered() }
            snapshot.cancelled = try rows(Self.cancelledColumns, "cancelled", orderedBy: "id").map { try $0.cancelled() }
            for row in try rows("sink, value", "recent_body", orderedBy: "id") {
                snapshot.recentBodies[try row.text("sink"), default: []].append(try row.bytes("value"))
            }
            snapshot.backfills = try rows(Self.backfillColumns, "backfill").map { try $0.backfill() }
            snapshot.seenSinks = try rows("sink, first_seen_at", "seen_sink").map { row in
                StateSnapshot.SeenSink(sink: try row.text("sink"), firstSeenAt: try row.date("first_seen_at"))
            }
            return snapshot.sorted()
        }
    }

    /// Writes a snapshot in one transaction (fenced like every write). Delivered and cancelled messages are
    /// added to the slot's (the newest 1,000 delivered per sink kept), a sink's bodies replace its kept
    /// ones, and a sink already seen keeps its date.
    public func restore(_ snapshot: StateSnapshot) throws {
        try write { connection in
            for name in ["parked", "backfill"] {
                let count = try connection.query("SELECT count(*) AS n FROM \(table(name)) WHERE slot = $1", [slot])
                    .stateRows.first?.int("n") ?? 0
                if count > 0 { throw StateStoreError.notEmpty(location, table: "\(schema.name).\(name)", count: count) }
            }
            for chunk in Self.chunks(snapshot.parked, width: 12) { _ = try insertParked(connection, chunk) }
            for (sink, errors) in Dictionary(grouping: snapshot.attemptErrors, by: \.sink) {
                try recordErrors(connection, sink: sink, errors.map { ($0.position, $0.at, $0.error) })
            }
            try insertDelivered(connection, snapshot.delivered[...])
            for message in snapshot.cancelled { try insertCancelled(connection, message) }
            for (sink, bodies) in snapshot.recentBodies { try insertRecentBodies(connection, sink: sink, bodies) }
            for backfill in snapshot.backfills { try insertBackfill(connection, backfill, replacing: false) }
            for sink in snapshot.seenSinks {
                try connection.query("""
                    INSERT INTO \(table("seen_sink")) (slot, sink, first_seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
                    """, values: [.text(slot), .text(sink.sink), .time(sink.firstSeenAt)])
            }
        }
    }
}
