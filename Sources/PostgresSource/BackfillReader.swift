import CLibPQ
import Foundation
import SluiceCore

/// A table as a backfill reads it: the relation (the same column kinds as the replication stream's,
/// so a row's JSON is the same from both), the key to page by, and the SQL type of each column.
public struct BackfillTable: Sendable {
    public var name: TableName
    public var relation: Relation
    /// Primary-key columns in the index's order (the order keyset pages follow).
    public var keyColumns: [String]
    /// `format_type` of every column of the relation, by name (for casts of cursor values).
    public var columnTypes: [String: String]

    public init(name: TableName, relation: Relation, keyColumns: [String], columnTypes: [String: String]) {
        self.name = name
        self.relation = relation
        self.keyColumns = keyColumns
        self.columnTypes = columnTypes
    }
}

/// Reads existing rows for backfills over an ordinary (non-replication) connection: keyset pages
/// (`WHERE (key) > (last) ORDER BY key LIMIT n`, never OFFSET), watermarks written with
/// `pg_logical_emit_message`, row estimates. One reader per backfill thread.
public final class BackfillReader {
    public static let watermarkPrefix = "sluice-backfill"
    let connection: PostgresConnection
    let catalog: RelationCatalog

    public init(parameters: [(String, String)]) throws(PostgresError) {
        connection = try PostgresConnection(parameters: parameters, applicationName: "sluice-backfill")
        catalog = RelationCatalog(connection: try PostgresConnection(parameters: parameters, applicationName: "sluice-backfill-catalog"))
    }

    /// The table's columns as pgoutput publishes them (no dropped or generated columns), its key and types.
    public func describe(_ table: TableName) throws(PostgresError) -> BackfillTable {
        let found = try connection.query("""
            SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
            """, [table.schema, table.name])
        guard let row = found.rows.first, let oid = UInt32(row[0] ?? "") else {
            throw PostgresError(.query, "table \(table) does not exist")
        }
        let keys = try connection.query("""
            SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY k.position
            """, [String(oid)]).rows.compactMap { $0[0] }
        let attributes = try connection.query("""
            SELECT attname, atttypid, atttypmod, format_type(atttypid, atttypmod) FROM pg_attribute
            WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum
            """, [String(oid)])
        var columns: [RelationDescription.ColumnDescription] = []
        var types: [String: String] = [:]
        for attribute in attributes.rows {
            guard let name = attribute[0], let typeOID = UInt32(attribute[1] ?? ""), let modifier = Int32(attribute[2] ?? "") else { continue }
            columns.append(.init(name: name, typeOID: typeOID, typeModifier: modifier, isKey: keys.contains(name)))
            types[name] = attribute[3] ?? "text"
        }
        let identity = Relation.ReplicaIdentity(rawValue: row[1]?.utf8.first ?? 100) ?? .default
        let relation = try catalog.relation(from: RelationDescription(id: oid, schema: table.schema, name: table.name,
                                                                      replicaIdentity: identity, columns: columns))
        return BackfillTable(name: table, relation: relation, keyColumns: keys, columnTypes: types)
    }

    /// Rows in the table (or at/after `start` in `sortColumn`): exact when that answers within a few
    /// seconds, else the planner's estimate.
    public func estimateRows(_ table: BackfillTable, sortColumn: String?, start: String?) -> Int {
        var sql = "SELECT count(*) FROM \(Self.quoted(table.name))"
        var parameters: [String?] = []
        if let sortColumn, let start, let type = table.columnTypes[sortColumn] {
            sql += " WHERE \(PostgresConnection.quoteIdentifier(sortColumn)) >= $1::\(type)"
            parameters = [start]
        }
        do {
            try connection.query("SET statement_timeout = 3000")
            defer { _ = try? connection.query("SET statement_timeout = 0") }
            return Int(try connection.query(sql, parameters).rows.first?[0] ?? "") ?? 0
        } catch {
            let estimate = try? connection.query("SELECT reltuples::bigint FROM pg_class WHERE oid = $1::oid", [String(table.relation.id)])
            return max(0, Int(estimate?.rows.first?[0] ?? "") ?? 0)
        }
    }

    /// Fails with the server's words if `value` does not read as `column`'s type.
    public func check(_ value: String, as column: String, of table: BackfillTable) throws(PostgresError) {
        guard let type = table.columnTypes[column] else { throw PostgresError(.query, "column \(column) is not in \(table.name)") }
        try connection.query("SELECT $1::\(type)", [value])
    }

    /// Writes a watermark into the WAL (a non-transactional message: it is in the stream at its
    /// position, whatever else commits) and returns its position. The WAL is flushed right away: a
    /// message alone does not flush it, and the walsender sends only flushed WAL, so it would wait for
    /// the WAL writer (up to `wal_writer_delay`, 200 ms by default) on an otherwise idle database —
    /// for every page. A transaction with an xid flushes at its commit (`local`: flushed here, never
    /// waiting for a synchronous standby); it changes nothing, and pgoutput skips it as empty.
    public func emitWatermark(_ content: String) throws(PostgresError) -> LSN {
        let result = try connection.transaction { () throws(PostgresError) -> QueryResult in
            try connection.query("SET LOCAL synchronous_commit TO local")
            return try connection.query("SELECT pg_logical_emit_message(false, $1, $2), pg_current_xact_id()",
                                        [Self.watermarkPrefix, content])
        }
        guard let text = result.rows.first?[0], let lsn = LSN(text) else {
            throw PostgresError(.query, "pg_logical_emit_message returned no position")
        }
        return lsn
    }

