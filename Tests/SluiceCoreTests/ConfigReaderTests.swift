import Foundation
import Testing
@testable import SluiceCore

/// Builds config trees by hand, the way the YAML loader would hand them over.
private func map(_ pairs: KeyValuePairs<String, ConfigNode>) -> ConfigNode {
    .mapping(pairs.map { ($0.key, $0.value) })
}

private func s(_ text: String) -> ConfigNode { .scalar(text) }

private func seq(_ items: ConfigNode...) -> ConfigNode { .sequence(items) }

@Suite("ConfigReader")
struct ConfigReaderTests {
    static let environment = ["PGPASSWORD": "pg-s3cret", "KAFKA_PASSWORD": "kafka-s3cret"]

    static func database(extra: [(String, ConfigNode)] = []) -> ConfigNode {
        .mapping([
            ("url", s("postgres://app:${PGPASSWORD}@127.0.0.1:5432/app")),
            ("slot", map(["name": s("sluice"), "create_if_not_exists": s("true")])),
            ("publication", map(["name": s("sluice"), "create_if_not_exists": s("true"),
                                 "tables": seq(s("public.orders"))])),
            ("heartbeat_interval", s("15s")),
        ] + extra)
    }

    /// A destination with `overrides` replacing or adding fields (a nil value removes the field).
    static func destination(_ overrides: [(String, ConfigNode?)] = []) -> ConfigNode {
        var fields: [(String, ConfigNode)] = [
            ("type", s("kafka")),
            ("hosts", s("127.0.0.1:9092")),
            ("topic", s("orders")),
        ]
        for (key, value) in overrides {
            if let index = fields.firstIndex(where: { $0.0 == key }) {
                if let value { fields[index].1 = value } else { fields.remove(at: index) }
            } else if let value {
                fields.append((key, value))
            }
        }
        return .mapping(fields)
    }

    static func sink(name: String = "orders-to-kafka", tables: ConfigNode? = seq(s("public.orders")),
                     destination: ConfigNode = destination(), extra: [(String, ConfigNode)] = []) -> ConfigNode {
        var fields: [(String, ConfigNode)] = [("name", s(name))]
        if let tables { fields.append(("tables", tables)) }
        fields.append(("destination", destination))
        return .mapping(fields + extra)
    }

    static func root(database: ConfigNode = database(), sinks: [ConfigNode] = [sink()],
                     extra: [(String, ConfigNode)] = []) -> ConfigNode {
        .mapping([("database", database), ("sinks", .sequence(sinks))] + extra)
    }

    /// The error lines for a config expected to be refused.
    static func errors(_ root: ConfigNode, environment: [String: String] = environment) -> [String] {
        switch ConfigReader.read(root, environment: environment) {
        case .success: return []
        case .failure(let failure): return failure.errors.map(\.description)
        }
    }

    static func errors(destination overrides: [(String, ConfigNode?)],
                       environment: [String: String] = environment) -> [String] {
        errors(root(sinks: [sink(destination: destination(overrides))]), environment: environment)
    }

    // MARK: - A valid configuration

    @Test func fullValidConfig() throws {
        let root = ConfigNode.mapping([
            ("database", Self.database()),
            ("state", map(["path": s("./sluice-state.sqlite")])),
            ("console", map(["listen": s("127.0.0.1:7376"), "token": s("${SLUICE_CONSOLE_TOKEN:-}")])),
            ("sinks", seq(.mapping([
                ("name", s("orders-to-kafka")),
                ("tables", seq(s("public.orders"))),
                ("actions", seq(s("insert"), s("update"), s("delete"))),
                ("message_grouping", s("true")),
                ("max_memory_mb", s("128")),
                ("destination", .mapping([
                    ("type", s("kafka")),
                    ("hosts", s("127.0.0.1:9092")),
                    ("topic", s("orders")),
                    ("tls", s("false")),
                    ("username", s("app")),
                    ("password", s("${KAFKA_PASSWORD}")),
                    ("sasl_mechanism", s("scram_sha_256")),
                    ("compression", s("gzip")),
                    ("batch_size", s("200")),
                    ("max_ack_pending", s("10000")),
                ])),
            ]))),
        ])
        let config = try ConfigReader.read(root, environment: Self.environment).get()
        let database = config.database
        #expect(database.connectionParameters.count == 1)
        #expect(database.connectionParameters.first?.0 == "dbname")
        #expect(database.connectionParameters.first?.1 == "postgres://app:pg-s3cret@127.0.0.1:5432/app")
        #expect(database.slotName == "sluice")
        #expect(database.createSlot)
        #expect(database.publicationName == "sluice")
        #expect(database.createPublication)
        #expect(database.publicationTables == [TableName(schema: "public", name: "orders")])
        #expect(database.heartbeatInterval == 15)
        #expect(config.statePath == "./sluice-state.sqlite")
        #expect(config.console?.listen == "127.0.0.1:7376")
        #expect(config.console?.token == "")
        #expect(config.sinks.count == 1)
        let sink = try #require(config.sinks.first)
        #expect(sink.name == "orders-to-kafka")
        #expect(sink.tables == [TableName(schema: "public", name: "orders")])
        #expect(sink.actions == [.insert, .update, .delete])
        #expect(sink.messageGrouping)
        #expect(sink.maxMemoryMB == 128)
        let kafka = sink.destination
        #expect(kafka.hosts == [HostPort(host: "127.0.0.1", port: 9092)])
        #expect(kafka.topic == "orders")
        #expect(kafka.tls == nil)
        #expect(kafka.username == "app")
        #expect(kafka.password == "kafka-s3cret")
        #expect(kafka.saslMechanism == .scram_sha_256)
        #expect(kafka.saslMechanism?.librdkafkaName == "SCRAM-SHA-256")
        #expect(kafka.compression == .gzip)
        #expect(kafka.batchSize == 200)
        #expect(kafka.maxAckPending == 10_000)
        #expect(sink.accepts(table: TableName(schema: "public", name: "orders"), action: .insert))
        #expect(!sink.accepts(table: TableName(schema: "public", name: "orders"), action: .read))
        #expect(!sink.accepts(table: TableName(schema: "public", name: "users"), action: .insert))
    }

