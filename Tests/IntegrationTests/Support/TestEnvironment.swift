import Foundation
import PostgresSource
import SluiceCore
import Testing

/// The servers `scripts/test` started. A missing variable is a failure, never a skip: these tests
/// exist to run against real PostgreSQL and a real broker.
struct TestEnvironment {
    let postgresURL: String
    let kafkaHosts: String
    let sluiceBinary: String

    static func current() throws -> TestEnvironment {
        let environment = ProcessInfo.processInfo.environment
        func required(_ name: String) throws -> String {
            guard let value = environment[name], !value.isEmpty else {
                Issue.record("\(name) is not set: run the tests through scripts/test, which starts PostgreSQL and the broker")
                throw TestSetupError("\(name) is not set")
            }
            return value
        }
        let binary = try required("SLUICE_BIN")
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            Issue.record("SLUICE_BIN=\(binary) is not an executable: run swift build first (scripts/test does)")
            throw TestSetupError("no sluice binary")
        }
        return TestEnvironment(postgresURL: try required("SLUICE_TEST_PG_URL"),
                               kafkaHosts: try required("SLUICE_TEST_KAFKA_HOSTS"), sluiceBinary: binary)
    }

    /// A short unique name for a test's database, slot, publication and topics.
    static func uniqueName(_ prefix: String) -> String {
        prefix + "_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A database of its own for one test, dropped (with its slot) at the end.
final class TestDatabase {
    let name: String
    let url: String
    let connection: PostgresConnection
    private let admin: PostgresConnection

    init(_ environment: TestEnvironment) throws {
        name = TestEnvironment.uniqueName("sluice_t")
        admin = try PostgresConnection(parameters: [("dbname", environment.postgresURL)])
        try admin.query("CREATE DATABASE \(name)")
        var components = URLComponents(string: environment.postgresURL)!
        components.path = "/" + name
        url = components.string!
        connection = try PostgresConnection(parameters: [("dbname", url)])
    }

    @discardableResult
    func execute(_ sql: String, _ parameters: [String?] = []) throws -> QueryResult {
        try connection.query(sql, parameters)
    }

    /// The slot's confirmed flush LSN.
    func confirmedFlush(slot: String) throws -> LSN? {
        try execute("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", [slot])
            .rows.first?[0].flatMap { LSN($0) }
    }

    func currentWAL() throws -> LSN {
        LSN(try execute("SELECT pg_current_wal_insert_lsn()").rows[0][0]!)!
    }

    /// Drops the slots and the database; call at the end of a test (after sluice stopped).
    func drop() {
        _ = try? admin.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", [name])
        _ = try? admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }
}

/// Waits until `condition` holds, polling; false on timeout.
func eventually(timeout: Double, every interval: Double = 0.2, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: interval)
    }
    return try condition()
}

/// A plain SQL connection by URL, for tests that talk to a server of their own.
struct PostgresSourceConnection {
    let connection: PostgresConnection

    init(url: String) throws {
        connection = try PostgresConnection(parameters: [("dbname", url)])
    }

    @discardableResult
    func execute(_ sql: String, _ parameters: [String?] = []) throws -> QueryResult {
        try connection.query(sql, parameters)
    }
}
