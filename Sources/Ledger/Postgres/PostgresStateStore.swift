import Foundation
import PostgresSource
import SluiceCore
import Synchronization

/// Sluice's state in PostgreSQL (`state.store: postgres`): the same rows as the SQLite file, in one schema,
/// each scoped by the replication slot's name, so that the instances of one deployment share them and
/// a new leader carries on from what the old one parked. A write is one committed transaction; with
/// `.leader(term:)` access it first checks (and share-locks) the leader row, so an instance that lost
/// its leadership can never write.
public final class PostgresStateStore: StateStore {
    /// Who may write. Reads are allowed in every mode.
    public enum WriteAccess: Sendable, Equatable {
        /// Writes go straight through (tests, `sluice state copy`).
        case unfenced
        /// Writes throw `StateStoreError.notLeader` without touching the database.
        case standby
        /// Every write transaction first checks that the slot's leader row still has this term.
        case leader(term: Int64)
    }

    let schema: PostgresStateSchema
    /// The replication slot whose state this store reads and writes.
    public let slot: String
    let connection: StateConnection
    private let currentAccess: Mutex<WriteAccess>

    /// Switched by the HA code when leadership changes; a write reads it once, when it starts.
    public var access: WriteAccess {
        get { currentAccess.withLock { $0 } }
        set { currentAccess.withLock { $0 = newValue } }
    }

    public var location: String { "PostgreSQL schema \(schema.name) (slot \(slot))" }

    /// Connects and brings the schema up to date (creating it and its tables when missing).
    /// `parameters`: libpq connection parameters (as `DatabaseConfig.connectionParameters` gives them).
    /// `applicationName`: the connection's `application_name`, by which the HA code can end a dead leader's session.
    public init(parameters: [(String, String)], schema: String, slot: String, applicationName: String = "sluice-state",
                access: WriteAccess = .unfenced) throws {
        self.schema = try PostgresStateSchema(schema)
        self.slot = slot
        currentAccess = Mutex(access)
        connection = StateConnection(parameters: parameters, applicationName: applicationName)
        do {
            try connection.run { try self.schema.migrate($0) }
        } catch let error as PostgresError {
            throw StateStoreError(.unavailable, "cannot open the state in PostgreSQL schema \(schema): \(error.message)")
        }
    }

    /// A table of the store's schema, quoted for SQL.
    func table(_ name: String) -> String { schema.table(name) }

    /// Runs `body` in a transaction that may write: refused for a standby, and for a leader whose term is over.
    /// The term is checked under `FOR KEY SHARE`: the leader's renewals (which change no key) go on beside
    /// it, while a new leader's claim (`FOR UPDATE`) waits for it, so that a write of the old term commits
    /// before the new leader reads the state, or not at all.
    func write<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let access = self.access
        if access == .standby { throw StateStoreError.notLeader("a standby of slot \(slot)") }
        return try connection.run(transaction: "BEGIN") { connection in
            if case .leader(let term) = access {
                let held = try connection.query("SELECT 1 FROM \(table("leader")) WHERE slot = $1 AND term = $2 FOR KEY SHARE",
                                                [slot, String(term)])
                guard !held.rows.isEmpty else {
                    throw StateStoreError.notLeader("its term \(term) as leader of slot \(slot) has ended")
                }
            }
            return try body(connection)
        }
    }

    /// Runs `body` on the connection, outside a transaction.
    func read<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try connection.run(body)
    }

    /// One line for the operator when a write failed: the schema, the server's reason, and what to do.
    public func explainWriteFailure(_ error: Error, needing bytes: Int, for purpose: String) -> String {
        if let error = error as? StateStoreError, error.isNotLeader {
            return "\(location): \(error.message) — the leader delivers and keeps the state; this instance does not write it"
        }
        let reason = (error as? PostgresError)?.message ?? "\(error)"
        return "cannot write the state in \(location) (\(purpose)): \(reason) — check that PostgreSQL is reachable and the user "
            + "may write schema \(schema.name)."
            + " Nothing is lost: the slot is not confirmed past what is unwritten, and sluice retries every second"
            + " and goes on by itself once a write succeeds"
    }
}

// MARK: - Backfills and seen sinks

extension PostgresStateStore {
    static let backfillColumns = """
        id, sink, table_name, state, sort_column, start_position, cursor, rows_initial_count, rows_processed_count,
        rows_ingested_count, inserted_at, completed_at, canceled_at, last_error
        """

    public func save(_ backfill: BackfillRecord) throws {
        try write { connection in try insertBackfill(connection, backfill, replacing: true) }
    }

