import Foundation
import GRDB
import SluiceCore

/// Sluice's state file (SQLite): parked messages (durable, so the slot may advance past them), the
/// last 1,000 delivered and every cancelled message per sink. Commits are fsynced (WAL,
/// synchronous=FULL) before the caller treats anything as safe.
public final class SQLiteStateStore: StateStore {
    let database: DatabaseQueue
    public let path: String
    public var location: String { path }

    public init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.label = "sluice-ledger"
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        database = try DatabaseQueue(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE parked (
                  sink TEXT NOT NULL, group_key TEXT NOT NULL, commit_lsn INTEGER NOT NULL, commit_idx INTEGER NOT NULL,
                  table_name TEXT NOT NULL, topic TEXT NOT NULL, message_key BLOB, value BLOB NOT NULL,
                  deliver_count INTEGER NOT NULL, last_error TEXT, parked_at REAL NOT NULL,
                  PRIMARY KEY (sink, commit_lsn, commit_idx));
                CREATE INDEX parked_by_group ON parked (sink, group_key, commit_lsn, commit_idx);
                CREATE TABLE delivered (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  sink TEXT NOT NULL, group_key TEXT NOT NULL, commit_lsn INTEGER NOT NULL, commit_idx INTEGER NOT NULL,
                  table_name TEXT NOT NULL, topic TEXT NOT NULL, message_key TEXT, size INTEGER NOT NULL,
                  partition INTEGER NOT NULL, kafka_offset INTEGER NOT NULL, deliver_count INTEGER NOT NULL,
                  delivered_at REAL NOT NULL);
                CREATE INDEX delivered_by_sink ON delivered (sink, id);
                CREATE TABLE cancelled (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  sink TEXT NOT NULL, group_key TEXT NOT NULL, commit_lsn INTEGER NOT NULL, commit_idx INTEGER NOT NULL,
                  table_name TEXT NOT NULL, topic TEXT NOT NULL, message_key TEXT, size INTEGER NOT NULL,
                  reason TEXT NOT NULL, error TEXT NOT NULL, cancelled_at REAL NOT NULL);
                CREATE INDEX cancelled_by_sink ON cancelled (sink, id);
                """)
        }
        migrator.registerMigration("v2-recent-bodies") { db in
            try db.execute(sql: """
                CREATE TABLE recent_body (id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, value BLOB NOT NULL);
                CREATE INDEX recent_body_by_sink ON recent_body (sink, id);
                """)
        }
        migrator.registerMigration("v3-console") { db in
            try db.execute(sql: """
                ALTER TABLE parked ADD COLUMN last_attempt_at REAL;
                ALTER TABLE delivered ADD COLUMN action TEXT;
                ALTER TABLE delivered ADD COLUMN record_pks TEXT;
                ALTER TABLE cancelled ADD COLUMN action TEXT;
                ALTER TABLE cancelled ADD COLUMN record_pks TEXT;
                ALTER TABLE cancelled ADD COLUMN deliver_count INTEGER NOT NULL DEFAULT 1;
                ALTER TABLE cancelled ADD COLUMN value BLOB;
                CREATE TABLE attempt_error (
                  id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, commit_lsn INTEGER NOT NULL,
                  commit_idx INTEGER NOT NULL, at REAL NOT NULL, error TEXT NOT NULL);
                CREATE INDEX attempt_error_by_message ON attempt_error (sink, commit_lsn, commit_idx, id);
                CREATE INDEX delivered_by_position ON delivered (sink, commit_lsn, commit_idx);
                CREATE INDEX cancelled_by_position ON cancelled (sink, commit_lsn, commit_idx);
                """)
        }
        registerBackfillMigration(&migrator)
        return migrator
    }

    /// Opens an existing state file without writing to it (for commands that inspect a stopped instance).
    public init(readingExisting path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.label = "sluice-ledger-read"
        configuration.readonly = true
        guard FileManager.default.fileExists(atPath: path) else {
            throw LedgerError(message: "state.path: no state file at \(path) — has sluice run with this configuration?")
        }
        database = try DatabaseQueue(path: path, configuration: configuration)
    }

    // MARK: - Recent bodies

    /// Replaces a sink's kept bodies with these (oldest first), keeping the newest 20.
    public func replaceRecentBodies(sink: String, _ bodies: [[UInt8]]) throws {
        try database.write { db in try Self.insertRecentBodies(db, sink: sink, bodies) }
    }

    /// The bodies of the newest delivered messages of a sink, newest first.
    public func recentBodies(sink: String, limit: Int) throws -> [[UInt8]] {
        try database.read { db in
            try Data.fetchAll(db, sql: "SELECT value FROM recent_body WHERE sink = ? ORDER BY id DESC LIMIT ?", arguments: [sink, limit])
                .map { [UInt8]($0) }
        }
    }

    // MARK: - Parked

    /// Groups with parked messages, and how many each holds.
    public func parkedGroups(sink: String) throws -> [String: Int] {
        try database.read { db in
            var groups: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT group_key, count(*) AS n FROM parked WHERE sink = ? GROUP BY group_key",
                                        arguments: [sink]) {
                groups[row["group_key"]] = row["n"]
            }
            return groups
        }
    }

    /// The oldest parked message of a group: the next to deliver.
    public func firstParked(sink: String, group: String) throws -> ParkedMessage? {
        try database.read { db in
            try Row.fetchOne(db, sql: """
                SELECT * FROM parked WHERE sink = ? AND group_key = ? ORDER BY commit_lsn, commit_idx LIMIT 1
                """, arguments: [sink, group]).map(Self.parked)
        }
    }

    /// Parked messages of a sink in stream order (for the console and tests).
    public func parked(sink: String, limit: Int) throws -> [ParkedMessage] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM parked WHERE sink = ? ORDER BY commit_lsn, commit_idx LIMIT ?",
                             arguments: [sink, limit]).map(Self.parked)
        }
    }

    public func parkedCount(sink: String) throws -> Int {
        try database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM parked WHERE sink = ?", arguments: [sink]) ?? 0 }
    }

    /// Parks, unparks and records attempts in one transaction (one fsync).
    public func apply(park messages: [ParkedMessage], unpark positions: [MessagePosition],
                      attempts: [(position: MessagePosition, deliverCount: Int, error: String)], sink: String) throws {
        guard !messages.isEmpty || !positions.isEmpty || !attempts.isEmpty else { return }
        try database.write { db in
            let now = Date()
            for message in messages {
                if try Self.insertParked(db, message), let error = message.lastError {
                    try Self.insertAttemptError(db, sink: message.sink, position: message.position, at: now, error: error)
                }
            }
            let delete = try db.cachedStatement(sql: "DELETE FROM parked WHERE sink = ? AND commit_lsn = ? AND commit_idx = ?")
            for position in positions {
                try delete.execute(arguments: [sink, Int64(bitPattern: position.commitLSN.rawValue), position.commitIndex])
            }
            let update = try db.cachedStatement(sql: """
                UPDATE parked SET deliver_count = ?, last_error = ?, last_attempt_at = ? WHERE sink = ? AND commit_lsn = ? AND commit_idx = ?
                """)
            for attempt in attempts {
                try update.execute(arguments: [attempt.deliverCount, attempt.error, now.timeIntervalSince1970, sink,
                                               Self.lsn(attempt.position), attempt.position.commitIndex])
                try Self.insertAttemptError(db, sink: sink, position: attempt.position, at: now, error: attempt.error)
            }
            // At most 20 errors per message.
            for attempt in attempts where attempt.deliverCount > StateLimits.errorsKept {
                try db.execute(sql: """
                    DELETE FROM attempt_error WHERE sink = ? AND commit_lsn = ? AND commit_idx = ? AND id <= (
                      SELECT id FROM attempt_error WHERE sink = ? AND commit_lsn = ? AND commit_idx = ? ORDER BY id DESC LIMIT 1 OFFSET ?)
                    """, arguments: [sink, Int64(bitPattern: attempt.position.commitLSN.rawValue), attempt.position.commitIndex,
                                     sink, Int64(bitPattern: attempt.position.commitLSN.rawValue), attempt.position.commitIndex,
                                     StateLimits.errorsKept])
            }
        }
    }

    // MARK: - Delivered

    /// Appends delivered messages and keeps only the newest 1,000 per sink.
    public func recordDelivered(_ messages: [DeliveredMessage]) throws {
        guard !messages.isEmpty else { return }
        try database.write { db in try Self.insertDelivered(db, messages.suffix(StateLimits.deliveredKept)) }
    }

    /// The newest delivered messages of a sink, newest first.
    public func recentlyDelivered(sink: String, limit: Int) throws -> [DeliveredMessage] {
        try recentlyDelivered(sink: sink, limit: limit, where: "", arguments: [])
    }

    func recentlyDelivered(sink: String, limit: Int, where condition: String, arguments: StatementArguments) throws -> [DeliveredMessage] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM delivered WHERE sink = ? \(condition) ORDER BY id DESC LIMIT ?",
                             arguments: [sink] + arguments + [limit])
                .map(Self.delivered)
        }
    }

    // MARK: - Cancelled

    public func recordCancelled(_ message: CancelledMessage) throws {
        try database.write { db in try Self.insertCancelled(db, message) }
    }

    public func cancelled(sink: String, limit: Int) throws -> [CancelledMessage] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM cancelled WHERE sink = ? ORDER BY id DESC LIMIT ?", arguments: [sink, limit])
                .map(Self.cancelled)
        }
    }

    // MARK: - Rows

    static func position(_ row: Row) -> MessagePosition {
        MessagePosition(commitLSN: LSN(UInt64(bitPattern: row["commit_lsn"] as Int64)), commitIndex: row["commit_idx"])
    }

    static func parked(_ row: Row) -> ParkedMessage {
        ParkedMessage(sink: row["sink"], group: row["group_key"], position: position(row), table: row["table_name"],
                      topic: row["topic"], key: (row["message_key"] as Data?).map { [UInt8]($0) },
                      value: [UInt8](row["value"] as Data), deliverCount: row["deliver_count"], lastError: row["last_error"],
                      parkedAt: Date(timeIntervalSince1970: row["parked_at"]),
                      lastAttemptAt: (row["last_attempt_at"] as Double?).map { Date(timeIntervalSince1970: $0) })
    }

    static func cancelled(_ row: Row) -> CancelledMessage {
        CancelledMessage(sink: row["sink"], group: row["group_key"], position: position(row), table: row["table_name"],
                         topic: row["topic"], key: row["message_key"], size: row["size"], reason: row["reason"],
                         error: row["error"], cancelledAt: Date(timeIntervalSince1970: row["cancelled_at"]),
                         action: row["action"], recordPKs: decodeList(row["record_pks"]), deliverCount: row["deliver_count"],
                         value: (row["value"] as Data?).map { [UInt8]($0) })
    }

    static func delivered(_ row: Row) -> DeliveredMessage {
        DeliveredMessage(sink: row["sink"], group: row["group_key"], position: position(row), table: row["table_name"],
                         topic: row["topic"], key: row["message_key"], size: row["size"], partition: Int32(row["partition"] as Int),
                         offset: row["kafka_offset"], deliverCount: row["deliver_count"],
                         deliveredAt: Date(timeIntervalSince1970: row["delivered_at"]), action: row["action"],
                         recordPKs: decodeList(row["record_pks"]))
    }

    static func lsn(_ position: MessagePosition) -> Int64 { Int64(bitPattern: position.commitLSN.rawValue) }

    static func encodeList(_ values: [String]) -> String { StateList.encode(values) }

    // MARK: - Row writers (the live writes and `restore` share them)

    /// Parks one message unless one is parked at its position already; true if it was written.
    static func insertParked(_ db: Database, _ message: ParkedMessage) throws -> Bool {
        try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO parked (sink, group_key, commit_lsn, commit_idx, table_name, topic, message_key, value,
              deliver_count, last_error, parked_at, last_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [
                message.sink, message.group, lsn(message.position), message.position.commitIndex, message.table, message.topic,
                message.key.map { Data($0) }, Data(message.value), message.deliverCount, message.lastError,
                message.parkedAt.timeIntervalSince1970, message.lastAttemptAt?.timeIntervalSince1970,
            ])
        return db.changesCount > 0
    }

    static func insertAttemptError(_ db: Database, sink: String, position: MessagePosition, at: Date, error: String) throws {
        try db.cachedStatement(sql: "INSERT INTO attempt_error (sink, commit_lsn, commit_idx, at, error) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [sink, lsn(position), position.commitIndex, at.timeIntervalSince1970, error])
    }

    /// Appends delivered messages, then keeps the newest 1,000 of each of their sinks.
    static func insertDelivered<Messages: Collection<DeliveredMessage>>(_ db: Database, _ messages: Messages) throws {
        let statement = try db.cachedStatement(sql: """
            INSERT INTO delivered (sink, group_key, commit_lsn, commit_idx, table_name, topic, message_key, size, partition,
              kafka_offset, deliver_count, delivered_at, action, record_pks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for message in messages {
            try statement.execute(arguments: [
                message.sink, message.group, lsn(message.position), message.position.commitIndex, message.table, message.topic,
                message.key, message.size, Int(message.partition), message.offset, message.deliverCount,
                message.deliveredAt.timeIntervalSince1970, message.action, encodeList(message.recordPKs),
            ])
        }
        for sink in Set(messages.map(\.sink)) {
            try db.execute(sql: """
                DELETE FROM delivered WHERE sink = ? AND id <= (SELECT id FROM delivered WHERE sink = ? ORDER BY id DESC LIMIT 1 OFFSET ?)
                """, arguments: [sink, sink, StateLimits.deliveredKept])
        }
    }

    static func insertCancelled(_ db: Database, _ message: CancelledMessage) throws {
        try db.cachedStatement(sql: """
            INSERT INTO cancelled (sink, group_key, commit_lsn, commit_idx, table_name, topic, message_key, size, reason, error,
              cancelled_at, action, record_pks, deliver_count, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [
                message.sink, message.group, lsn(message.position), message.position.commitIndex, message.table, message.topic,
                message.key, message.size, message.reason, message.error, message.cancelledAt.timeIntervalSince1970, message.action,
                encodeList(message.recordPKs), message.deliverCount, message.value.map { Data($0) },
            ])
    }

    /// Replaces a sink's kept bodies with the newest 20 of these.
    static func insertRecentBodies(_ db: Database, sink: String, _ bodies: [[UInt8]]) throws {
        try db.execute(sql: "DELETE FROM recent_body WHERE sink = ?", arguments: [sink])
        let insert = try db.cachedStatement(sql: "INSERT INTO recent_body (sink, value) VALUES (?, ?)")
        for body in bodies.suffix(StateLimits.recentBodiesKept) { try insert.execute(arguments: [sink, Data(body)]) }
    }

    static func decodeList(_ text: String?) -> [String] { text.flatMap(StateList.decode) ?? [] }
}

/// The state file cannot be opened as asked.
public struct LedgerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