    @Test func minimalConfigGetsDefaults() throws {
        let root = ConfigNode.mapping([
            ("database", map(["url": s("postgres://app@127.0.0.1/app")])),
            ("sinks", seq(map(["name": s("s"), "destination": Self.destination()]))),
        ])
        let config = try ConfigReader.read(root, environment: [:]).get()
        #expect(config.database.slotName == "sluice")
        #expect(config.database.publicationName == "sluice")
        #expect(config.database.publicationTables == [])
        #expect(config.database.heartbeatInterval == 15)
        #expect(config.statePath == "./sluice-state.sqlite")
        #expect(config.console == nil)
        let sink = try #require(config.sinks.first)
        #expect(sink.tables == [])
        #expect(sink.actions == Set(Action.allCases))
        #expect(sink.messageGrouping)
        #expect(sink.maxMemoryMB == 128)
        #expect(sink.accepts(table: TableName(schema: "any", name: "table"), action: .read))
        let kafka = sink.destination
        #expect(kafka.batchSize == 200)
        #expect(kafka.maxAckPending == 10_000)
        #expect(kafka.compression == .none)
        #expect(kafka.tls == nil)
        #expect(kafka.username == nil)
        #expect(kafka.password == nil)
        #expect(kafka.saslMechanism == nil)
    }

    @Test func separateConnectionFields() throws {
        let root = Self.root(database: map([
            "host": s("db.internal"), "port": s("5433"), "dbname": s("app"), "user": s("replicator"),
            "password": s("${PGPASSWORD}"),
        ]), sinks: [Self.sink(tables: nil)])
        let config = try ConfigReader.read(root, environment: Self.environment).get()
        let parameters = config.database.connectionParameters
        #expect(parameters.map(\.0) == ["host", "port", "dbname", "user", "password"])
        #expect(parameters.map(\.1) == ["db.internal", "5433", "app", "replicator", "pg-s3cret"])
    }

