import Foundation
import Logging
import PostgresSource

/// Who holds a slot, as its lease row says (times are the database server's).
public struct LeaseHolder: Sendable, Equatable {
    public var instance: String
    public var term: Int64
    public var expiresAt: Date

    public init(instance: String, term: Int64, expiresAt: Date) {
        self.instance = instance
        self.term = term
        self.expiresAt = expiresAt
    }
}

/// Leader election among the instances of one slot, in the state schema: a session advisory lock that
/// the leader's lock session holds for as long as it lives, and a lease row (`<schema>.leader`) that
/// the leader renews every lease/3. Every new leader raises the row's term; the state store refuses
/// writes from any other term, so a leader that lost the slot can never write the shared state.
/// One thread uses an election at a time (the standby loop, then the leader's renewal thread).
public final class LeaderElection: @unchecked Sendable {
    enum Attempt {
        /// This instance holds the slot now; `previous` held it before (nil on the first election).
        case leader(term: Int64, expiresAt: Date, previous: String?)
        /// Another instance holds the slot (nil while the holder has not written its lease yet).
        case standby(LeaseHolder?)
    }

    enum Renewal: Equatable {
        /// The lease now ends at `expiresAt` (the server's clock).
        case renewed(expiresAt: Date)
        /// The lock session is gone or the term moved on: another instance may hold the slot now.
        case lost
        /// The renewal failed but the session lives: the lease runs on until it is renewed or expires.
        case failed(String)
    }

    let schema: String
    let slot: String
    let instance: String
    let lease: Double
    private let parameters: [(String, String)]
    private let logger: Logger
    private var connection: PostgresConnection?
    private(set) var term: Int64?

    init(parameters: [(String, String)], schema: String, slot: String, instance: String, lease: Double, logger: Logger) {
        self.parameters = Self.partitionAware(parameters, lease: lease)
        self.schema = schema
        self.slot = slot
        self.instance = instance
        self.lease = lease
        self.logger = logger
    }

    /// `parameters` such that a silent network fails a connection's queries well within the lease (about a
    /// third of it), not after TCP's retransmissions give up (minutes): a leader must notice in time.
    static func partitionAware(_ parameters: [(String, String)], lease: Double) -> [(String, String)] {
        let third = max(1, lease / 3)
        let keys = ["connect_timeout", "tcp_user_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count"]
        return parameters.filter { !keys.contains($0.0) } + [
            ("connect_timeout", "\(Int(third.rounded(.up)))"), ("tcp_user_timeout", "\(Int(third * 1000))"),
            ("keepalives", "1"), ("keepalives_idle", "\(Int(third.rounded(.up)))"), ("keepalives_interval", "1"),
            ("keepalives_count", "3"),
        ]
    }

    /// The application name of a leader's state-store connection: a new leader ends a dead one's by it.
    static func storeApplicationName(instance: String) -> String { "sluice-state \(instance)" }
    static func lockApplicationName(instance: String) -> String { "sluice-lock \(instance)" }

    private var table: String { "\(PostgresConnection.quoteIdentifier(schema)).leader" }

    private func connected() throws(PostgresError) -> PostgresConnection {
        if let connection, connection.isHealthy { return connection }
        connection = nil
        term = nil
        let fresh = try PostgresConnection(parameters: parameters, applicationName: Self.lockApplicationName(instance: instance))
        connection = fresh
        return fresh
    }

    /// One standby round: takes the slot if its lock is free; else, if the leader's lease expired, ends the
    /// leader's sessions (lock, state store, walsender) and takes it; else says who holds it.
    func attempt() throws(PostgresError) -> Attempt {
        let connection = try connected()
        if try tryLock(connection) { return try claim(connection) }
        guard let (holder, lockPID, expired) = try readLease(connection) else { return .standby(nil) }
        guard expired else { return .standby(holder) }
        logger.warning("the leader's lease expired; ending its sessions and taking the slot", metadata: [
            "leader": "\(holder.instance)", "term": "\(holder.term)", "slot": "\(slot)"])
        if let lockPID { try connection.query("SELECT pg_terminate_backend($1)", ["\(lockPID)"]) }
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if try tryLock(connection) { return try claim(connection) }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return .standby(holder)
    }

    /// Renews the lease (while leader): its expiry moves to now + lease on the server's clock.
    func renew() -> Renewal {
        guard let term, let connection, connection.isHealthy else { return .lost }
        do {
            let result = try connection.query("""
                UPDATE \(table) SET renewed_at = clock_timestamp(), expires_at = clock_timestamp() + $3 * interval '1 second'
                WHERE slot = $1 AND term = $2 AND instance = $4 RETURNING extract(epoch FROM expires_at) AS expires
                """, [slot, "\(term)", "\(lease)", instance])
            guard let expires = result.value("expires").flatMap({ Double($0) }) else { return .lost }
            return .renewed(expiresAt: Date(timeIntervalSince1970: expires))
        } catch {
            return connection.isHealthy ? .failed(error.message) : .lost
        }
    }

