import Foundation
import Testing

/// `sluice check` validates the file and connects to both sides, one line per problem.
@Suite(.serialized)
struct CheckCommandTests {
    func check(_ environment: TestEnvironment, config: String, extra: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("check") + ".yml").path
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let env = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        return try runCommand(environment.sluiceBinary, ["check", "--config", path], environment: env)
    }

    @Test func validConfigConnectsToBothSides() throws {
        let fixture = try Fixture()
        try fixture.database.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
        let result = try check(fixture.environment, config: fixture.config(
            tables: ["public.orders"], sinks: [.init(name: "orders", topic: fixture.topic())]))
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("ok: database: connected to \(fixture.database.name)"))
        #expect(result.stdout.contains("ok: sinks[0] orders: Kafka at \(fixture.environment.kafkaHosts) answered"))
        #expect(result.stdout.contains("configuration is valid"))
    }

    @Test func anExactlyOnceSinkIsCheckedForTransactionsWithoutFencingARunningSluice() throws {
        let fixture = try Fixture()
        try fixture.database.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
        let topic = fixture.topic()
        let transactionalID = TestEnvironment.uniqueName("txid")
        let config = fixture.config(tables: ["public.orders"], sinks: [.init(name: "orders", topic: topic, extra: """
                  transactional_id: \(transactionalID)
                  offsets_topic: \(TestEnvironment.uniqueName("offsets"))
                delivery: exactly_once

            """)])
        let sluice = try fixture.startSluice(config: config)
        let result = try check(fixture.environment, config: config)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("ok: sinks[0] orders: the brokers support transactions (InitProducerId answered for \(transactionalID).check)"),
                "\(result.stdout)")
        // The check used an id of its own: the running sluice still commits.
        try fixture.database.execute("INSERT INTO public.orders VALUES (1)")
        #expect(try topic.waitForMessages(1, timeout: 30).count == 1, "log:\n\(sluice.log.suffix(2000))")
        #expect(!sluice.log.contains("another producer took"))
        #expect(sluice.stop() == 0)
    }

    @Test func theSharedStateStoreIsCreatedAndItsLeaderNamed() throws {
        let fixture = try Fixture()
        try fixture.database.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
        let schema = TestEnvironment.uniqueName("checked")
        let config = fixture.config(tables: ["public.orders"], sinks: [.init(name: "orders", topic: fixture.topic())])
            .replacingOccurrences(of: "state: { path: \(fixture.statePath) }",
                                  with: "state: { path: \(fixture.statePath), store: postgres, schema: \(schema) }")
        let result = try check(fixture.environment, config: config)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("ok: state: PostgreSQL schema \(schema) (slot \(fixture.slot)) is ready; no instance leads the slot now"),
                "\(result.stdout)")
        #expect(try fixture.database.execute("SELECT count(*) FROM \(schema).schema_migrations").value("count") == "1")

        let sluice = try fixture.startSluice(config: config)
        let leading = try check(fixture.environment, config: config)
        #expect(leading.stdout.contains("leads the slot (term 1, lease until"), "\(leading.stdout)")
        #expect(sluice.stop() == 0)

        let unreachable = try check(fixture.environment, config: config.replacingOccurrences(
            of: "store: postgres,", with: "store: postgres, url: \"postgres://nobody:hunter2@127.0.0.1:1/x\","))
        #expect(unreachable.status == 1)
        #expect(unreachable.stderr.contains("state: ") && unreachable.stderr.contains("check state.url"), "\(unreachable.stderr)")
        #expect(!unreachable.stderr.contains("hunter2"))
    }

    @Test func invalidFieldsAreNamedOnePerLine() throws {
        let environment = try TestEnvironment.current()
        let result = try check(environment, config: """
            database:
              url: postgres://app@127.0.0.1:5432/app
            sinks:
              - name: orders
                destination:
                  type: kafka
                  hosts: kafka:99999
                  topic: "bad topic"
                  compresion: gzip
            """)
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(lines == [
            "sinks[0].destination.compresion: unknown field — did you mean compression?",
            "sinks[0].destination.hosts: \"kafka:99999\" — port must be 1-65535",
            "sinks[0].destination.topic: \"bad topic\" — a topic name uses only letters, digits, '.', '_' and '-'",
        ])
    }

    @Test func unreachableServersAreReportedWithoutSecrets() throws {
        let environment = try TestEnvironment.current()
        let result = try check(environment, config: """
            database:
              url: postgres://app:${DB_SECRET}@127.0.0.1:1/app
            sinks:
              - name: orders
                destination:
                  type: kafka
                  hosts: 127.0.0.1:1
                  topic: orders
                  username: app
                  password: ${KAFKA_SECRET}
                  sasl_mechanism: plain
            """, extra: ["DB_SECRET": "hunter2-db", "KAFKA_SECRET": "hunter2-kafka"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("database: cannot connect to PostgreSQL"))
        #expect(result.stderr.contains("sinks[0].destination.hosts: cannot reach Kafka at 127.0.0.1:1"))
        #expect(!result.stderr.contains("hunter2") && !result.stdout.contains("hunter2"), "secrets never printed")
    }

    @Test func missingEnvironmentVariableIsNamed() throws {
        let environment = try TestEnvironment.current()
        let result = try check(environment, config: """
            database:
              url: postgres://app:${SLUICE_TEST_UNSET_PASSWORD}@127.0.0.1:5432/app
            sinks:
              - name: orders
                destination: { type: kafka, hosts: "127.0.0.1:9092", topic: orders }
            """)
        #expect(result.status != 0)
        #expect(result.stderr.contains("database.url: environment variable SLUICE_TEST_UNSET_PASSWORD is not set"))
    }

    @Test func invalidYAMLIsReportedWithoutTheSourceLine() throws {
        let environment = try TestEnvironment.current()
        let result = try check(environment, config: "database:\n  url: \"postgres://app:hunter2@127.0.0.1/app\n  slot: [\n")
        #expect(result.status == 2)
        #expect(result.stderr.contains("not valid YAML: line 4, column 1: found unexpected end of stream"), "\(result.stderr)")
        #expect(!result.stderr.contains("hunter2"))
    }
}