    func insertBackfill(_ connection: PostgresConnection, _ backfill: BackfillRecord, replacing: Bool) throws {
        let columns = Self.backfillColumns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        let update = columns.dropFirst().map { "\($0) = EXCLUDED.\($0)" }.joined(separator: ", ")
        try connection.query("""
            INSERT INTO \(table("backfill")) (slot, \(Self.backfillColumns))
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
            \(replacing ? "ON CONFLICT (slot, id) DO UPDATE SET \(update)" : "")
            """, values: [
                .text(slot), .text(backfill.id), .text(backfill.sink), .text(backfill.table), .text(backfill.state.rawValue),
                PostgresParameter(backfill.sortColumn), PostgresParameter(backfill.startPosition),
                PostgresParameter(backfill.cursor.map(Self.encodeList)), .int(backfill.rowsInitialCount),
                .int(backfill.rowsProcessedCount), .int(backfill.rowsIngestedCount), .time(backfill.insertedAt),
                backfill.completedAt.map { .time($0) } ?? .null, backfill.canceledAt.map { .time($0) } ?? .null,
                PostgresParameter(backfill.lastError),
            ])
    }

    public func backfills(sink: String?) throws -> [BackfillRecord] {
        try read { connection in
            if let sink {
                try connection.query("""
                    SELECT \(Self.backfillColumns) FROM \(table("backfill")) WHERE slot = $1 AND sink = $2 ORDER BY inserted_at DESC
                    """, [slot, sink])
            } else {
                try connection.query("SELECT \(Self.backfillColumns) FROM \(table("backfill")) WHERE slot = $1 ORDER BY inserted_at DESC",
                                     [slot])
            }
        }.stateRows.map { try $0.backfill() }
    }

    public func backfill(id: String) throws -> BackfillRecord? {
        try read { connection in
            try connection.query("SELECT \(Self.backfillColumns) FROM \(table("backfill")) WHERE slot = $1 AND id = $2", [slot, id])
        }.stateRows.first.map { try $0.backfill() }
    }

    public func markSeen(sink: String) throws -> Bool {
        try write { connection in
            try connection.query("""
                INSERT INTO \(table("seen_sink")) (slot, sink, first_seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1
                """, values: [.text(slot), .text(sink), .time(Date())])
        }.rows.count > 0
    }
}

// MARK: - Connection

/// The store's one libpq connection, used by one caller at a time. A connection found broken (by libpq,
/// or a failure that ends the session) is dropped, and the next call connects again.
final class StateConnection: @unchecked Sendable {
    private let lock = NSLock()
    private var connection: PostgresConnection?  // guarded by `lock`
    private let parameters: [(String, String)]
    private let applicationName: String

    init(parameters: [(String, String)], applicationName: String) {
        self.parameters = parameters
        self.applicationName = applicationName
    }

    /// Runs `body` on the connection; inside a transaction opened with `begin` when given (committed when
    /// `body` returns, rolled back when it throws). When a kept connection turns out to have ended (a server
    /// restart, an idle timeout, a terminated backend) before anything took effect — a read, or a write
    /// whose BEGIN failed — the call runs once more on a new connection.
    func run<T>(transaction begin: String? = nil, _ body: (PostgresConnection) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        let reused = connection != nil
        var started = false
        do {
            return try runOnce(begin, body, started: &started)
        } catch let error as PostgresError where reused && !started && error.kind == .query && Self.endsSession(error) {
            return try runOnce(begin, body, started: &started)
        }
    }

    /// `started` turns true once a transaction's BEGIN went through (from then on a failure may have left effects).
    private func runOnce<T>(_ begin: String?, _ body: (PostgresConnection) throws -> T, started: inout Bool) throws -> T {
        let current: PostgresConnection
        if let connection, connection.isHealthy {
            current = connection
        } else {
            connection = nil
            current = try PostgresConnection(parameters: parameters, applicationName: applicationName)
            connection = current
        }
        do {
            guard let begin else { return try body(current) }
            try current.query(begin)
            started = true
            do {
                let result = try body(current)
                try current.query("COMMIT")
                return result
            } catch {
                // A connection that cannot even roll back is not used again.
                if (try? current.query("ROLLBACK")) == nil { connection = nil }
                throw error
            }
        } catch {
            if Self.endsSession(error) || !current.isHealthy { connection = nil }
            throw error
        }
    }

    /// Failures after which the session is gone or unusable: libpq's own (no SQLSTATE), connection
    /// exceptions (08…) and the server shutting the session down (57P…).
    static func endsSession(_ error: Error) -> Bool {
        guard let error = error as? PostgresError else { return false }
        guard error.kind == .query, let state = error.sqlState else { return true }
        return state.hasPrefix("08") || state.hasPrefix("57P")
    }
}