    /// The next page: rows after `cursor` (the last row's order-column values, as text) in the order
    /// `(sortColumn, key…)`, or rows with `sortColumn >= start` when there is no cursor yet.
    public func page(_ table: BackfillTable, sortColumn: String?, start: String?, after cursor: [String]?,
                     limit: Int) throws(PostgresError) -> (rows: [Tuple], snapshot: Snapshot) {
        // One REPEATABLE READ transaction: the snapshot named is the one the rows were read with.
        try connection.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") { () throws(PostgresError) -> ([Tuple], Snapshot) in
            guard let text = try connection.query("SELECT pg_current_snapshot()::text").rows.first?[0],
                  let snapshot = Snapshot(text) else { throw PostgresError(.query, "pg_current_snapshot() gave no snapshot") }
            return (try pageRows(table, sortColumn: sortColumn, start: start, after: cursor, limit: limit), snapshot)
        }
    }

    private func pageRows(_ table: BackfillTable, sortColumn: String?, start: String?, after cursor: [String]?,
                          limit: Int) throws(PostgresError) -> [Tuple] {
        let order = (sortColumn.map { [$0] } ?? []) + table.keyColumns
        let list = order.map(PostgresConnection.quoteIdentifier).joined(separator: ", ")
        let selected = table.relation.columns.map { PostgresConnection.quoteIdentifier($0.name) }.joined(separator: ", ")
        var sql = "SELECT \(selected) FROM \(Self.quoted(table.name))"
        var parameters: [String?] = []
        if let cursor, cursor.count == order.count {
            let placeholders = order.enumerated().map { "$\($0.offset + 1)::\(table.columnTypes[$0.element] ?? "text")" }
            sql += " WHERE (\(list)) > (\(placeholders.joined(separator: ", ")))"
            parameters = cursor
        } else if let sortColumn, let start {
            sql += " WHERE \(PostgresConnection.quoteIdentifier(sortColumn)) >= $1::\(table.columnTypes[sortColumn] ?? "text")"
            parameters = [start]
        }
        sql += " ORDER BY \(list) LIMIT \(max(1, limit))"
        return try connection.tuples(sql, parameters)
    }

    static func quoted(_ table: TableName) -> String {
        PostgresConnection.quoteIdentifier(table.schema) + "." + PostgresConnection.quoteIdentifier(table.name)
    }
}

/// Which transactions a read saw: `xmin:xmax:xip…` of `pg_current_snapshot()`.
public struct Snapshot: Sendable, Equatable {
    public var xmin: UInt64
    public var xmax: UInt64
    public var inProgress: Set<UInt64>

    public init(xmin: UInt64, xmax: UInt64, inProgress: Set<UInt64>) {
        self.xmin = xmin
        self.xmax = xmax
        self.inProgress = inProgress
    }

    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let xmin = UInt64(parts[0]), let xmax = UInt64(parts[1]) else { return nil }
        self.init(xmin: xmin, xmax: xmax, inProgress: Set(parts[2].split(separator: ",").compactMap { UInt64($0) }))
    }

    /// Whether the 32-bit xid of a streamed transaction was invisible to this snapshot (still running
    /// or not yet started when it was taken). Compared modulo 2^32, as PostgreSQL compares xids.
    public func missed(xid: UInt32) -> Bool {
        let xmax32 = UInt32(truncatingIfNeeded: xmax)
        if Int32(bitPattern: xid &- xmax32) >= 0 { return true }
        return inProgress.contains { UInt32(truncatingIfNeeded: $0) == xid }
    }
}

extension PostgresConnection {
    /// Runs a query and returns its rows as tuples (text cells in one buffer per row), without
    /// making a Swift string of every value.
    func tuples(_ sql: String, _ parameters: [String?]) throws(PostgresError) -> [Tuple] {
        let copies = parameters.map { $0.map { strdup($0) } ?? nil }
        defer { copies.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
        let result = pointers.withUnsafeBufferPointer { buffer in
            PQexecParams(handle, sql, Int32(parameters.count), nil, buffer.baseAddress, nil, nil, 0)
        }
        guard let result else { throw PostgresError(.query, lastError) }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_TUPLES_OK else {
            let message = Self.trimmed(String(cString: PQresultErrorMessage(result)))
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw PostgresError(.query, message.isEmpty ? lastError : message, sqlState: state)
        }
        let columns = PQnfields(result)
        let count = PQntuples(result)
        var tuples: [Tuple] = []
        tuples.reserveCapacity(Int(count))
        for row in 0..<count {
            var size = 0
            for column in 0..<columns { size += Int(PQgetlength(result, row, column)) }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(size)
            var cells: [Cell] = []
            cells.reserveCapacity(Int(columns))
            for column in 0..<columns {
                if PQgetisnull(result, row, column) == 1 {
                    cells.append(.null)
                    continue
                }
                let length = Int(PQgetlength(result, row, column))
                let start = bytes.count
                PQgetvalue(result, row, column).withMemoryRebound(to: UInt8.self, capacity: length) {
                    bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: length))
                }
                cells.append(.text(start..<start + length))
            }
            tuples.append(Tuple(bytes: bytes, cells: cells))
        }
        return tuples
    }
}
