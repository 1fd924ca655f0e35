import SluiceCore

/// A sink's enrichment function (Sequin's `type: enrichment`): a query on an ordinary connection to
/// the source database, run for a batch of messages with one array parameter per primary-key column
/// (`$1`, `$2`, …). Its rows are matched back to the messages by the key columns, which the select
/// list must contain. One instance per thread; it reconnects after a lost connection.
public final class EnrichmentQuery {
    public let function: FunctionConfig
    let parameters: [(String, String)]
    let valueFormat: ValueFormat
    private var connection: PostgresConnection?
    /// Primary-key columns per table, looked up once.
    private var keyColumns: [String: [String]] = [:]

    public init(function: FunctionConfig, connectionParameters: [(String, String)], valueFormat: ValueFormat) {
        self.function = function
        self.parameters = connectionParameters
        self.valueFormat = valueFormat
    }

    /// One message to enrich: its table (`schema.name`) and primary-key values as text, in column order.
    public struct Input: Sendable {
        public var table: String
        public var recordPKs: [String]

        public init(table: String, recordPKs: [String]) {
            self.table = table
            self.recordPKs = recordPKs
        }
    }

    /// For each input in order: the matched row as a JSON object, `null` when no row came back, or
    /// why this message could not be enriched.
    public func run(_ inputs: [Input]) -> [Result<[UInt8], EnrichmentFailure>] {
        var results = [Result<[UInt8], EnrichmentFailure>](repeating: .success(Array("null".utf8)), count: inputs.count)
        var byTable: [String: [Int]] = [:]
        for (index, input) in inputs.enumerated() { byTable[input.table, default: []].append(index) }
        for (table, indexes) in byTable {
            do {
                let rows = try query(table: table, keys: indexes.map { inputs[$0].recordPKs })
                for index in indexes {
                    switch rows[Self.joined(inputs[index].recordPKs)] {
                    case .none: break
                    case .some(.one(let json)): results[index] = .success(json)
                    case .some(.duplicate):
                        results[index] = .failure(EnrichmentFailure(
                            "enrichment \(function.name): the query returned more than one row for key \(inputs[index].recordPKs.joined(separator: ", ")) of \(table) — return at most one row per key"))
                    }
                }
            } catch {
                for index in indexes { results[index] = .failure(error) }
            }
        }
        return results
    }

    private enum Match { case one([UInt8]), duplicate }

    private func query(table: String, keys: [[String]]) throws(EnrichmentFailure) -> [String: Match] {
        // A table without a primary key has nothing to match rows by: its messages get null.
        if keys.allSatisfy(\.isEmpty) { return [:] }
        let connection = try connected()
        let columns = try keyColumns(of: table, on: connection)
        guard !columns.isEmpty else { return [:] }
        let arrays = columns.indices.map { position in Self.arrayLiteral(keys.map { $0.indices.contains(position) ? $0[position] : "" }) }
        let result: QueryResult
        do {
            result = try connection.query(function.code, arrays)
        } catch {
            if !connection.isHealthy { self.connection = nil }
            throw EnrichmentFailure("enrichment \(function.name) failed on \(table): \(error.message)")
        }
        let positions = columns.map { result.columns.firstIndex(of: $0) }
        if positions.contains(nil) {
            let missing = zip(columns, positions).filter { $0.1 == nil }.map(\.0)
            throw EnrichmentFailure("enrichment \(function.name): the query's select list lacks \(missing.joined(separator: ", ")), the key of \(table) — select it so rows can be matched to messages")
        }
        var matches: [String: Match] = [:]
        for row in result.rows {
            let key = Self.joined(positions.map { row[$0!] ?? "" })
            matches[key] = matches[key] == nil ? .one(json(row, of: result)) : .duplicate
        }
        return matches
    }

    /// The row as a JSON object, values converted as the sink converts columns.
    private func json(_ row: [String?], of result: QueryResult) -> [UInt8] {
        var json = JSONWriter(capacity: 128)
        json.raw(UInt8(ascii: "{"))
        for (index, name) in result.columns.enumerated() {
            if index > 0 { json.raw(UInt8(ascii: ",")) }
            json.key(name)
            guard var text = row[index] else { json.null(); continue }
            let oid = index < result.columnTypes.count ? result.columnTypes[index] : 25
            let kind = ValueKind.builtin(oid: oid) ?? .text
            text.withUTF8 { ValueConverter.write(text: $0, kind: valueFormat == .sequin ? kind.sequinForm : kind, to: &json) }
        }
        json.raw(UInt8(ascii: "}"))
        return json.bytes
    }

