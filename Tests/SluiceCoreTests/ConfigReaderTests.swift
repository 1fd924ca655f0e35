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
            "sinks[0].destination.topic: is required: the Kafka topic to write to",
        ])
        #expect(Self.errors(Self.root(extra: [("sinkz", seq())])) == ["sinkz: unknown field — did you mean sinks?"])
        #expect(Self.errors(Self.root(extra: [("completely_unrelated", s("1"))]))
            == ["completely_unrelated: unknown field — remove it"])
    }

    @Test func missingTopic() {
        #expect(Self.errors(destination: [("topic", nil)])
            == ["sinks[0].destination.topic: is required: the Kafka topic to write to"])
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

    @Test func laterFeaturesAreRefusedByName() {
        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("filter", s("functions/filter.lua"))])]))
            == ["sinks[0].filter: is not supported by this version of Sluice yet — remove it"])
        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("initial_backfill", s("true"))])]))
            == ["sinks[0].initial_backfill: backfills are not supported by this version of Sluice yet — set it to false or remove it"])
        #expect(Self.errors(Self.root(sinks: [Self.sink(extra: [("initial_backfill", s("false"))])])) == [])
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
