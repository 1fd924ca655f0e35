import Foundation
import GRDB
import SluiceCore

/// The whole state file as a `StateSnapshot`, and back (`sluice state copy`).
extension SQLiteStateStore {
    public func snapshot() throws -> StateSnapshot {
        try database.read { db in
            var snapshot = StateSnapshot()
            snapshot.parked = try Row.fetchAll(db, sql: "SELECT * FROM parked").map(Self.parked)
            snapshot.attemptErrors = try Row.fetchAll(db, sql: "SELECT * FROM attempt_error ORDER BY id").map { row in
                StateSnapshot.AttemptError(sink: row["sink"], position: Self.position(row),
                                           at: Date(timeIntervalSince1970: row["at"]), error: row["error"])
            }
            snapshot.delivered = try Row.fetchAll(db, sql: "SELECT * FROM delivered ORDER BY id").map(Self.delivered)
            snapshot.cancelled = try Row.fetchAll(db, sql: "SELECT * FROM cancelled ORDER BY id").map(Self.cancelled)
            for row in try Row.fetchAll(db, sql: "SELECT sink, value FROM recent_body ORDER BY id") {
                snapshot.recentBodies[row["sink"], default: []].append([UInt8](row["value"] as Data))
            }
            snapshot.backfills = try Row.fetchAll(db, sql: "SELECT * FROM backfill").map(Self.backfill)
            snapshot.seenSinks = try Row.fetchAll(db, sql: "SELECT * FROM seen_sink").map { row in
                StateSnapshot.SeenSink(sink: row["sink"], firstSeenAt: Date(timeIntervalSince1970: row["first_seen_at"]))
            }
            return snapshot.sorted()
        }
    }

    /// Writes a snapshot in one transaction. Delivered and cancelled messages are added to those already
    /// here (the newest 1,000 delivered per sink kept), a sink's bodies replace its kept ones, and a sink
    /// already seen keeps its date.
    public func restore(_ snapshot: StateSnapshot) throws {
        try database.write { db in
            for table in ["parked", "backfill"] {
                let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table)") ?? 0
                if count > 0 { throw StateStoreError.notEmpty("the state file \(path)", table: table, count: count) }
            }
            for message in snapshot.parked { _ = try Self.insertParked(db, message) }
            for error in snapshot.attemptErrors {
                try Self.insertAttemptError(db, sink: error.sink, position: error.position, at: error.at, error: error.error)
            }
            try Self.insertDelivered(db, snapshot.delivered)
            for message in snapshot.cancelled { try Self.insertCancelled(db, message) }
            for (sink, bodies) in snapshot.recentBodies { try Self.insertRecentBodies(db, sink: sink, bodies) }
            for backfill in snapshot.backfills { try Self.insertBackfill(db, backfill, replacing: false) }
            let seen = try db.cachedStatement(sql: "INSERT OR IGNORE INTO seen_sink (sink, first_seen_at) VALUES (?, ?)")
            for sink in snapshot.seenSinks { try seen.execute(arguments: [sink.sink, sink.firstSeenAt.timeIntervalSince1970]) }
        }
    }
}
