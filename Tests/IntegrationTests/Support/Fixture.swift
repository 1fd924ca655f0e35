import Foundation

/// One test's world: its own database, slot, publication and topic names, and the YAML that
/// points sluice at them.
final class Fixture {
    let environment: TestEnvironment
    let database: TestDatabase
    let slot: String
    let publication: String
    /// The ledger file, in a directory of this test's own.
    let statePath: String

    init() throws {
        environment = try TestEnvironment.current()
        database = try TestDatabase(environment)
        slot = TestEnvironment.uniqueName("slot")
        publication = TestEnvironment.uniqueName("pub")
        statePath = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("state"))
            .appendingPathComponent("sluice-state.sqlite").path
    }

    func topic(_ name: String = "t") -> KafkaTopic {
        KafkaTopic(hosts: environment.kafkaHosts, name: TestEnvironment.uniqueName(name))
    }

    struct Sink {
        var name: String
        var topic: KafkaTopic
        var tables: [String] = []
        var extra: String = ""
    }

    /// A sluice.yml for this fixture: publication over `tables`, one Kafka sink per entry.
    /// `hosts` replaces the shared broker, e.g. with a mock cluster's bootstrap servers.
    func config(tables: [String], sinks: [Sink], heartbeat: String = "1s", hosts: String? = nil) -> String {
        let hosts = hosts ?? environment.kafkaHosts
        var yaml = """
        database:
          url: \(database.url)
          slot: { name: \(slot), create_if_not_exists: true }
          publication: { name: \(publication), create_if_not_exists: true, tables: [\(tables.joined(separator: ", "))] }
          heartbeat_interval: \(heartbeat)
        state: { path: \(statePath) }
        sinks:

        """
        for sink in sinks {
            yaml += "  - name: \(sink.name)\n"
            if !sink.tables.isEmpty { yaml += "    tables: [\(sink.tables.joined(separator: ", "))]\n" }
            yaml += """
                destination:
                  type: kafka
                  hosts: \(hosts)
                  topic: \(sink.topic.name)

            """
            if !sink.extra.isEmpty { yaml += sink.extra }
        }
        return yaml
    }

    /// Starts sluice and waits until it streams (the slot exists from then on).
    func startSluice(config: String) throws -> SluiceProcess {
        let process = try SluiceProcess(environment, config: config)
        guard process.waitUntilStreaming() else {
            throw TestSetupError("sluice did not start streaming:\n\(process.log)")
        }
        return process
    }

    deinit { database.drop() }
}
