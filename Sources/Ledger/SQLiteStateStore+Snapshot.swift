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
            snapshot.delivered = try Row.fetchAll(db, sql: "SELECT * FROM delivered ORDER BY id").map { row in
                DeliveredMessage(sink: row["sink"], group: row["group_key"], position: Self.position(row), table: row["table_name"],
                                 topic: row["topic"], key: row["message_key"], size: row["size"],
                                 partition: Int32(row["partition"] as Int), offset: row["kafka_offset"],
                                 deliverCount: row["deliver_count"], deliveredAt: Date(timeIntervalSince1970: row["delivered_at"]),
                                 action: row["action"], recordPKs: Self.decodeList(row["record_pks"]))
            }
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
            let park = try db.cachedStatement(sql: """
                INSERT INTO parked (sink, group_key, commit_lsn, commit_idx, table_name, topic, message_key, value,
                  deliver_count, last_error, parked_at, last_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for message in snapshot.parked {
                try park.execute(arguments: [
                    message.sink, message.group, Self.lsn(message.position), message.position.commitIndex, message.table,
                    message.topic, message.key.map { Data($0) }, Data(message.value), message.deliverCount, message.lastError,
                    message.parkedAt.timeIntervalSince1970, message.lastAttemptAt?.timeIntervalSince1970,
                ])
            }
            let attempt = try db.cachedStatement(sql: "INSERT INTO attempt_error (sink, commit_lsn, commit_idx, at, error) VALUES (?, ?, ?, ?, ?)")
            for error in snapshot.attemptErrors {
                try attempt.execute(arguments: [error.sink, Self.lsn(error.position), error.position.commitIndex,
                                                error.at.timeIntervalSince1970, error.error])
            }
            let delivered = try db.cachedStatement(sql: """
                INSERT INTO delivered (sink, group_key, commit_lsn, commit_idx, table_name, topic, message_key, size, partition,
                  kafka_offset, deliver_count, delivered_at, action, record_pks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for message in snapshot.delivered {
                try delivered.execute(arguments: [
                    message.sink, message.group, Self.lsn(message.position), message.position.commitIndex, message.table,
                    message.topic, message.key, message.size, Int(message.partition), message.offset, message.deliverCount,
                    message.deliveredAt.timeIntervalSince1970, message.action, Self.encodeList(message.recordPKs),
                ])
            }
            for sink in Set(snapshot.delivered.map(\.sink)) {
                try db.execute(sql: """
                    DELETE FROM delivered WHERE sink = ? AND id <= (SELECT id FROM delivered WHERE sink = ? ORDER BY id DESC LIMIT 1 OFFSET ?)
                    """, arguments: [sink, sink, StateLimits.deliveredKept])
            }
            let cancelled = try db.cachedStatement(sql: """
                INSERT INTO cancelled (sink, group_key, commit_lsn, commit_idx, table_name, topic, message_key, size, reason, error,
                  cancelled_at, action, record_pks, deliver_count, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for message in snapshot.cancelled {
                try cancelled.execute(arguments: [
                    message.sink, message.group, Self.lsn(message.position), message.position.commitIndex, message.table,
                    message.topic, message.key, message.size, message.reason, message.error,
                    message.cancelledAt.timeIntervalSince1970, message.action, Self.encodeList(message.recordPKs),
                    message.deliverCount, message.value.map { Data($0) },
                ])
            }
            let body = try db.cachedStatement(sql: "INSERT INTO recent_body (sink, value) VALUES (?, ?)")
            for (sink, bodies) in snapshot.recentBodies {
                try db.execute(sql: "DELETE FROM recent_body WHERE sink = ?", arguments: [sink])
                for value in bodies.suffix(StateLimits.recentBodiesKept) { try body.execute(arguments: [sink, Data(value)]) }
            }
            for backfill in snapshot.backfills {
                try db.execute(sql: """
                    INSERT INTO backfill (id, sink, table_name, state, sort_column, start_position, cursor, rows_initial_count,
                      rows_processed_count, rows_ingested_count, inserted_at, completed_at, canceled_at, last_error)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [backfill.id, backfill.sink, backfill.table, backfill.state.rawValue, backfill.sortColumn,
                                     backfill.startPosition, backfill.cursor.map(Self.encodeList), backfill.rowsInitialCount,
                                     backfill.rowsProcessedCount, backfill.rowsIngestedCount,
                                     backfill.insertedAt.timeIntervalSince1970, backfill.completedAt?.timeIntervalSince1970,
                                     backfill.canceledAt?.timeIntervalSince1970, backfill.lastError])
            }
            let seen = try db.cachedStatement(sql: "INSERT OR IGNORE INTO seen_sink (sink, first_seen_at) VALUES (?, ?)")
            for sink in snapshot.seenSinks { try seen.execute(arguments: [sink.sink, sink.firstSeenAt.timeIntervalSince1970]) }
        }
    }

    static func lsn(_ position: MessagePosition) -> Int64 { Int64(bitPattern: position.commitLSN.rawValue) }
}