    @Test func hostLists() throws {
        let config = try ConfigReader.read(
            Self.root(sinks: [Self.sink(destination: Self.destination([("hosts", s("[::1]:9092, kafka-2:9093,10.0.0.3:19092"))]))]),
            environment: Self.environment).get()
        let hosts = try #require(config.sinks.first).destination.hosts
        #expect(hosts == [HostPort(host: "::1", port: 9092), HostPort(host: "kafka-2", port: 9093),
                          HostPort(host: "10.0.0.3", port: 19092)])
        #expect(hosts.map(\.description) == ["[::1]:9092", "kafka-2:9093", "10.0.0.3:19092"])
    }

    @Test(arguments: [("15s", 15.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("0", 0.0), ("30", 30.0)])
    func heartbeatDurations(text: String, seconds: Double) throws {
        let root = Self.root(database: Self.database(extra: []).replacing("heartbeat_interval", with: s(text)))
        let config = try ConfigReader.read(root, environment: Self.environment).get()
        #expect(config.database.heartbeatInterval == seconds)
    }

    @Test func environmentInterpolation() throws {
        let destination = Self.destination([
            ("hosts", s("${KAFKA_HOST:-localhost}:${KAFKA_PORT}")),
            ("topic", s("${PREFIX}.orders")),
            ("compression", s("${COMPRESSION:-zstd}")),
        ])
        let config = try ConfigReader.read(Self.root(sinks: [Self.sink(destination: destination)]),
                                           environment: Self.environment.merging(
                                               ["KAFKA_PORT": "9094", "PREFIX": "prod", "COMPRESSION": ""]) { $1 }).get()
        let kafka = try #require(config.sinks.first).destination
        #expect(kafka.hosts == [HostPort(host: "localhost", port: 9094)])
        #expect(kafka.topic == "prod.orders")
        // An empty variable takes the default, as in the shell.
        #expect(kafka.compression == .zstd)
    }

    @Test func interpolationHelper() {
        let env = ["A": "1", "EMPTY": ""]
        #expect(EnvironmentInterpolation.apply("x${A}y${A}", environment: env) == .success("x1y1"))
        #expect(EnvironmentInterpolation.apply("${B:-two}", environment: env) == .success("two"))
        #expect(EnvironmentInterpolation.apply("${EMPTY:-d}", environment: env) == .success("d"))
        #expect(EnvironmentInterpolation.apply("${EMPTY}", environment: env) == .success(""))
        #expect(EnvironmentInterpolation.apply("${B}", environment: env) == .failure(.unset("B")))
        #expect(EnvironmentInterpolation.apply("${A", environment: env) == .failure(.unterminated))
        #expect(EnvironmentInterpolation.apply("no vars $A", environment: env) == .success("no vars $A"))
    }

    // MARK: - Exact error texts

    @Test func portOutOfRange() {
        #expect(Self.errors(destination: [("hosts", s("kafka:99999"))])
            == ["sinks[0].destination.hosts: \"kafka:99999\" — port must be 1-65535"])
        #expect(Self.errors(destination: [("hosts", s("kafka:0"))])
            == ["sinks[0].destination.hosts: \"kafka:0\" — port must be 1-65535"])
    }

    @Test func hostWithoutPort() {
        #expect(Self.errors(destination: [("hosts", s("kafka"))])
            == ["sinks[0].destination.hosts: \"kafka\" — write host:port, e.g. 127.0.0.1:9092 or [::1]:9092"])
        #expect(Self.errors(destination: [("hosts", s("::1:9092"))])
            == ["sinks[0].destination.hosts: \"::1:9092\" — write host:port, e.g. 127.0.0.1:9092 or [::1]:9092"])
        #expect(Self.errors(destination: [("hosts", s(""))])
            == ["sinks[0].destination.hosts: is empty — list brokers as host:port, comma-separated"])
    }

    @Test func unknownFieldSuggestsNearest() {
        #expect(Self.errors(destination: [("topic", nil), ("topc", s("orders"))]) == [
            "sinks[0].destination.topc: unknown field — did you mean topic?",
            "sinks[0].destination.topic: is required: the Kafka topic to write to (or set a routing function that sets topic)",
        ])
        #expect(Self.errors(Self.root(extra: [("sinkz", seq())])) == ["sinkz: unknown field — did you mean sinks?"])
        #expect(Self.errors(Self.root(extra: [("completely_unrelated", s("1"))]))
            == ["completely_unrelated: unknown field — remove it"])
    }

    @Test func missingTopic() {
        #expect(Self.errors(destination: [("topic", nil)])
            == ["sinks[0].destination.topic: is required: the Kafka topic to write to (or set a routing function that sets topic)"])
    }

    @Test func topicRules() {
        let long = String(repeating: "a", count: 256)
        #expect(Self.errors(destination: [("topic", s(long))])
            == ["sinks[0].destination.topic: \"\(long)\" — a topic name has at most 255 characters (this one has 256)"])
        #expect(Self.errors(destination: [("topic", s(String(repeating: "a", count: 255)))]) == [])
        #expect(Self.errors(destination: [("topic", s("."))])
            == ["sinks[0].destination.topic: \".\" — a topic cannot be named . or .."])
        #expect(Self.errors(destination: [("topic", s(".."))])
            == ["sinks[0].destination.topic: \"..\" — a topic cannot be named . or .."])
        #expect(Self.errors(destination: [("topic", s("my topic"))])
            == ["sinks[0].destination.topic: \"my topic\" — a topic name uses only letters, digits, '.', '_' and '-'"])
        #expect(Self.errors(destination: [("topic", s("orders/v2"))])
            == ["sinks[0].destination.topic: \"orders/v2\" — a topic name uses only letters, digits, '.', '_' and '-'"])
        #expect(Self.errors(destination: [("topic", s(""))])
            == ["sinks[0].destination.topic: \"\" — a topic name cannot be empty"])
        #expect(Self.errors(destination: [("topic", s("Orders.v2_final-1"))]) == [])
    }

    @Test func usernameWithoutPassword() {
        #expect(Self.errors(destination: [("username", s("app")), ("sasl_mechanism", s("plain"))])
            == ["sinks[0].destination.password: username and password go together — give both or neither"])
        #expect(Self.errors(destination: [("password", s("${KAFKA_PASSWORD}")), ("sasl_mechanism", s("plain"))]) == [
            "sinks[0].destination.username: username and password go together — give both or neither",
            "sinks[0].destination.sasl_mechanism: needs username and password",
        ])
    }

    @Test func credentialsNeedAMechanism() {
        #expect(Self.errors(destination: [("username", s("app")), ("password", s("${KAFKA_PASSWORD}"))])
            == ["sinks[0].destination.sasl_mechanism: is required with username and password: plain, scram_sha_256 or scram_sha_512"])
    }

    @Test func invalidSASLMechanism() {
        #expect(Self.errors(destination: [("username", s("app")), ("password", s("x")), ("sasl_mechanism", s("scram"))])
            == ["sinks[0].destination.sasl_mechanism: \"scram\" — use plain, scram_sha_256 or scram_sha_512"])
    }

    @Test func invalidCompression() {
        #expect(Self.errors(destination: [("compression", s("brotli"))])
            == ["sinks[0].destination.compression: \"brotli\" — use none, gzip, snappy, lz4 or zstd"])
    }

    @Test func batchSizeRange() {
        #expect(Self.errors(destination: [("batch_size", s("0"))])
            == ["sinks[0].destination.batch_size: \"0\" — must be a whole number from 1 to 10000"])
        #expect(Self.errors(destination: [("batch_size", s("many"))])
            == ["sinks[0].destination.batch_size: \"many\" — must be a whole number from 1 to 10000"])
        #expect(Self.errors(destination: [("max_ack_pending", s("0"))])
            == ["sinks[0].destination.max_ack_pending: \"0\" — must be a whole number from 1 to 1000000"])
    }

    @Test func underscoresInNumbers() throws {
        let config = try ConfigReader.read(
            Self.root(sinks: [Self.sink(destination: Self.destination([("max_ack_pending", s("10_000")),
                                                                      ("batch_size", s("1_000"))]))]),
            environment: Self.environment).get()
        #expect(config.sinks.first?.destination.maxAckPending == 10_000)
        #expect(config.sinks.first?.destination.batchSize == 1_000)
    }

    @Test func wrongDestinationType() {
        #expect(Self.errors(destination: [("type", s("s3"))])
            == ["sinks[0].destination.type: \"s3\" — the only destination type is kafka"])
        #expect(Self.errors(destination: [("type", nil)])
            == ["sinks[0].destination.type: is required: type: kafka"])
    }

    @Test func unsetEnvironmentVariableNamesVariableAndField() {
        #expect(Self.errors(destination: [("topic", s("${TOPIC_NAME}"))])
            == ["sinks[0].destination.topic: environment variable TOPIC_NAME is not set — export it, or write ${TOPIC_NAME:-default}"])
    }

    @Test func unsetPasswordVariableIsTheOnlyError() {
        // The user did give a password; the only problem is the missing variable.
        #expect(Self.errors(destination: [("username", s("app")), ("password", s("${KAFKA_PASSWORD}")),
                                          ("sasl_mechanism", s("plain"))],
                                 environment: ["PGPASSWORD": "x"])
            == ["sinks[0].destination.password: environment variable KAFKA_PASSWORD is not set — export it, or write ${KAFKA_PASSWORD:-default}"])
    }

    @Test func passwordsNeverAppearInErrors() {
        let secret = "hunter2-super-secret"
        let environment = ["PGPASSWORD": secret, "KAFKA_PASSWORD": secret]
        // Interpolated secrets, with other fields wrong.
        let root = ConfigNode.mapping([
            ("database", map([
                "url": s("postgres://app:${PGPASSWORD}@127.0.0.1:5432/app"),
                "password": s("${PGPASSWORD}"),
                "port": s("0"),
                "heartbeat_interval": s("soon"),
            ])),
            ("sinks", seq(Self.sink(tables: nil, destination: Self.destination([
                ("username", s("app")), ("password", s("${KAFKA_PASSWORD}")), ("sasl_mechanism", s("bogus")),
                ("hosts", s("kafka:99999")), ("compression", s("brotli")),
            ])))),
        ])
        let lines = Self.errors(root, environment: environment)
        #expect(lines.count >= 5)
        for line in lines { #expect(!line.contains(secret)) }

        // A literal secret in a url that is refused.
        let badURL = Self.errors(Self.root(database: map(["url": s("mysql://app:\(secret)@db/app")])))
        #expect(badURL == ["database.url: must start with postgres:// or postgresql://, e.g. postgres://user@127.0.0.1:5432/app"])

        // A literal secret with a broken ${ in it.
        let unterminated = Self.errors(destination: [("username", s("app")), ("password", s("\(secret)${oops")),
                                                     ("sasl_mechanism", s("plain"))])
        #expect(unterminated.contains("sinks[0].destination.password: has an unterminated ${ — close it with }"))
        for line in unterminated { #expect(!line.contains(secret)) }

        let databasePassword = Self.errors(Self.root(database: map([
            "host": s("db"), "dbname": s("app"), "password": s("\(secret)${"),
        ])))
        #expect(databasePassword == ["database.password: has an unterminated ${ — close it with }"])
        let databaseURL = Self.errors(Self.root(database: map(["url": s("postgres://app:\(secret)${@db/app")])))
        #expect(databaseURL == ["database.url: has an unterminated ${ — close it with }"])
    }

    @Test func sinkTableMustBePublished() {
        let root = Self.root(sinks: [Self.sink(tables: seq(s("public.orders"), s("public.users")))])
        #expect(Self.errors(root)
            == ["sinks[0].tables[1]: \"public.users\" is not in database.publication.tables — add it there"])
        // An unqualified name means public.
        #expect(Self.errors(Self.root(sinks: [Self.sink(tables: seq(s("orders")))])) == [])
    }

    @Test func anyTableWhenPublicationHasNoTables() throws {
        let database = map(["url": s("postgres://app@db/app"), "publication": map(["name": s("all")])])
        let config = try ConfigReader.read(Self.root(database: database, sinks: [Self.sink(tables: seq(s("x.y")))]),
                                           environment: [:]).get()
        #expect(config.sinks.first?.tables == [TableName(schema: "x", name: "y")])
    }

    @Test func duplicateSinkNames() {
        let root = Self.root(sinks: [Self.sink(name: "orders"), Self.sink(name: "other"), Self.sink(name: "orders")])
        #expect(Self.errors(root)
            == ["sinks[2].name: \"orders\" is used by another sink — sink names must be unique"])
    }

    @Test func multipleErrorsReportedTogether() {
        let root = ConfigNode.mapping([
            ("database", map(["url": s("postgres://app@db/app"), "slot": map(["name": s("Bad-Slot")])])),
            ("sinks", seq(
                Self.sink(name: "a", tables: nil, destination: Self.destination([("hosts", s("kafka:99999")),
                                                                                 ("compression", s("brotli"))])),
                Self.sink(name: "b", tables: nil, destination: Self.destination([("topic", s("."))]),
                          extra: [("actions", seq(s("insert"), s("upsert")))])
            )),
        ])
        #expect(Self.errors(root) == [
            "database.slot.name: \"Bad-Slot\" — slot names use only lower-case letters, digits and _ (at most 63)",
            "sinks[0].destination.hosts: \"kafka:99999\" — port must be 1-65535",
            "sinks[0].destination.compression: \"brotli\" — use none, gzip, snappy, lz4 or zstd",
            "sinks[1].actions[1]: \"upsert\" — use insert, update, delete, read or truncate",
            "sinks[1].destination.topic: \".\" — a topic cannot be named . or ..",
        ])
        if case .failure(let failure) = ConfigReader.read(root, environment: [:]) {
            #expect(failure.description.split(separator: "\n").count == 5)
        } else {
            Issue.record("expected the config to be refused")
        }
    }

    @Test func requiredSections() {
        #expect(Self.errors(.mapping([])) == [
            "database: is required",
            "sinks: is required: add at least one sink with a kafka destination",
        ])
        #expect(Self.errors(Self.root(sinks: [])) == ["sinks: must be a list with at least one sink"])
        #expect(Self.errors(.scalar("hello")) == ["must be a mapping of fields"])
        #expect(Self.errors(Self.root(database: map(["slot": map(["name": s("x")])])))
            == ["database: give url (postgres://user:password@host:port/dbname) or host and dbname"])
        #expect(Self.errors(Self.root(sinks: [map(["name": s("x")])]))
            == ["sinks[0].destination: is required: add a destination with type: kafka, hosts and topic"])
        #expect(Self.errors(Self.root(sinks: [map(["destination": Self.destination()])]))
            == ["sinks[0].name: is required: give the sink a name, e.g. orders-to-kafka"])
    }

    @Test func undeclaredFunctionsAreRefusedByName() {
        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("filter", s("functions/filter.lua"))])]))
            == ["sinks[0].filter: \"functions/filter.lua\" is not a declared function — declare it under functions: with type: filter, or write none"])
    }

    @Test func initialBackfillTrueOrAListOfTables() throws {
        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("initial_backfill", s("false"))])])) == [])
        let all = try ConfigReader.read(Self.root(sinks: [Self.sink(extra: [("initial_backfill", s("true"))])]), environment: Self.environment).get()
        #expect(all.sinks[0].initialBackfill == [])
        let listed = try ConfigReader.read(Self.root(sinks: [Self.sink(tables: nil, extra: [
            ("initial_backfill", seq(map(["table": s("public.users")]),
                                     map(["table": s("public.orders"), "type": s("partial"), "sort_column": s("updated_at"),
                                          "start_position": s("2026-01-01T00:00:00Z")]))),
            ("backfill", map(["max_query_ms": s("2000")])),
        ])]), environment: Self.environment).get()
        #expect(listed.sinks[0].initialBackfill == [
            BackfillSpec(table: TableName(schema: "public", name: "users")),
            BackfillSpec(table: TableName(schema: "public", name: "orders"), sortColumn: "updated_at", startPosition: "2026-01-01T00:00:00Z"),
        ])
        #expect(listed.sinks[0].backfillMaxQueryMS == 2000)
        #expect(Self.errors(Self.root(sinks: [Self.sink(tables: nil, extra: [("initial_backfill", seq(map(["table": s("public.t"), "type": s("partial")])))])]))
            == ["sinks[0].initial_backfill[0].sort_column: is required for a partial backfill: the column to read in order, e.g. updated_at",
                "sinks[0].initial_backfill[0].start_position: is required for a partial backfill: rows with sort_column >= it are sent"])
        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("initial_backfill", seq(map(["table": s("public.orders"), "type": s("half")])))])]))
            == ["sinks[0].initial_backfill[0].type: \"half\" — use full or partial"])
    }

    @Test func otherFieldErrors() {
        #expect(Self.errors(Self.root(database: Self.database().replacing("heartbeat_interval", with: s("soon"))))
            == ["database.heartbeat_interval: \"soon\" — write a duration such as 15s, 500ms or 2m (0 turns heartbeats off)"])
        #expect(Self.errors(Self.root(database: map(["url": s("postgres://db/app"), "port": s("70000")])))
            == ["database.port: \"70000\" — port must be 1-65535"])
        #expect(Self.errors(destination: [("tls", s("maybe"))])
            == ["sinks[0].destination.tls: \"maybe\" — use true or false"])
        #expect(Self.errors(Self.root(sinks: [Self.sink(tables: seq(s("a.b.c")))]))
            == ["sinks[0].tables[0]: \"a.b.c\" — write schema.table, e.g. public.orders"])
        #expect(Self.errors(Self.root(extra: [("console", map(["listen": s("nowhere")]))]))
            == ["console.listen: \"nowhere\" — write host:port, e.g. 127.0.0.1:7376"])
        #expect(Self.errors(destination: [("hosts", seq(s("a:1")))])
            == ["sinks[0].destination.hosts: must be a single value"])
    }
}

