import CLibPQ
import Foundation
import SluiceCore

/// Why talking to PostgreSQL failed, with the server's words and SQLSTATE when it gave them.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case connection, query, replication }
    public var kind: Kind
    public var message: String
    public var sqlState: String?

    public init(_ kind: Kind, _ message: String, sqlState: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { message }
}

/// Rows of a query result as text (nil = NULL).
public struct QueryResult: Sendable {
    public var columns: [String]
    public var rows: [[String?]]
    /// Each column's type OID.
    public var columnTypes: [UInt32] = []

    /// The first row's value in `column`, if any.
    public func value(_ column: String, row: Int = 0) -> String? {
        guard row < rows.count, let index = columns.firstIndex(of: column) else { return nil }
        return rows[row][index]
    }
}

/// One libpq connection. Not thread-safe: each thread that talks to PostgreSQL owns its own.
public final class PostgresConnection {
    let handle: OpaquePointer

    /// The server's host as connected (the socket directory for a Unix socket).
    public var host: String { PQhost(handle).map { String(cString: $0) } ?? "" }

    /// Settings every Sluice session uses so that values arrive in the text forms the converter reads.
    static let sessionOptions = "-c datestyle=ISO -c timezone=UTC -c intervalstyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex"

    /// Connects with the user's parameters (a URL first, as `dbname`, is expanded by libpq) plus
    /// Sluice's session settings; `replication` opens a walsender connection (`replication=database`).
    public init(parameters: [(String, String)], replication: Bool = false, applicationName: String = "sluice") throws(PostgresError) {
        var pairs = parameters
        pairs.append(("options", Self.sessionOptions))
        pairs.append(("client_encoding", "UTF8"))
        pairs.append(("application_name", applicationName))
        if !parameters.contains(where: { $0.0 == "connect_timeout" }) { pairs.append(("connect_timeout", "10")) }
        if replication { pairs.append(("replication", "database")) }

        let keys = pairs.map { strdup($0.0) }
        let values = pairs.map { strdup($0.1) }
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
        }
        var keyPointers: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) } + [nil]
        var valuePointers: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        guard let connection = PQconnectdbParams(&keyPointers, &valuePointers, 1) else {
            throw PostgresError(.connection, "could not allocate a PostgreSQL connection")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.trimmed(String(cString: PQerrorMessage(connection)))
            PQfinish(connection)
            throw PostgresError(.connection, "cannot connect to PostgreSQL: \(message)")
        }
        handle = connection
    }

    deinit { PQfinish(handle) }

    /// The server's last error text for this connection.
    var lastError: String { Self.trimmed(String(cString: PQerrorMessage(handle))) }

    /// Runs a statement with text parameters ($1, $2, …) through the extended protocol.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> QueryResult {
        let copies = parameters.map { $0.map { strdup($0) } ?? nil }
        defer { copies.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
        let result = pointers.withUnsafeBufferPointer { buffer in
            PQexecParams(handle, sql, Int32(parameters.count), nil, buffer.baseAddress, nil, nil, 0)
        }
        return try collect(result, sql: sql)
    }

    /// Runs `body` in a transaction opened with `begin` (e.g. `BEGIN ISOLATION LEVEL …`): committed
    /// when it returns, rolled back when it throws.
    public func transaction<T>(_ begin: String = "BEGIN", _ body: () throws(PostgresError) -> T) throws(PostgresError) -> T {
        try query(begin)
        do throws(PostgresError) {
            let result = try body()
            try query("COMMIT")
            return result
        } catch {
            _ = try? query("ROLLBACK")
            throw error
        }
    }

    /// Runs a command through the simple protocol: replication commands such as IDENTIFY_SYSTEM need it.
    @discardableResult
    public func simpleQuery(_ sql: String) throws(PostgresError) -> QueryResult {
        try collect(PQexec(handle, sql), sql: sql)
    }

    private func collect(_ result: OpaquePointer?, sql: String) throws(PostgresError) -> QueryResult {
        guard let result else { throw PostgresError(.query, lastError) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            let message = Self.trimmed(String(cString: PQresultErrorMessage(result)))
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw PostgresError(.query, message.isEmpty ? lastError : message, sqlState: state)
        }
        let columnCount = PQnfields(result)
        let columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
        var rows: [[String?]] = []
        for row in 0..<PQntuples(result) {
            rows.append((0..<columnCount).map { column in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            })
        }
        var query = QueryResult(columns: columns, rows: rows)
        query.columnTypes = (0..<columnCount).map { UInt32(PQftype(result, $0)) }
        return query
    }

    /// Prepares `sql` as the unnamed statement without running it: its parameter count and the
    /// names of its result columns; PostgreSQL's error when it does not parse or plan.
    public func describe(_ sql: String) throws(PostgresError) -> (parameterCount: Int, columns: [String]) {
        let prepared = PQprepare(handle, "", sql, 0, nil)
        _ = try collect(prepared, sql: sql)
        guard let description = PQdescribePrepared(handle, "") else { throw PostgresError(.query, lastError) }
        defer { PQclear(description) }
        guard PQresultStatus(description) == PGRES_COMMAND_OK else {
            throw PostgresError(.query, Self.trimmed(String(cString: PQresultErrorMessage(description))))
        }
        let columns = (0..<PQnfields(description)).map { String(cString: PQfname(description, $0)) }
        return (Int(PQnparams(description)), columns)
    }

    /// False once the server connection is gone (it must be replaced).
    public var isHealthy: Bool { PQstatus(handle) == CONNECTION_OK }

    /// `name` quoted as an SQL identifier.
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func trimmed(_ text: String) -> String {
        var text = Substring(text)
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}

