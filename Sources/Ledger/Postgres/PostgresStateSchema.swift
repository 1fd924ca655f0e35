import Foundation
import PostgresSource
import SluiceCore

/// The tables of the PostgreSQL state store in one schema, and their versioned migrations. Every row
/// carries its replication slot's name, so deployments with different slots can share a schema.
/// Positions are `bigint` (an LSN's bit pattern, as in the SQLite file) and times `double precision`
/// seconds since 1970, so a copy between the stores keeps both exactly.
struct PostgresStateSchema: Sendable {
    /// The schema as the user named it (`state.schema`).
    let name: String
    /// The same, quoted for SQL.
    let quoted: String

    /// Checks the name: PostgreSQL's rules for an identifier, without needing quotes to keep its meaning.
    init(_ name: String) throws(StateStoreError) {
        guard StateStoreConfig.isValidSchemaName(name) else {
            throw StateStoreError(.invalidSchema, "state.schema: \"\(name)\" is not a schema name sluice can use — use at most 63 "
                                  + "lower-case letters, digits and underscores, starting with a letter or underscore (not pg_…)")
        }
        self.name = name
        quoted = PostgresConnection.quoteIdentifier(name)
    }

    /// A table of the schema, quoted for SQL.
    func table(_ table: String) -> String { "\(quoted).\(table)" }

    /// Migrations in order; a version once released never changes.
    var migrations: [(version: String, sql: String)] {
        let s = quoted
        return [("v1", """
            CREATE TABLE \(s).leader (
              slot text PRIMARY KEY, instance text NOT NULL, term bigint NOT NULL,
              lock_pid int, renewed_at timestamptz NOT NULL, expires_at timestamptz NOT NULL);
            CREATE TABLE \(s).parked (
              slot text NOT NULL, sink text NOT NULL, group_key text NOT NULL, commit_lsn bigint NOT NULL,
              commit_idx bigint NOT NULL, table_name text NOT NULL, topic text NOT NULL, message_key bytea, value bytea NOT NULL,
              deliver_count integer NOT NULL, last_error text, parked_at double precision NOT NULL,
              last_attempt_at double precision,
              PRIMARY KEY (slot, sink, commit_lsn, commit_idx));
            CREATE INDEX parked_by_group ON \(s).parked (slot, sink, group_key, commit_lsn, commit_idx);
            CREATE TABLE \(s).attempt_error (
              id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, slot text NOT NULL, sink text NOT NULL,
              commit_lsn bigint NOT NULL, commit_idx bigint NOT NULL, at double precision NOT NULL, error text NOT NULL);
            CREATE INDEX attempt_error_by_message ON \(s).attempt_error (slot, sink, commit_lsn, commit_idx, id);
            CREATE TABLE \(s).delivered (
              id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, slot text NOT NULL, sink text NOT NULL,
              group_key text NOT NULL, commit_lsn bigint NOT NULL, commit_idx bigint NOT NULL, table_name text NOT NULL,
              topic text NOT NULL, message_key text, size bigint NOT NULL, partition integer NOT NULL,
              kafka_offset bigint NOT NULL, deliver_count integer NOT NULL, delivered_at double precision NOT NULL,
              action text, record_pks jsonb NOT NULL DEFAULT '[]');
            CREATE INDEX delivered_by_sink ON \(s).delivered (slot, sink, id);
            CREATE INDEX delivered_by_position ON \(s).delivered (slot, sink, commit_lsn, commit_idx);
            CREATE TABLE \(s).cancelled (
              id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, slot text NOT NULL, sink text NOT NULL,
              group_key text NOT NULL, commit_lsn bigint NOT NULL, commit_idx bigint NOT NULL, table_name text NOT NULL,
              topic text NOT NULL, message_key text, size bigint NOT NULL, reason text NOT NULL, error text NOT NULL,
              cancelled_at double precision NOT NULL, action text, record_pks jsonb NOT NULL DEFAULT '[]',
              deliver_count integer NOT NULL DEFAULT 1, value bytea);
            CREATE INDEX cancelled_by_sink ON \(s).cancelled (slot, sink, id);
            CREATE INDEX cancelled_by_position ON \(s).cancelled (slot, sink, commit_lsn, commit_idx);
            CREATE TABLE \(s).recent_body (
              id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, slot text NOT NULL, sink text NOT NULL, value bytea NOT NULL);
            CREATE INDEX recent_body_by_sink ON \(s).recent_body (slot, sink, id);
            CREATE TABLE \(s).backfill (
              slot text NOT NULL, id text NOT NULL, sink text NOT NULL, table_name text NOT NULL, state text NOT NULL,
              sort_column text, start_position text, cursor jsonb, rows_initial_count bigint NOT NULL,
              rows_processed_count bigint NOT NULL, rows_ingested_count bigint NOT NULL, inserted_at double precision NOT NULL,
              completed_at double precision, canceled_at double precision, last_error text,
              PRIMARY KEY (slot, id));
            CREATE TABLE \(s).seen_sink (
              slot text NOT NULL, sink text NOT NULL, first_seen_at double precision NOT NULL, PRIMARY KEY (slot, sink));
            """)]
    }