extension ConfigNode {
    /// The same mapping with `key`'s value replaced.
    func replacing(_ key: String, with value: ConfigNode) -> ConfigNode {
        guard case .mapping(let pairs) = self else { return self }
        return .mapping(pairs.map { $0.0 == key ? ($0.0, value) : $0 })
    }
}

// MARK: - Functions

extension ConfigReaderTests {
    static func function(_ name: String, _ type: String, _ fields: [(String, ConfigNode)] = []) -> ConfigNode {
        .mapping([("name", s(name)), ("type", s(type))] + fields)
    }

    static let paidOnlyCode = #"function filter(action, record) return record.status == "paid" end"#
    static let paidOnly = function("paid-only", "filter", [("code", s(paidOnlyCode))])
    static let shape = function("shape", "transform", [("code", s("function transform(action, record) return record end"))])
    static let byRegion = function("by-region", "routing", [("code", s(#"function route(action, record) return {topic = record.region} end"#))])
    static let city = function("city", "path", [("path", s("record.address.city"))])

    /// A root with `functions` declared and one sink using `uses` (filter:, transform:, routing:).
    static func root(functions: [ConfigNode], uses: [(String, ConfigNode)] = [],
                     destination: ConfigNode = destination()) -> ConfigNode {
        root(sinks: [sink(destination: destination, extra: uses)], extra: [("functions", .sequence(functions))])
    }

    static func read(_ root: ConfigNode, baseDirectory: String = ".") throws -> SluiceConfig {
        try ConfigReader.read(root, environment: environment, baseDirectory: baseDirectory).get()
    }

    static func errors(functions: [ConfigNode], uses: [(String, ConfigNode)] = [], baseDirectory: String = ".") -> [String] {
        switch ConfigReader.read(root(functions: functions, uses: uses), environment: environment, baseDirectory: baseDirectory) {
        case .success: return []
        case .failure(let failure): return failure.errors.map(\.description)
        }
    }

    /// A fresh folder holding `files` (relative path → contents).
    static func folder(_ files: [String: [UInt8]]) throws -> String {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-config-\(UUID().uuidString)").path
        for (path, bytes) in files {
            let full = (base as NSString).appendingPathComponent(path)
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: full))
        }
        return base
    }

    @Test func functionsAreDeclaredOnceAndUsedBySinks() throws {
        let lua = "function transform(action, record)\n  return {id = record.id}\nend\n"
        let base = try Self.folder(["functions/shape.lua": Array(lua.utf8)])
        defer { try? FileManager.default.removeItem(atPath: base) }
        let fromFile = Self.function("shape", "transform", [("file", s("functions/shape.lua")), ("description", s("id only")),
                                                            ("max_instructions", s("50_000")), ("max_memory_mb", s("4"))])
        let root = Self.root(sinks: [
            Self.sink(name: "paid", destination: Self.destination([("topic", nil)]),
                      extra: [("filter", s("paid-only")), ("transform", s("shape")), ("routing", s("by-region"))]),
            Self.sink(name: "cities", extra: [("transform", s("city"))]),
        ], extra: [("functions", seq(Self.paidOnly, fromFile, Self.city, Self.byRegion))])
        let config = try Self.read(root, baseDirectory: base)

        #expect(config.functions.map(\.name) == ["paid-only", "shape", "city", "by-region"])
        let paid = config.sinks[0]
        #expect(paid.filter == FunctionConfig(name: "paid-only", kind: .filter, code: Self.paidOnlyCode, origin: "functions[0].code"))
        #expect(paid.transform == FunctionConfig(name: "shape", kind: .transform, code: lua, origin: "functions/shape.lua",
                                                 maxInstructions: 50_000, maxMemoryMB: 4))
        #expect(paid.routing?.name == "by-region")
        #expect(paid.routing?.origin == "functions[3].code")
        #expect(paid.destination.topic == "")
        #expect(config.sinks[1].transform == FunctionConfig(name: "city", kind: .path, path: "record.address.city"))
        #expect(config.sinks[1].filter == nil)
        #expect(config.sinks[1].routing == nil)
    }

