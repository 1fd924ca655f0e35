import Foundation
import Testing
@testable import SluiceCore

/// Configurations that are accepted: what each field becomes, and the defaults.
@Suite("ConfigReader")
struct ConfigReaderTests: ConfigFixtures {
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

    @Test func anyTableWhenPublicationHasNoTables() throws {
        let database = map(["url": s("postgres://app@db/app"), "publication": map(["name": s("all")])])
        let config = try ConfigReader.read(Self.root(database: database, sinks: [Self.sink(tables: seq(s("x.y")))]),
                                           environment: [:]).get()
        #expect(config.sinks.first?.tables == [TableName(schema: "x", name: "y")])
    }

    @Test func underscoresInNumbers() throws {
        let config = try ConfigReader.read(
            Self.root(sinks: [Self.sink(destination: Self.destination([("max_ack_pending", s("10_000")),
                                                                      ("batch_size", s("1_000"))]))]),
            environment: Self.environment).get()
        #expect(config.sinks.first?.destination.maxAckPending == 10_000)
        #expect(config.sinks.first?.destination.batchSize == 1_000)
    }

    // MARK: - Sequin's sink syntax, annotations, value format, log format

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
        #expect(Self.problems(Self.root(sinks: [Self.sink(tables: nil, extra: [("source", both)])]))
            == [Problem(.conflict, "sinks[0].source.exclude_schemas")])
        #expect(Self.problems(Self.root(sinks: [Self.sink(tables: nil, extra: [("source", map(["include_table": seq(s("a"))]))])]))
            == [Problem(.unknownField, "sinks[0].source.include_table", suggestion: "include_tables")])
    }

    @Test func sequinTablesFormSetsGroupColumns() throws {
        let tables = seq(map(["name": s("public.orders"), "group_column_names": seq(s("account_id"))]))
        let config = try Self.read(Self.root(sinks: [Self.sink(tables: tables)]))
        #expect(config.sinks[0].groupColumns == [TableName(schema: "public", name: "orders"): ["account_id"]])
        #expect(config.sinks[0].tables.isEmpty) // Sequin's form configures, `source` selects
        #expect(Self.problems(Self.root(sinks: [Self.sink(tables: tables, extra: [("message_grouping", s("false"))])]))
            == [Problem(.conflict, "sinks[0].message_grouping")])
        #expect(Self.problems(Self.root(sinks: [Self.sink(tables: seq(map(["group_column_names": seq(s("a"))])))]))
            == [Problem(.missingField, "sinks[0].tables[0].name")])
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

        #expect(Self.problems(Self.root(sinks: [Self.sink(extra: [("status", s("paused"))])]))
            == [Problem(.invalidValue, "sinks[0].status", "paused")])
        #expect(Self.problems(Self.root(sinks: [Self.sink(extra: [("value_format", s("debezium"))])]))
            == [Problem(.invalidValue, "sinks[0].value_format", "debezium")])
        #expect(Self.problems(Self.root(sinks: [Self.sink(extra: [("annotations", s("team"))])]))
            == [Problem(.wrongType, "sinks[0].annotations")])
    }

    @Test func logFormat() throws {
        #expect(try Self.read(Self.root(extra: [("log_format", s("json"))])).logFormat == .json)
        #expect(Self.problems(Self.root(extra: [("log_format", s("xml"))])) == [Problem(.invalidValue, "log_format", "xml")])
    }
}