    /// Gives the slot up at shutdown: the lease ends now and the lock session closes, so a standby takes
    /// over at once.
    func resign() {
        if let term, let connection, connection.isHealthy {
            _ = try? connection.query("UPDATE \(table) SET expires_at = clock_timestamp() WHERE slot = $1 AND term = $2",
                                      [slot, "\(term)"])
        }
        connection = nil
        term = nil
    }

    /// Leadership ended without a word (the lock session broke): closes what is left of it.
    func forget() {
        connection = nil
        term = nil
    }

    // MARK: - Steps

    private func tryLock(_ connection: PostgresConnection) throws(PostgresError) -> Bool {
        try connection.query("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked",
                             ["sluice-leader:\(schema):\(slot)"]).value("locked") == "t"
    }

    private func readLease(_ connection: PostgresConnection) throws(PostgresError)
        -> (holder: LeaseHolder, lockPID: Int32?, expired: Bool)? {
        try Self.lease(on: connection, schema: schema, slot: slot)
    }

    /// The slot's lease row, read on any connection (also by `sluice check` and `sluice state copy`): who
    /// holds the slot, its lock session, and whether its lease has run out (on the database's clock).
    public static func lease(on connection: PostgresConnection, schema: String, slot: String) throws(PostgresError)
        -> (holder: LeaseHolder, lockPID: Int32?, expired: Bool)? {
        let result = try connection.query("""
            SELECT instance, term, lock_pid, extract(epoch FROM expires_at) AS expires, expires_at < clock_timestamp() AS expired
            FROM \(PostgresConnection.quoteIdentifier(schema)).leader WHERE slot = $1
            """, [slot])
        guard let instance = result.value("instance"), let term = result.value("term").flatMap({ Int64($0) }),
              let expires = result.value("expires").flatMap({ Double($0) }) else { return nil }
        return (LeaseHolder(instance: instance, term: term, expiresAt: Date(timeIntervalSince1970: expires)),
                result.value("lock_pid").flatMap { Int32($0) }, result.value("expired") == "t")
    }

    /// With the lock held: ends the previous leader's state-store sessions and walsender, then writes
    /// this instance's lease under a new term. The walsender must be gone before the stream can start.
    private func claim(_ connection: PostgresConnection) throws(PostgresError) -> Attempt {
        do throws(PostgresError) {
            let previous = try readLease(connection)?.holder
            // By name: a frozen or cut-off holder may have a write open. A new process with the same `ha.instance`
            // (a restarted pod) ends its own store connection here too; the store reconnects on its next call.
            if let previous {
                try connection.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
                                     [Self.storeApplicationName(instance: previous.instance)])
            }
            try connection.query("""
                SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL
                """, [slot])
            let claimed = try connection.transaction { () throws(PostgresError) in
                try connection.query("SET LOCAL lock_timeout = '5s'")
                // Waits for the old term's writes in progress (they hold the row FOR KEY SHARE): they commit
                // before this term begins, or were ended above.
                try connection.query("SELECT 1 FROM \(table) WHERE slot = $1 FOR UPDATE", [slot])
                return try connection.query("""
                    INSERT INTO \(table) (slot, instance, term, lock_pid, renewed_at, expires_at)
                    VALUES ($1, $2, 1, pg_backend_pid(), clock_timestamp(), clock_timestamp() + $3 * interval '1 second')
                    ON CONFLICT (slot) DO UPDATE SET instance = excluded.instance, term = \(table).term + 1,
                      lock_pid = excluded.lock_pid, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
                    RETURNING term, extract(epoch FROM expires_at) AS expires
                    """, [slot, instance, "\(lease)"])
            }
            guard let term = claimed.value("term").flatMap({ Int64($0) }),
                  let expires = claimed.value("expires").flatMap({ Double($0) }) else {
                throw PostgresError(.query, "the lease row of slot \(slot) was not written")
            }
            try waitForWalsender(connection)
            self.term = term
            return .leader(term: term, expiresAt: Date(timeIntervalSince1970: expires), previous: previous?.instance)
        } catch {
            _ = try? connection.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", ["sluice-leader:\(schema):\(slot)"])
            throw error
        }
    }

    private func waitForWalsender(_ connection: PostgresConnection) throws(PostgresError) {
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            let active = try connection.query("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", [slot])
            if active.value("active_pid") == nil { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }
}