    @Test func absoluteFilePath() throws {
        let base = try Self.folder(["paid.lua": Array(Self.paidOnlyCode.utf8)])
        defer { try? FileManager.default.removeItem(atPath: base) }
        let file = (base as NSString).appendingPathComponent("paid.lua")
        let config = try Self.read(Self.root(functions: [Self.function("paid-only", "filter", [("file", s(file))])],
                                             uses: [("filter", s("paid-only"))]), baseDirectory: "/nonexistent")
        #expect(config.sinks[0].filter?.code == Self.paidOnlyCode)
        #expect(config.sinks[0].filter?.origin == file)
    }

    @Test func codeIsTakenAsWritten() throws {
        let code = #"function filter(action, record) return record.note ~= "${HOME} ${UNSET_VARIABLE}" end"#
        let config = try Self.read(Self.root(functions: [Self.function("notes", "filter", [("code", s(code))])],
                                             uses: [("filter", s("notes"))]))
        #expect(config.sinks[0].filter?.code == code)
    }

    @Test func noneMeansNoFunction() throws {
        let config = try Self.read(Self.root(functions: [Self.paidOnly, Self.shape, Self.byRegion],
                                             uses: [("filter", s("none")), ("transform", s("none")), ("routing", s("none"))]))
        #expect(config.sinks[0].filter == nil)
        #expect(config.sinks[0].transform == nil)
        #expect(config.sinks[0].routing == nil)
        #expect(!config.sinks[0].hasFunctions)
        #expect(config.functions.count == 3)
    }

