import Foundation
import PostgresSource
import SluiceCore

/// Parked, delivered and cancelled messages, attempt errors and recent bodies: the same semantics as the
/// SQLite file, each row scoped by the slot.
extension PostgresStateStore {
    static let parkedColumns = """
        sink, group_key, commit_lsn, commit_idx, table_name, topic, message_key, value, deliver_count, last_error, parked_at,
        last_attempt_at
        """
    static let deliveredColumns = """
        sink, group_key, commit_lsn, commit_idx, table_name, topic, message_key, size, partition, kafka_offset, deliver_count,
        delivered_at, action, record_pks
        """
    static let cancelledColumns = """
        sink, group_key, commit_lsn, commit_idx, table_name, topic, message_key, size, reason, error, cancelled_at, action,
        record_pks, deliver_count, value
        """
    /// `AND commit_lsn = $3 AND commit_idx = $4` after `slot = $1 AND sink = $2`.
    static let atPosition = "slot = $1 AND sink = $2 AND commit_lsn = $3 AND commit_idx = $4"

    // MARK: - Parked

    public func apply(park messages: [ParkedMessage], unpark positions: [MessagePosition],
                      attempts: [(position: MessagePosition, deliverCount: Int, error: String)], sink: String) throws {
        guard !messages.isEmpty || !positions.isEmpty || !attempts.isEmpty else { return }
        try write { connection in
            let now = Date()
            // Many rows per statement: a park of thousands of messages is a few round trips, not thousands.
            for chunk in Self.chunks(messages, width: 12) {
                let new = try insertParked(connection, chunk)
                let errors = chunk.compactMap { message -> (position: MessagePosition, at: Date, error: String)? in
                    guard let error = message.lastError, new.contains(Self.positionKey(message.position)) else { return nil }
                    return (message.position, now, error)
                }
                try recordErrors(connection, sink: sink, errors)
            }
            for chunk in Self.chunks(positions, width: 2) {
                var values: [PostgresParameter] = [.text(slot), .text(sink)]
                let rows = chunk.map { Self.row(appending: [.lsn($0), .int($0.commitIndex)], to: &values, casts: ["bigint", "bigint"]) }
                try connection.query("""
                    DELETE FROM \(table("parked")) WHERE slot = $1 AND sink = $2 AND (commit_lsn, commit_idx) IN (\(rows.joined(separator: ", ")))
                    """, values: values)
            }
            for chunk in Self.chunks(attempts, width: 4) {
                var values: [PostgresParameter] = [.text(slot), .text(sink), .time(now)]
                let rows = chunk.map { attempt in
                    Self.row(appending: [.lsn(attempt.position), .int(attempt.position.commitIndex), .int(attempt.deliverCount),
                                         .text(attempt.error)], to: &values, casts: ["bigint", "bigint", "int", "text"])
                }
                try connection.query("""
                    UPDATE \(table("parked")) AS p SET deliver_count = v.n, last_error = v.error, last_attempt_at = $3
                    FROM (VALUES \(rows.joined(separator: ", "))) AS v(lsn, idx, n, error)
                    WHERE p.slot = $1 AND p.sink = $2 AND p.commit_lsn = v.lsn AND p.commit_idx = v.idx
                    """, values: values)
                try recordErrors(connection, sink: sink, chunk.map { ($0.position, now, $0.error) })
            }
            // At most 20 errors per message.
            for attempt in attempts where attempt.deliverCount > StateLimits.errorsKept {
                try connection.query("""
                    DELETE FROM \(table("attempt_error")) WHERE \(Self.atPosition) AND id <= (
                      SELECT id FROM \(table("attempt_error")) WHERE \(Self.atPosition) ORDER BY id DESC LIMIT 1 OFFSET $5)
                    """, values: key(sink, attempt.position) + [.int(StateLimits.errorsKept)])
            }
        }
    }