// MARK: - Binary parameters

/// A statement parameter: text (the server reads it as the parameter's type), bytes (sent as bytea in
/// binary, so a 100 MB value is not doubled into hex on the way in), or NULL.
public enum PostgresParameter: Sendable, Equatable {
    case text(String)
    case binary([UInt8])
    case null

    /// Text, or NULL for nil.
    public init(_ text: String?) { self = text.map { .text($0) } ?? .null }
    /// Bytes, or NULL for nil.
    public init(_ bytes: [UInt8]?) { self = bytes.map { .binary($0) } ?? .null }
}

extension PostgresConnection {
    /// Runs a statement with parameters ($1, $2, …) that may be bytes; results come back as text as with
    /// `query(_:_:)` (bytea as `\x…` hex).
    @discardableResult
    public func query(_ sql: String, values: [PostgresParameter]) throws(PostgresError) -> QueryResult {
        for case .binary(let bytes) in values where bytes.count > Int32.max {
            throw PostgresError(.query, "a value of \(bytes.count) bytes is larger than PostgreSQL takes (1 GB)")
        }
        let types: [Oid] = values.map { if case .binary = $0 { 17 } else { 0 } }  // 17: bytea
        let lengths: [Int32] = values.map { if case .binary(let bytes) = $0 { Int32(bytes.count) } else { 0 } }
        let formats: [Int32] = values.map { if case .binary = $0 { 1 } else { 0 } }
        // Text is copied (it is small); bytes are lent in place, each for the length of the call.
        let copies: [UnsafeMutablePointer<CChar>?] = values.map { if case .text(let text) = $0 { strdup(text) } else { nil } }
        defer { copies.forEach { free($0) } }
        let binary = values.indices.filter { if case .binary = values[$0] { true } else { false } }
        let result = Self.lendingBytes(of: values, at: binary[...], to: copies.map { $0.map { UnsafePointer($0) } }) { pointers in
            PQexecParams(handle, sql, Int32(values.count), types, pointers, lengths, formats, 0)
        }
        return try collect(result, sql: sql)
    }

    /// Calls `body` with `pointers` completed by a pointer to the bytes of each binary parameter at `indices`
    /// (one nested borrow per binary parameter: statements have few).
    private static func lendingBytes<R>(of values: [PostgresParameter], at indices: ArraySlice<Int>,
                                        to pointers: [UnsafePointer<CChar>?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        guard let index = indices.first, case .binary(let bytes) = values[index] else { return body(pointers) }
        var pointers = pointers
        guard !bytes.isEmpty else {
            // An empty value still needs a pointer: NULL would mean SQL NULL.
            return "".withCString { empty in
                pointers[index] = empty
                return lendingBytes(of: values, at: indices.dropFirst(), to: pointers, body)
            }
        }
        return bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                pointers[index] = chars.baseAddress
                return lendingBytes(of: values, at: indices.dropFirst(), to: pointers, body)
            }
        }
    }
}