    @Test func unknownFunctionNames() {
        #expect(Self.errors(functions: [Self.paidOnly], uses: [("filter", s("paid-onyl"))])
            == [#"sinks[0].filter: "paid-onyl" is not a declared function — did you mean paid-only?"#])
        #expect(Self.errors(functions: [Self.paidOnly], uses: [("transform", s("reshape"))])
            == [#"sinks[0].transform: "reshape" is not a declared function — declare it under functions: with type: transform or path, or write none"#])
        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("routing", s("by-region"))])]))
            == [#"sinks[0].routing: "by-region" is not a declared function — declare it under functions: with type: routing, or write none"#])
    }

    @Test func functionOfTheWrongKind() {
        #expect(Self.errors(functions: [Self.shape], uses: [("filter", s("shape"))])
            == [#"sinks[0].filter: "shape" is a transform function — this takes a filter function"#])
        #expect(Self.errors(functions: [Self.paidOnly], uses: [("transform", s("paid-only"))])
            == [#"sinks[0].transform: "paid-only" is a filter function — this takes a transform or path function"#])
        #expect(Self.errors(functions: [Self.city], uses: [("routing", s("city"))])
            == [#"sinks[0].routing: "city" is a path function — this takes a routing function"#])
    }

    @Test func functionNamesAreUnique() {
        #expect(Self.errors(functions: [Self.paidOnly, Self.shape, Self.function("paid-only", "path", [("path", s("record"))])])
            == [#"functions[2].name: "paid-only" is used by another function — function names must be unique"#])
    }

    @Test func functionNameIsRequired() {
        #expect(Self.errors(functions: [.mapping([("type", s("path")), ("path", s("record"))]),
                                        .mapping([("type", s("path")), ("path", s("record.id"))])])
            == ["functions[0].name: is required: give the function a name, e.g. paid-only",
                "functions[1].name: is required: give the function a name, e.g. paid-only"])
        #expect(Self.errors(functions: [Self.function("none", "path", [("path", s("record"))])])
            == [#"functions[0].name: "none" means no function — choose another name"#])
    }

    @Test func functionTypes() throws {
        let lookup = Self.function("lookup", "enrichment", [("code", s("SELECT id, name FROM accounts WHERE id = ANY($1)")),
                                                           ("statement_timeout", s("2s"))])
        let config = try Self.read(Self.root(functions: [lookup], uses: [("enrichment", s("lookup"))]))
        #expect(config.sinks[0].enrichment?.code == "SELECT id, name FROM accounts WHERE id = ANY($1)")
        #expect(config.sinks[0].enrichment?.statementTimeout == 2)
        #expect(config.functions[0].kind == .enrichment)
        #expect(Self.errors(functions: [Self.paidOnly], uses: [("enrichment", s("paid-only"))])
            == [#"sinks[0].enrichment: "paid-only" is a filter function — this takes a enrichment function"#])
        #expect(Self.errors(functions: [Self.function("lookup", "enrichment")])
            == ["functions[0]: give code: the SQL query, with $1 for the batch's primary-key values (e.g. WHERE u.id = ANY($1))"])
        #expect(Self.errors(functions: [Self.function("double", "map", [("code", s("x"))])])
            == [#"functions[0].type: "map" — use filter, transform, path, routing or enrichment"#])
        #expect(Self.errors(functions: [.mapping([("name", s("paid-only")), ("code", s(Self.paidOnlyCode))])])
            == ["functions[0].type: is required: filter, transform, path, routing or enrichment"])
        #expect(Self.errors(functions: [Self.function("paid-only", "filter", [("code", s(Self.paidOnlyCode)), ("langauge", s("lua"))])])
            == ["functions[0].langauge: unknown field — remove it"])
    }

    @Test func pathFunctions() {
        #expect(Self.errors(functions: [Self.function("city", "path", [("path", s("row.address.city"))])])
            == [#"functions[0].path: "row.address.city" — start with record, changes, action or metadata, then .field.field…"#])
        #expect(Self.errors(functions: [Self.function("city", "path", [("path", s("record..city"))])])
            == [#"functions[0].path: "record..city" — start with record, changes, action or metadata, then .field.field…"#])
        #expect(Self.errors(functions: [Self.function("city", "path")])
            == ["functions[0].path: is required: e.g. record, or record.address.city"])
        #expect(Self.errors(functions: [Self.function("city", "path", [("path", s("record.city")), ("code", s("return 1"))])])
            == ["functions[0].code: a path function has no code — give path: record.field, or use type: transform"])
        #expect(Self.errors(functions: [Self.function("shape", "transform", [("code", s("x")), ("path", s("record"))])])
            == ["functions[0].path: only path functions take a path — remove it, or use type: path"])
    }

    @Test func codeOrFile() {
        #expect(Self.errors(functions: [Self.function("paid-only", "filter", [("code", s(Self.paidOnlyCode)), ("file", s("paid.lua"))])])
            == ["functions[0]: give code or file, not both"])
        #expect(Self.errors(functions: [Self.function("paid-only", "filter")])
            == ["functions[0]: give code (a Lua chunk defining function filter(action, record, changes, metadata)) or file"])
        #expect(Self.errors(functions: [Self.function("by-region", "routing", [("code", seq(s("a")))])])
            == ["functions[0].code: must be text: the Lua chunk, e.g. code: |"])
    }

    @Test func unreadableFile() throws {
        let base = try Self.folder(["binary.lua": [0x66, 0xFF, 0xFE], "dir/keep": []])
        defer { try? FileManager.default.removeItem(atPath: base) }
        for file in ["functions/missing.lua", "binary.lua", "dir"] {
            // The sink's reference to the function is not reported again: the function's own error says it all.
            #expect(Self.errors(functions: [Self.function("paid-only", "filter", [("file", s(file))])],
                                uses: [("filter", s("paid-only"))], baseDirectory: base)
                == [#"functions[0].file: "\#(file)" — no readable UTF-8 file at \#(base)/\#(file); paths are relative to the configuration file's folder"#])
        }
    }

    @Test func budgets() {
        #expect(Self.errors(functions: [Self.function("paid-only", "filter", [("code", s("x")), ("max_instructions", s("10"))])])
            == [#"functions[0].max_instructions: "10" — must be a whole number from 1000 to 1000000000"#])
        #expect(Self.errors(functions: [Self.function("paid-only", "filter", [("code", s("x")), ("max_memory_mb", s("0"))])])
            == [#"functions[0].max_memory_mb: "0" — must be a whole number from 1 to 1024"#])
    }

    @Test func topicIsOptionalOnlyWithRouting() throws {
        let noTopic = Self.destination([("topic", nil)])
        let routed = try Self.read(Self.root(functions: [Self.byRegion], uses: [("routing", s("by-region"))], destination: noTopic))
        #expect(routed.sinks[0].destination.topic == "")
        #expect(routed.sinks[0].routing?.kind == .routing)

        let expected = ["sinks[0].destination.topic: is required: the Kafka topic to write to (or set a routing function that sets topic)"]
        #expect(Self.errors(Self.root(sinks: [Self.sink(destination: noTopic)])) == expected)
        #expect(Self.errors(Self.root(functions: [Self.byRegion], uses: [("routing", s("none"))], destination: noTopic)) == expected)
        #expect(Self.errors(Self.root(functions: [Self.paidOnly], uses: [("filter", s("paid-only"))], destination: noTopic)) == expected)

        let withTopic = try Self.read(Self.root(functions: [Self.byRegion], uses: [("routing", s("by-region"))]))
        #expect(withTopic.sinks[0].destination.topic == "orders")
    }
}

// MARK: - Sequin's sink syntax, annotations, value format, log format

extension ConfigReaderTests {
    @Test func sinkSourceIncludesAndExcludes() throws {
        let source = map(["include_schemas": seq(s("public"), s("sales")), "exclude_tables": seq(s("public.jobs"))])
        let config = try Self.read(Self.root(sinks: [Self.sink(tables: nil, extra: [("source", source)])]))
        let sink = config.sinks[0]
        #expect(sink.accepts(table: TableName(schema: "public", name: "orders"), action: .insert))
        #expect(sink.accepts(table: TableName(schema: "sales", name: "invoices"), action: .insert))
        #expect(!sink.accepts(table: TableName(schema: "public", name: "jobs"), action: .insert))
        #expect(!sink.accepts(table: TableName(schema: "private", name: "keys"), action: .insert))

        let excluding = map(["exclude_schemas": seq(s("audit")), "include_tables": seq(s("public.orders"), s("audit.log"))])
        let other = try Self.read(Self.root(sinks: [Self.sink(tables: nil, extra: [("source", excluding)])])).sinks[0]
        #expect(other.accepts(table: TableName(schema: "public", name: "orders"), action: .update))
        #expect(!other.accepts(table: TableName(schema: "audit", name: "log"), action: .update))
        #expect(!other.accepts(table: TableName(schema: "public", name: "users"), action: .update))

        let both = map(["include_schemas": seq(s("public")), "exclude_schemas": seq(s("audit"))])
        #expect(Self.errors(Self.root(sinks: [Self.sink(tables: nil, extra: [("source", both)])]))
            == ["sinks[0].source.exclude_schemas: cannot be set together with include_schemas — keep one of them"])
        #expect(Self.errors(Self.root(sinks: [Self.sink(tables: nil, extra: [("source", map(["include_table": seq(s("a"))]))])]))
            == ["sinks[0].source.include_table: unknown field — did you mean include_tables?"])
    }

    @Test func sequinTablesFormSetsGroupColumns() throws {
        let tables = seq(map(["name": s("public.orders"), "group_column_names": seq(s("account_id"))]))
        let config = try Self.read(Self.root(sinks: [Self.sink(tables: tables)]))
        #expect(config.sinks[0].groupColumns == [TableName(schema: "public", name: "orders"): ["account_id"]])
        #expect(config.sinks[0].tables.isEmpty) // Sequin's form configures, `source` selects
        #expect(Self.errors(Self.root(sinks: [Self.sink(tables: tables, extra: [("message_grouping", s("false"))])]))
            == ["sinks[0].message_grouping: is false while group columns are set for public.orders — remove them, or turn grouping on"])
        #expect(Self.errors(Self.root(sinks: [Self.sink(tables: seq(map(["group_column_names": seq(s("a"))])))]))
            == ["sinks[0].tables[0].name: is required: schema.table, e.g. public.orders"])
    }

    @Test func statusAnnotationsAndValueFormat() throws {
        let annotations = map(["team": s("billing"), "tier": s("2"), "pager": s("true"), "tags": seq(s("a"), s("b")),
                               "owner": map(["name": s("Ada \"A\"")])])
        let config = try Self.read(Self.root(
            database: Self.database(extra: [("name", s("prod-db")), ("annotations", map(["region": s("eu-1")]))]),
            sinks: [Self.sink(extra: [("status", s("disabled")), ("annotations", annotations), ("value_format", s("sequin"))])]))
        #expect(config.database.name == "prod-db")
        #expect(config.database.annotations == #"{"region":"eu-1"}"#)
        #expect(!config.sinks[0].enabled)
        #expect(config.sinks[0].annotations == #"{"team":"billing","tier":2,"pager":true,"tags":["a","b"],"owner":{"name":"Ada \"A\""}}"#)
        #expect(config.sinks[0].valueFormat == .sequin)
        let defaults = try Self.read(Self.root())
        #expect(defaults.sinks[0].enabled && defaults.sinks[0].annotations == "{}" && defaults.sinks[0].valueFormat == .sluice)
        #expect(defaults.database.name == nil && defaults.database.annotations == "{}" && defaults.logFormat == .text)

        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("status", s("paused"))])]))
            == [#"sinks[0].status: "paused" — use active or disabled"#])
        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("value_format", s("debezium"))])]))
            == [#"sinks[0].value_format: "debezium" — use sluice (exact JSON values) or sequin (Sequin's forms)"#])
        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("annotations", s("team"))])]))
            == ["sinks[0].annotations: must be a mapping, e.g. annotations: {team: billing}"])
    }

    @Test func logFormat() throws {
        #expect(try Self.read(Self.root(extra: [("log_format", s("json"))])).logFormat == .json)
        #expect(Self.errors(Self.root(extra: [("log_format", s("xml"))])) == [#"log_format: "xml" — use text or json"#])
    }
}