    /// Parks messages (one statement) unless parked already; the `positionKey`s of those written.
    func insertParked(_ connection: PostgresConnection, _ messages: ArraySlice<ParkedMessage>) throws -> Set<String> {
        var values: [PostgresParameter] = [.text(slot)]
        let rows = messages.map { message in Self.row(appending: Self.values(message), to: &values, first: "$1") }
        let inserted = try connection.query("""
            INSERT INTO \(table("parked")) (slot, \(Self.parkedColumns)) VALUES \(rows.joined(separator: ", "))
            ON CONFLICT DO NOTHING RETURNING commit_lsn, commit_idx
            """, values: values)
        return Set(inserted.rows.map { "\($0[0] ?? "")/\($0[1] ?? "")" })
    }

    /// Appends attempt errors, in order (their ids keep it).
    func recordErrors(_ connection: PostgresConnection, sink: String, _ errors: [(position: MessagePosition, at: Date, error: String)])
        throws {
        for chunk in Self.chunks(errors, width: 4) {
            var values: [PostgresParameter] = [.text(slot), .text(sink)]
            let rows = chunk.map {
                Self.row(appending: [.lsn($0.position), .int($0.position.commitIndex), .time($0.at), .text($0.error)], to: &values,
                         first: "$1, $2")
            }
            try connection.query("""
                INSERT INTO \(table("attempt_error")) (slot, sink, commit_lsn, commit_idx, at, error) VALUES \(rows.joined(separator: ", "))
                """, values: values)
        }
    }

    /// Rows of `width` parameters each, in slices that stay far below PostgreSQL's 65,535 parameters a statement.
    static func chunks<Row>(_ rows: [Row], width: Int) -> [ArraySlice<Row>] {
        let size = max(1, 8_000 / width)
        return stride(from: 0, to: rows.count, by: size).map { rows[$0..<min($0 + size, rows.count)] }
    }

    /// `($first, $n, $n+1, …)` for `row`'s parameters appended to `values` (with `::cast`s, for VALUES lists
    /// whose types PostgreSQL cannot infer).
    static func row(appending row: [PostgresParameter], to values: inout [PostgresParameter], first: String? = nil,
                    casts: [String] = []) -> String {
        var items = first.map { [$0] } ?? []
        for (offset, value) in row.enumerated() {
            values.append(value)
            items.append("$\(values.count)" + (offset < casts.count ? "::\(casts[offset])" : ""))
        }
        return "(" + items.joined(separator: ", ") + ")"
    }

    /// A position as the text the tables give back for (commit_lsn, commit_idx).
    static func positionKey(_ position: MessagePosition) -> String {
        "\(Int64(bitPattern: position.commitLSN.rawValue))/\(position.commitIndex)"
    }

    public func parkedGroups(sink: String) throws -> [String: Int] {
        let rows = try read { connection in
            try connection.query("SELECT group_key, count(*) AS n FROM \(table("parked")) WHERE slot = $1 AND sink = $2 GROUP BY group_key",
                                 [slot, sink])
        }.stateRows
        var groups: [String: Int] = [:]
        for row in rows { groups[try row.text("group_key")] = try row.int("n") }
        return groups
    }

    public func firstParked(sink: String, group: String) throws -> ParkedMessage? {
        try read { connection in
            try connection.query("""
                SELECT \(Self.parkedColumns) FROM \(table("parked")) WHERE slot = $1 AND sink = $2 AND group_key = $3
                ORDER BY commit_lsn, commit_idx LIMIT 1
                """, [slot, sink, group])
        }.stateRows.first.map { try $0.parked() }
    }

    public func parked(sink: String, limit: Int) throws -> [ParkedMessage] {
        try read { connection in
            try connection.query("""
                SELECT \(Self.parkedColumns) FROM \(table("parked")) WHERE slot = $1 AND sink = $2
                ORDER BY commit_lsn, commit_idx LIMIT $3
                """, [slot, sink, String(limit)])
        }.stateRows.map { try $0.parked() }
    }

    public func parkedCount(sink: String) throws -> Int {
        try count("parked", sink: sink)
    }

    public func parkedMessage(sink: String, position: MessagePosition) throws -> ParkedMessage? {
        try read { connection in
            try connection.query("SELECT \(Self.parkedColumns) FROM \(table("parked")) WHERE \(Self.atPosition)",
                                 values: key(sink, position))
        }.stateRows.first.map { try $0.parked() }
    }