    /// Brings the schema up to date. Two instances starting together serialise on an advisory lock;
    /// when every migration is already there nothing is written (a user that may only read can open it).
    func migrate(_ connection: PostgresConnection) throws(PostgresError) {
        let versions = migrations.map(\.version)
        if try Set(applied(connection)).isSuperset(of: versions) { return }
        try connection.transaction { () throws(PostgresError) in
            try connection.query("SELECT pg_advisory_xact_lock(hashtext('sluice-migrate:' || $1))", [name])
            if try connection.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [name]).rows.isEmpty {
                try connection.query("CREATE SCHEMA \(quoted)")
            }
            try connection.query("""
                CREATE TABLE IF NOT EXISTS \(table("schema_migrations")) (
                  version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
                """)
            let done = Set(try applied(connection))
            for migration in migrations where !done.contains(migration.version) {
                try connection.simpleQuery(migration.sql)
                try connection.query("INSERT INTO \(table("schema_migrations")) (version) VALUES ($1)", [migration.version])
            }
        }
    }

    /// The versions applied so far (none before the schema or its migrations table exists).
    private func applied(_ connection: PostgresConnection) throws(PostgresError) -> [String] {
        let exists = try connection.query("SELECT to_regclass($1) IS NOT NULL", [table("schema_migrations")])
        guard exists.rows.first?[0] == "t" else { return [] }
        return try connection.query("SELECT version FROM \(table("schema_migrations"))").rows.compactMap { $0[0] }
    }
}

// MARK: - Rows

/// One row of a result, read by column name; a value that does not read as its column's type throws
/// (the tables are sluice's own, so that means someone changed them by hand).
struct StateRow {
    let result: QueryResult
    let index: Int

    func optionalText(_ column: String) throws -> String? {
        guard let at = result.columns.firstIndex(of: column) else { throw unreadable(column, "no such column") }
        return result.rows[index][at]
    }

    func text(_ column: String) throws -> String {
        guard let text = try optionalText(column) else { throw unreadable(column, "NULL") }
        return text
    }

    func int(_ column: String) throws -> Int {
        let text = try text(column)
        guard let value = Int(text) else { throw unreadable(column, text) }
        return value
    }

    func optionalDate(_ column: String) throws -> Date? {
        guard let text = try optionalText(column) else { return nil }
        guard let seconds = Double(text) else { throw unreadable(column, text) }
        return Date(timeIntervalSince1970: seconds)
    }

    func date(_ column: String) throws -> Date {
        guard let date = try optionalDate(column) else { throw unreadable(column, "NULL") }
        return date
    }

    /// A bytea column (`\x…` hex, as every sluice session asks for).
    func optionalBytes(_ column: String) throws -> [UInt8]? {
        guard let text = try optionalText(column) else { return nil }
        guard let bytes = Self.hex(text) else { throw unreadable(column, "not \\x hex") }
        return bytes
    }

    func bytes(_ column: String) throws -> [UInt8] {
        guard let bytes = try optionalBytes(column) else { throw unreadable(column, "NULL") }
        return bytes
    }

    /// A jsonb list of strings.
    func list(_ column: String) throws -> [String]? {
        guard let text = try optionalText(column) else { return nil }
        guard let list = StateList.decode(text) else {
            throw unreadable(column, text)
        }
        return list
    }

