import Foundation
import Ledger
import PostgresSource

/// Instances of one slot sharing their state in PostgreSQL (`state.store: postgres`), each with its
/// own empty folder and console, as a test starts, kills and restarts them.
final class HACluster {
    let fixture: Fixture
    let schema: String
    let lease: String
    let hosts: String
    let sinks: String
    let tables: [String]
    private(set) var started = 0

    /// `sinks`: the YAML of the `sinks:` list's items (indented by two spaces).
    init(fixture: Fixture, tables: [String], sinks: String, hosts: String? = nil, lease: String = "3s") {
        self.fixture = fixture
        self.schema = TestEnvironment.uniqueName("ha")
        self.lease = lease
        self.hosts = hosts ?? fixture.environment.kafkaHosts
        self.sinks = sinks
        self.tables = tables
    }

    final class Instance {
        let name: String
        let process: SluiceProcess
        let console: ConsoleClient
        let folder: String

        init(name: String, process: SluiceProcess, console: ConsoleClient, folder: String) {
            self.name = name
            self.process = process
            self.console = console
            self.folder = folder
        }

        var log: String { process.log }

        /// `role` from `/api/status`, nil while the console does not answer.
        var role: String? { (try? console.status())?["role"] as? String }

        func waitForRole(_ role: String, timeout: Double) -> Bool {
            eventually(timeout: timeout, every: 0.1) { self.role == role }
        }
    }

    /// The sluice.yml of one instance: its own folder for `state.path` (spill files), its own console.
    func config(instance: String, folder: String, consolePort: Int, databaseURL: String? = nil) -> String {
        """
        database:
          url: \(databaseURL ?? fixture.database.url)
          slot: { name: \(fixture.slot), create_if_not_exists: true }
          publication: { name: \(fixture.publication), create_if_not_exists: true, tables: [\(tables.joined(separator: ", "))] }
          heartbeat_interval: 1s
        state: { path: \(folder)/sluice-state.sqlite, store: postgres, schema: \(schema) }
        ha: { lease: \(lease), instance: \(instance) }
        console: { listen: "127.0.0.1:\(consolePort)", token: "t" }
        sinks:
        \(sinks)
        """
    }

    /// Starts an instance in a new empty folder; waits until its console answers.
    func start(_ name: String? = nil, wrapper: [String] = [], databaseURL: String? = nil) throws -> Instance {
        started += 1
        let name = name ?? "sluice-\(started)"
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("ha-\(name)")).path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let port = try freePort()
        let process = try SluiceProcess(fixture.environment, config: config(instance: name, folder: folder, consolePort: port,
                                                                           databaseURL: databaseURL), wrapper: wrapper)
        let console = ConsoleClient(port: port, token: "t")
        if wrapper.isEmpty, !console.waitUntilServing() { throw TestSetupError("instance \(name) did not serve its console:\n\(process.log)") }
        return Instance(name: name, process: process, console: console, folder: folder)
    }

    /// The shared state, read as a standby would.
    func store() throws -> PostgresStateStore {
        try PostgresStateStore(parameters: [("dbname", fixture.database.url)], schema: schema, slot: fixture.slot,
                               applicationName: "sluice-test-read", access: .standby)
    }

    /// The lease row: instance, term, and whether it has expired (the database's clock).
    func leaseRow() throws -> (instance: String, term: Int, expired: Bool)? {
        let row = try fixture.database.execute("""
            SELECT instance, term, expires_at < clock_timestamp() AS expired FROM \(schema).leader WHERE slot = $1
            """, [fixture.slot])
        guard let instance = row.value("instance"), let term = row.value("term").flatMap({ Int($0) }) else { return nil }
        return (instance, term, row.value("expired") == "t")
    }
}