    public func attemptErrors(sink: String, position: MessagePosition) throws -> [(at: Date, error: String)] {
        try read { connection in
            try connection.query("""
                SELECT at, error FROM \(table("attempt_error")) WHERE \(Self.atPosition) ORDER BY id DESC LIMIT $5
                """, values: key(sink, position) + [.int(StateLimits.errorsKept)])
        }.stateRows.map { (try $0.date("at"), try $0.text("error")) }
    }

    public func cancelParked(sink: String, position: MessagePosition, reason: String, action: String?,
                             recordPKs: [String]) throws -> CancelledMessage? {
        try write { connection in
            let removed = try connection.query("DELETE FROM \(table("parked")) WHERE \(Self.atPosition) RETURNING \(Self.parkedColumns)",
                                               values: key(sink, position))
            guard let parked = try removed.stateRows.first?.parked() else { return nil }
            let cancelled = CancelledMessage(cancelling: parked, reason: reason, action: action, recordPKs: recordPKs)
            try insertCancelled(connection, cancelled)
            return cancelled
        }
    }

    // MARK: - Delivered

    public func recordDelivered(_ messages: [DeliveredMessage]) throws {
        guard !messages.isEmpty else { return }
        try write { connection in try insertDelivered(connection, messages.suffix(StateLimits.deliveredKept)) }
    }

    /// Inserts delivered messages (many to a statement), then keeps the newest 1,000 of each of their sinks.
    func insertDelivered(_ connection: PostgresConnection, _ messages: ArraySlice<DeliveredMessage>) throws {
        for chunk in Self.chunks(Array(messages), width: 14) {
            var values: [PostgresParameter] = [.text(slot)]
            let rows = chunk.map { message in
                Self.row(appending: [
                    .text(message.sink), .text(message.group), .lsn(message.position), .int(message.position.commitIndex),
                    .text(message.table), .text(message.topic), PostgresParameter(message.key), .int(message.size),
                    .int(Int(message.partition)), .text(String(message.offset)), .int(message.deliverCount),
                    .time(message.deliveredAt), PostgresParameter(message.action), .text(Self.encodeList(message.recordPKs)),
                ], to: &values, first: "$1")
            }
            try connection.query("INSERT INTO \(table("delivered")) (slot, \(Self.deliveredColumns)) VALUES \(rows.joined(separator: ", "))",
                                 values: values)
        }
        for sink in Set(messages.map(\.sink)) {
            try connection.query("""
                DELETE FROM \(table("delivered")) WHERE slot = $1 AND sink = $2 AND id <= (
                  SELECT id FROM \(table("delivered")) WHERE slot = $1 AND sink = $2 ORDER BY id DESC LIMIT 1 OFFSET $3)
                """, [slot, sink, String(StateLimits.deliveredKept)])
        }
    }

    public func recentlyDelivered(sink: String, limit: Int) throws -> [DeliveredMessage] {
        try read { connection in
            try connection.query("""
                SELECT \(Self.deliveredColumns) FROM \(table("delivered")) WHERE slot = $1 AND sink = $2 ORDER BY id DESC LIMIT $3
                """, [slot, sink, String(limit)])
        }.stateRows.map { try $0.delivered() }
    }

    public func deliveredMessage(sink: String, position: MessagePosition) throws -> DeliveredMessage? {
        try read { connection in
            try connection.query("""
                SELECT \(Self.deliveredColumns) FROM \(table("delivered")) WHERE \(Self.atPosition) ORDER BY id DESC LIMIT 1
                """, values: key(sink, position))
        }.stateRows.first.map { try $0.delivered() }
    }

    // MARK: - Recent bodies

    public func replaceRecentBodies(sink: String, _ bodies: [[UInt8]]) throws {
        try write { connection in try insertRecentBodies(connection, sink: sink, bodies) }
    }