    func position() throws -> MessagePosition {
        let lsn = try text("commit_lsn")
        guard let bits = Int64(lsn) else { throw unreadable("commit_lsn", lsn) }
        return MessagePosition(commitLSN: LSN(UInt64(bitPattern: bits)), commitIndex: try int("commit_idx"))
    }

    private func unreadable(_ column: String, _ value: String) -> StateStoreError {
        StateStoreError(.unreadable, "the state store's column \(column) holds a value sluice cannot read (\(value.prefix(40)))")
    }

    /// Decodes PostgreSQL's hex bytea text (`\x0a1b…`).
    static func hex(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { utf8 -> [UInt8]? in
            guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else { return nil }
            var valid = true
            let bytes = [UInt8](unsafeUninitializedCapacity: (utf8.count - 2) / 2) { buffer, count in
                nibbles.withUnsafeBufferPointer { nibbles in
                    var at = 2
                    while at < utf8.count {
                        let high = nibbles[Int(utf8[at])], low = nibbles[Int(utf8[at + 1])]
                        guard high != 0xFF, low != 0xFF else { valid = false; break }
                        buffer[count] = high << 4 | low
                        count += 1
                        at += 2
                    }
                }
            }
            return valid ? bytes : nil
        }
    }

    /// Each ASCII hex digit's value; 0xFF for anything else.
    private static let nibbles: [UInt8] = (0...255).map { code in
        switch UInt8(code) {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt8(code) - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt8(code) - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt8(code) - UInt8(ascii: "A") + 10
        default: 0xFF
        }
    }
}

extension QueryResult {
    var stateRows: [StateRow] { rows.indices.map { StateRow(result: self, index: $0) } }
}

extension StateRow {
    func parked() throws -> ParkedMessage {
        ParkedMessage(sink: try text("sink"), group: try text("group_key"), position: try position(), table: try text("table_name"),
                      topic: try text("topic"), key: try optionalBytes("message_key"), value: try bytes("value"),
                      deliverCount: try int("deliver_count"), lastError: try optionalText("last_error"),
                      parkedAt: try date("parked_at"), lastAttemptAt: try optionalDate("last_attempt_at"))
    }

    func delivered() throws -> DeliveredMessage {
        guard let partition = Int32(try text("partition")), let offset = Int64(try text("kafka_offset")) else {
            throw unreadableRow("delivered")
        }
        return DeliveredMessage(sink: try text("sink"), group: try text("group_key"), position: try position(),
                                table: try text("table_name"), topic: try text("topic"), key: try optionalText("message_key"),
                                size: try int("size"), partition: partition, offset: offset, deliverCount: try int("deliver_count"),
                                deliveredAt: try date("delivered_at"), action: try optionalText("action"),
                                recordPKs: try list("record_pks") ?? [])
    }

    func cancelled() throws -> CancelledMessage {
        CancelledMessage(sink: try text("sink"), group: try text("group_key"), position: try position(), table: try text("table_name"),
                         topic: try text("topic"), key: try optionalText("message_key"), size: try int("size"),
                         reason: try text("reason"), error: try text("error"), cancelledAt: try date("cancelled_at"),
                         action: try optionalText("action"), recordPKs: try list("record_pks") ?? [],
                         deliverCount: try int("deliver_count"), value: try optionalBytes("value"))
    }

    func backfill() throws -> BackfillRecord {
        let state = try text("state")
        return BackfillRecord(id: try text("id"), sink: try text("sink"), table: try text("table_name"),
                              state: BackfillRecord.State(rawValue: state) ?? .failed, sortColumn: try optionalText("sort_column"),
                              startPosition: try optionalText("start_position"), cursor: try list("cursor"),
                              rowsInitialCount: try int("rows_initial_count"), rowsProcessedCount: try int("rows_processed_count"),
                              rowsIngestedCount: try int("rows_ingested_count"), insertedAt: try date("inserted_at"),
                              completedAt: try optionalDate("completed_at"), canceledAt: try optionalDate("canceled_at"),
                              lastError: try optionalText("last_error"))
    }

    private func unreadableRow(_ table: String) -> StateStoreError {
        StateStoreError(.unreadable, "a row of the state store's table \(table) holds values sluice cannot read")
    }
}