    private func connected() throws(EnrichmentFailure) -> PostgresConnection {
        if let connection, connection.isHealthy { return connection }
        do {
            let fresh = try PostgresConnection(parameters: parameters, applicationName: "sluice-enrichment")
            try fresh.query("SELECT set_config('statement_timeout', $1, false)", [String(Int(function.statementTimeout * 1000))])
            connection = fresh
            return fresh
        } catch {
            connection = nil
            throw EnrichmentFailure("enrichment \(function.name): cannot connect to the database: \(error.message)")
        }
    }

    private func keyColumns(of table: String, on connection: PostgresConnection) throws(EnrichmentFailure) -> [String] {
        if let known = keyColumns[table] { return known }
        do {
            let result = try connection.query("""
                SELECT a.attname FROM pg_index i
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum
                """, [Self.qualified(table)])
            let columns = result.rows.compactMap { $0[0] }
            keyColumns[table] = columns
            return columns
        } catch {
            if !connection.isHealthy { self.connection = nil }
            throw EnrichmentFailure("enrichment \(function.name): cannot look up the key of \(table): \(error.message)")
        }
    }

    /// Checks the query before the sink starts: it must prepare, and (for the tables given) take one
    /// parameter per key column and select the key columns. Returns the problem, naming where the code is.
    public static func problem(of function: FunctionConfig, tables: [TableName],
                               on connection: PostgresConnection) -> String? {
        let described: (parameterCount: Int, columns: [String])
        do { described = try connection.describe(function.code) } catch {
            return "\(function.origin): PostgreSQL refused the enrichment query of \(function.name): \(error.message)"
        }
        if described.parameterCount == 0 {
            return "\(function.origin): the enrichment query of \(function.name) takes no parameters — filter by the batch's keys, e.g. WHERE u.id = ANY($1)"
        }
        for table in tables {
            guard let result = try? connection.query("""
                SELECT a.attname FROM pg_index i
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum
                """, [qualified(table.description)]) else { continue }
            let keys = result.rows.compactMap { $0[0] }
            if keys.isEmpty { continue }
            if keys.count != described.parameterCount {
                return "\(function.origin): the enrichment query of \(function.name) takes \(described.parameterCount) parameter(s), but \(table) has \(keys.count) key column(s) (\(keys.joined(separator: ", "))) — one array parameter per key column, $1, $2, …"
            }
            let missing = keys.filter { !described.columns.contains($0) }
            if !missing.isEmpty {
                return "\(function.origin): the enrichment query of \(function.name) does not select \(missing.joined(separator: ", ")), the key of \(table) — add it to the select list so rows can be matched to messages"
            }
        }
        return nil
    }

    /// Every enabled sink's enrichment query checked (once per function and table set).
    public static func problems(of config: SluiceConfig, on connection: PostgresConnection) -> [String] {
        var problems: [String] = []
        for sink in config.sinks where sink.enabled {
            guard let function = sink.enrichment else { continue }
            let tables = sink.tables + (sink.source.includeTables.map { Array($0) } ?? [])
            if let problem = problem(of: function, tables: tables.sorted { $0.description < $1.description }, on: connection),
               !problems.contains(problem) {
                problems.append(problem)
            }
        }
        return problems
    }

    /// `{"a","b\"c"}`: a text array literal PostgreSQL casts to the parameter's inferred array type.
    static func arrayLiteral(_ values: [String]) -> String {
        var literal = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { literal += "," }
            literal += "\""
            for character in value {
                if character == "\"" || character == "\\" { literal.append("\\") }
                literal.append(character)
            }
            literal += "\""
        }
        return literal + "}"
    }

    static func joined(_ values: [String]) -> String { values.joined(separator: "\u{1F}") }

    /// `schema.name` → `"schema"."name"` for to_regclass.
    static func qualified(_ table: String) -> String {
        guard let dot = table.firstIndex(of: ".") else { return PostgresConnection.quoteIdentifier(table) }
        return PostgresConnection.quoteIdentifier(String(table[..<dot])) + "." + PostgresConnection.quoteIdentifier(String(table[table.index(after: dot)...]))
    }
}

/// Why a message could not be enriched; it is parked like a message whose function failed.
public struct EnrichmentFailure: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
