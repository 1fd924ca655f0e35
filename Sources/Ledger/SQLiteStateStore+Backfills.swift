import Foundation
import GRDB
import SluiceCore

/// A backfill as the state file keeps it: its table, state, cursor and counts.
public struct BackfillRecord: Sendable, Equatable {
    public enum State: String, Sendable, CaseIterable { case active, completed, cancelled, failed }

    public var id: String
    public var sink: String
    public var table: String
    public var state: State
    public var sortColumn: String?
    public var startPosition: String?
    /// The order-column values (as text) of the last row whose page is safe; nil before the first page.
    public var cursor: [String]?
    public var rowsInitialCount: Int
    public var rowsProcessedCount: Int
    public var rowsIngestedCount: Int
    public var insertedAt: Date
    public var completedAt: Date?
    public var canceledAt: Date?
    public var lastError: String?

    public init(id: String, sink: String, table: String, state: State = .active, sortColumn: String? = nil,
                startPosition: String? = nil, cursor: [String]? = nil, rowsInitialCount: Int = 0, rowsProcessedCount: Int = 0,
                rowsIngestedCount: Int = 0, insertedAt: Date = Date(), completedAt: Date? = nil, canceledAt: Date? = nil,
                lastError: String? = nil) {
        self.id = id
        self.sink = sink
        self.table = table
        self.state = state
        self.sortColumn = sortColumn
        self.startPosition = startPosition
        self.cursor = cursor
        self.rowsInitialCount = rowsInitialCount
        self.rowsProcessedCount = rowsProcessedCount
        self.rowsIngestedCount = rowsIngestedCount
        self.insertedAt = insertedAt
        self.completedAt = completedAt
        self.canceledAt = canceledAt
        self.lastError = lastError
    }
}

/// Backfills and their cursors, and which sinks have been seen (for `initial_backfill`).
extension SQLiteStateStore {
    static func registerBackfillMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4-backfills") { db in
            try db.execute(sql: """
                CREATE TABLE backfill (
                  id TEXT PRIMARY KEY, sink TEXT NOT NULL, table_name TEXT NOT NULL, state TEXT NOT NULL,
                  sort_column TEXT, start_position TEXT, cursor TEXT, rows_initial_count INTEGER NOT NULL,
                  rows_processed_count INTEGER NOT NULL, rows_ingested_count INTEGER NOT NULL, inserted_at REAL NOT NULL,
                  completed_at REAL, canceled_at REAL, last_error TEXT);
                CREATE TABLE seen_sink (sink TEXT PRIMARY KEY, first_seen_at REAL NOT NULL);
                """)
        }
    }

    /// Inserts or replaces a backfill (fsynced with the rest of the state file).
    public func save(_ backfill: BackfillRecord) throws {
        try database.write { db in try Self.insertBackfill(db, backfill, replacing: true) }
    }

    static func insertBackfill(_ db: Database, _ backfill: BackfillRecord, replacing: Bool) throws {
        try db.execute(sql: """
            INSERT OR \(replacing ? "REPLACE" : "ABORT") INTO backfill (id, sink, table_name, state, sort_column, start_position, cursor,
              rows_initial_count, rows_processed_count, rows_ingested_count, inserted_at, completed_at, canceled_at, last_error)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [backfill.id, backfill.sink, backfill.table, backfill.state.rawValue, backfill.sortColumn,
                             backfill.startPosition, backfill.cursor.map(Self.encodeList), backfill.rowsInitialCount,
                             backfill.rowsProcessedCount, backfill.rowsIngestedCount, backfill.insertedAt.timeIntervalSince1970,
                             backfill.completedAt?.timeIntervalSince1970, backfill.canceledAt?.timeIntervalSince1970,
                             backfill.lastError])
    }

    /// Backfills, newest first; of one sink or all.
    public func backfills(sink: String?) throws -> [BackfillRecord] {
        try database.read { db in
            let rows = if let sink {
                try Row.fetchAll(db, sql: "SELECT * FROM backfill WHERE sink = ? ORDER BY inserted_at DESC", arguments: [sink])
            } else {
                try Row.fetchAll(db, sql: "SELECT * FROM backfill ORDER BY inserted_at DESC")
            }
            return rows.map(Self.backfill)
        }
    }

    public func backfill(id: String) throws -> BackfillRecord? {
        try database.read { db in try Row.fetchOne(db, sql: "SELECT * FROM backfill WHERE id = ?", arguments: [id]).map(Self.backfill) }
    }

    /// Records that a sink exists; true the first time (when its `initial_backfill` runs).
    public func markSeen(sink: String) throws -> Bool {
        try database.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO seen_sink (sink, first_seen_at) VALUES (?, ?)",
                           arguments: [sink, Date().timeIntervalSince1970])
            return db.changesCount > 0
        }
    }

    static func backfill(_ row: Row) -> BackfillRecord {
        BackfillRecord(id: row["id"], sink: row["sink"], table: row["table_name"],
                       state: BackfillRecord.State(rawValue: row["state"]) ?? .failed, sortColumn: row["sort_column"],
                       startPosition: row["start_position"], cursor: (row["cursor"] as String?).map { decodeList($0) },
                       rowsInitialCount: row["rows_initial_count"], rowsProcessedCount: row["rows_processed_count"],
                       rowsIngestedCount: row["rows_ingested_count"], insertedAt: Date(timeIntervalSince1970: row["inserted_at"]),
                       completedAt: (row["completed_at"] as Double?).map { Date(timeIntervalSince1970: $0) },
                       canceledAt: (row["canceled_at"] as Double?).map { Date(timeIntervalSince1970: $0) },
                       lastError: row["last_error"])
    }
}