    func insertRecentBodies(_ connection: PostgresConnection, sink: String, _ bodies: [[UInt8]]) throws {
        try connection.query("DELETE FROM \(table("recent_body")) WHERE slot = $1 AND sink = $2", [slot, sink])
        let kept = bodies.suffix(StateLimits.recentBodiesKept)
        guard !kept.isEmpty else { return }
        var values: [PostgresParameter] = [.text(slot), .text(sink)]
        let rows = kept.map { Self.row(appending: [.binary($0)], to: &values, first: "$1, $2") }
        try connection.query("INSERT INTO \(table("recent_body")) (slot, sink, value) VALUES \(rows.joined(separator: ", "))", values: values)
    }

    public func recentBodies(sink: String, limit: Int) throws -> [[UInt8]] {
        try read { connection in
            try connection.query("SELECT value FROM \(table("recent_body")) WHERE slot = $1 AND sink = $2 ORDER BY id DESC LIMIT $3",
                                 [slot, sink, String(limit)])
        }.stateRows.map { try $0.bytes("value") }
    }

    // MARK: - Cancelled

    public func recordCancelled(_ message: CancelledMessage) throws {
        try write { connection in try insertCancelled(connection, message) }
    }

    func insertCancelled(_ connection: PostgresConnection, _ message: CancelledMessage) throws {
        try connection.query("""
            INSERT INTO \(table("cancelled")) (slot, \(Self.cancelledColumns))
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
            """, values: [
                .text(slot), .text(message.sink), .text(message.group), .lsn(message.position), .int(message.position.commitIndex),
                .text(message.table), .text(message.topic), PostgresParameter(message.key), .int(message.size),
                .text(message.reason), .text(message.error), .time(message.cancelledAt), PostgresParameter(message.action),
                .text(Self.encodeList(message.recordPKs)), .int(message.deliverCount), PostgresParameter(message.value),
            ])
    }

    public func cancelled(sink: String, limit: Int) throws -> [CancelledMessage] {
        try read { connection in
            try connection.query("""
                SELECT \(Self.cancelledColumns) FROM \(table("cancelled")) WHERE slot = $1 AND sink = $2 ORDER BY id DESC LIMIT $3
                """, [slot, sink, String(limit)])
        }.stateRows.map { try $0.cancelled() }
    }

    public func cancelledMessage(sink: String, position: MessagePosition) throws -> CancelledMessage? {
        try read { connection in
            try connection.query("""
                SELECT \(Self.cancelledColumns) FROM \(table("cancelled")) WHERE \(Self.atPosition) ORDER BY id DESC LIMIT 1
                """, values: key(sink, position))
        }.stateRows.first.map { try $0.cancelled() }
    }

    public func cancelledCount(sink: String) throws -> Int {
        try count("cancelled", sink: sink)
    }

    // MARK: - Parameters

    /// $1…$4 of `atPosition`.
    func key(_ sink: String, _ position: MessagePosition) -> [PostgresParameter] {
        [.text(slot), .text(sink), .lsn(position), .int(position.commitIndex)]
    }

    /// A parked message's columns, in `parkedColumns` order.
    static func values(_ message: ParkedMessage) -> [PostgresParameter] {
        [.text(message.sink), .text(message.group), .lsn(message.position), .int(message.position.commitIndex),
         .text(message.table), .text(message.topic), PostgresParameter(message.key), .binary(message.value),
         .int(message.deliverCount), PostgresParameter(message.lastError), .time(message.parkedAt),
         message.lastAttemptAt.map { .time($0) } ?? .null]
    }

    func count(_ name: String, sink: String) throws -> Int {
        let result = try read { connection in
            try connection.query("SELECT count(*) AS n FROM \(table(name)) WHERE slot = $1 AND sink = $2", [slot, sink])
        }
        return try result.stateRows.first?.int("n") ?? 0
    }

    static func encodeList(_ values: [String]) -> String { StateList.encode(values) }
}

extension PostgresParameter {
    static func int(_ value: Int) -> PostgresParameter { .text(String(value)) }
    /// A position's LSN as the bigint the tables hold (its bit pattern, as in the SQLite file).
    static func lsn(_ position: MessagePosition) -> PostgresParameter { .text(String(Int64(bitPattern: position.commitLSN.rawValue))) }
    /// Seconds since 1970 as `double precision`: the shortest text that reads back as the same Double.
    static func time(_ date: Date) -> PostgresParameter { .text(String(date.timeIntervalSince1970)) }
}
