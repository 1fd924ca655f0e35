import Foundation
import Testing
@testable import SluiceCore

/// Configurations that are refused: each problem's code, field and quoted value, in the order reported.
@Suite("Config refusals")
struct ConfigRefusalTests: ConfigFixtures {
    static let hosts = "sinks[0].destination.hosts"
    static let topic = "sinks[0].destination.topic"

    @Test func portOutOfRange() {
        #expect(Self.problems(destination: [("hosts", s("kafka:99999"))]) == [Problem(.outOfRange, Self.hosts, "kafka:99999")])
        #expect(Self.problems(destination: [("hosts", s("kafka:0"))]) == [Problem(.outOfRange, Self.hosts, "kafka:0")])
    }

    @Test func hostWithoutPort() {
        #expect(Self.problems(destination: [("hosts", s("kafka"))]) == [Problem(.invalidValue, Self.hosts, "kafka")])
        #expect(Self.problems(destination: [("hosts", s("::1:9092"))]) == [Problem(.invalidValue, Self.hosts, "::1:9092")])
        #expect(Self.problems(destination: [("hosts", s(""))]) == [Problem(.empty, Self.hosts)])
    }

    @Test func unknownFieldSuggestsNearest() {
        #expect(Self.problems(destination: [("topic", nil), ("topc", s("orders"))]) == [
            Problem(.unknownField, "sinks[0].destination.topc", suggestion: "topic"),
            Problem(.missingField, Self.topic),
        ])
        #expect(Self.problems(Self.root(extra: [("sinkz", seq())])) == [Problem(.unknownField, "sinkz", suggestion: "sinks")])
        #expect(Self.problems(Self.root(extra: [("completely_unrelated", s("1"))])) == [Problem(.unknownField, "completely_unrelated")])
    }

    @Test func missingTopic() {
        #expect(Self.problems(destination: [("topic", nil)]) == [Problem(.missingField, Self.topic)])
    }

    @Test func topicRules() {
        let long = String(repeating: "a", count: 256)
        #expect(Self.problems(destination: [("topic", s(long))]) == [Problem(.outOfRange, Self.topic, long)])
        #expect(TopicNameProblem(topic: long) == .tooLong(bytes: 256))
        #expect(Self.problems(destination: [("topic", s(String(repeating: "a", count: 255)))]) == [])
        for name in [".", ".."] {
            #expect(Self.problems(destination: [("topic", s(name))]) == [Problem(.invalidValue, Self.topic, name)])
            #expect(TopicNameProblem(topic: name) == .dots)
        }
        for name in ["my topic", "orders/v2"] {
            #expect(Self.problems(destination: [("topic", s(name))]) == [Problem(.invalidValue, Self.topic, name)])
            #expect(TopicNameProblem(topic: name) == .illegalCharacter)
        }
        #expect(Self.problems(destination: [("topic", s(""))]) == [Problem(.empty, Self.topic, "")])
        #expect(TopicNameProblem(topic: "") == .empty)
        #expect(Self.problems(destination: [("topic", s("Orders.v2_final-1"))]) == [])
        #expect(TopicNameProblem(topic: "Orders.v2_final-1") == nil)
    }

    @Test func usernameWithoutPassword() {
        #expect(Self.problems(destination: [("username", s("app")), ("sasl_mechanism", s("plain"))])
            == [Problem(.missingField, "sinks[0].destination.password")])
        #expect(Self.problems(destination: [("password", s("${KAFKA_PASSWORD}")), ("sasl_mechanism", s("plain"))]) == [
            Problem(.missingField, "sinks[0].destination.username"),
            Problem(.missingField, "sinks[0].destination.sasl_mechanism"),
        ])
    }

    @Test func credentialsNeedAMechanism() {
        #expect(Self.problems(destination: [("username", s("app")), ("password", s("${KAFKA_PASSWORD}"))])
            == [Problem(.missingField, "sinks[0].destination.sasl_mechanism")])
    }

    @Test func invalidSASLMechanism() {
        #expect(Self.problems(destination: [("username", s("app")), ("password", s("x")), ("sasl_mechanism", s("scram"))])
            == [Problem(.invalidValue, "sinks[0].destination.sasl_mechanism", "scram")])
    }

    @Test func invalidCompression() {
        #expect(Self.problems(destination: [("compression", s("brotli"))])
            == [Problem(.invalidValue, "sinks[0].destination.compression", "brotli")])
    }

    @Test func batchSizeRange() throws {
        #expect(Self.problems(destination: [("batch_size", s("0"))]) == [Problem(.outOfRange, "sinks[0].destination.batch_size", "0")])
        #expect(Self.problems(destination: [("batch_size", s("many"))]) == [Problem(.invalidValue, "sinks[0].destination.batch_size", "many")])
        #expect(Self.problems(destination: [("max_ack_pending", s("0"))])
            == [Problem(.outOfRange, "sinks[0].destination.max_ack_pending", "0")])
        // The bounds the message names: 1 to 10000, and 1 to 1000000.
        #expect(Self.problems(destination: [("batch_size", s("10001"))])
            == [Problem(.outOfRange, "sinks[0].destination.batch_size", "10001")])
        #expect(Self.problems(destination: [("max_ack_pending", s("1000001"))])
            == [Problem(.outOfRange, "sinks[0].destination.max_ack_pending", "1000001")])
        let largest = try Self.read(Self.root(sinks: [Self.sink(destination: Self.destination([
            ("batch_size", s("10000")), ("max_ack_pending", s("1000000")),
        ]))])).sinks[0].destination
        #expect(largest.batchSize == 10_000 && largest.maxAckPending == 1_000_000)
    }

    @Test func wrongDestinationType() {
        #expect(Self.problems(destination: [("type", s("s3"))]) == [Problem(.invalidValue, "sinks[0].destination.type", "s3")])
        #expect(Self.problems(destination: [("type", nil)]) == [Problem(.missingField, "sinks[0].destination.type")])
    }

    @Test func unsetEnvironmentVariableNamesVariableAndField() {
        #expect(Self.problems(destination: [("topic", s("${TOPIC_NAME}"))]) == [Problem(.environment, Self.topic, "TOPIC_NAME")])
    }

    @Test func unsetPasswordVariableIsTheOnlyError() {
        // The user did give a password; the only problem is the missing variable.
        #expect(Self.problems(destination: [("username", s("app")), ("password", s("${KAFKA_PASSWORD}")),
                                            ("sasl_mechanism", s("plain"))],
                              environment: ["PGPASSWORD": "x"])
            == [Problem(.environment, "sinks[0].destination.password", "KAFKA_PASSWORD")])
    }

    @Test func passwordsNeverAppearInErrors() {
        let secret = "hunter2-super-secret"
        let environment = ["PGPASSWORD": secret, "KAFKA_PASSWORD": secret]
        /// Neither the printed line nor the quoted value holds the secret.
        func expectNoSecret(_ errors: [ConfigError]) {
            for error in errors {
                #expect(!error.description.contains(secret))
                #expect(error.value?.contains(secret) != true)
            }
        }
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
        let errors = Self.errors(root, environment: environment)
        #expect(errors.count >= 5)
        expectNoSecret(errors)

        // A literal secret in a url that is refused.
        let badURL = Self.errors(Self.root(database: map(["url": s("mysql://app:\(secret)@db/app")])))
        #expect(badURL.map(Problem.init) == [Problem(.invalidValue, "database.url")])
        expectNoSecret(badURL)

        // A literal secret with a broken ${ in it.
        let unterminated = Self.errors(Self.root(sinks: [Self.sink(destination: Self.destination([
            ("username", s("app")), ("password", s("\(secret)${oops")), ("sasl_mechanism", s("plain")),
        ]))]))
        #expect(unterminated.map(Problem.init).contains(Problem(.environment, "sinks[0].destination.password")))
        expectNoSecret(unterminated)

        let databasePassword = Self.errors(Self.root(database: map([
            "host": s("db"), "dbname": s("app"), "password": s("\(secret)${"),
        ])))
        #expect(databasePassword.map(Problem.init) == [Problem(.environment, "database.password")])
        expectNoSecret(databasePassword)
        let databaseURL = Self.errors(Self.root(database: map(["url": s("postgres://app:\(secret)${@db/app")])))
        #expect(databaseURL.map(Problem.init) == [Problem(.environment, "database.url")])
        expectNoSecret(databaseURL)
    }

    @Test func sinkTableMustBePublished() {
        let root = Self.root(sinks: [Self.sink(tables: seq(s("public.orders"), s("public.users")))])
        #expect(Self.problems(root) == [Problem(.conflict, "sinks[0].tables[1]", "public.users")])
        // An unqualified name means public.
        #expect(Self.problems(Self.root(sinks: [Self.sink(tables: seq(s("orders")))])) == [])
    }

    @Test func duplicateSinkNames() {
        let root = Self.root(sinks: [Self.sink(name: "orders"), Self.sink(name: "other"), Self.sink(name: "orders")])
        #expect(Self.problems(root) == [Problem(.duplicate, "sinks[2].name", "orders")])
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
        #expect(Self.problems(root) == [
            Problem(.invalidValue, "database.slot.name", "Bad-Slot"),
            Problem(.outOfRange, Self.hosts, "kafka:99999"),
            Problem(.invalidValue, "sinks[0].destination.compression", "brotli"),
            Problem(.invalidValue, "sinks[1].actions[1]", "upsert"),
            Problem(.invalidValue, "sinks[1].destination.topic", "."),
        ])
        if case .failure(let failure) = ConfigReader.read(root, environment: [:]) {
            #expect(failure.description.split(separator: "\n").count == 5)
        } else {
            Issue.record("expected the config to be refused")
        }
    }

    @Test func requiredSections() {
        #expect(Self.problems(.mapping([])) == [Problem(.missingField, "database"), Problem(.missingField, "sinks")])
        #expect(Self.problems(Self.root(sinks: [])) == [Problem(.empty, "sinks")])
        #expect(Self.problems(.scalar("hello")) == [Problem(.wrongType, "")])
        #expect(Self.problems(Self.root(database: map(["slot": map(["name": s("x")])]))) == [Problem(.missingField, "database")])
        #expect(Self.problems(Self.root(sinks: [map(["name": s("x")])])) == [Problem(.missingField, "sinks[0].destination")])
        #expect(Self.problems(Self.root(sinks: [map(["destination": Self.destination()])])) == [Problem(.missingField, "sinks[0].name")])
    }

    @Test func undeclaredFunctionsAreRefusedByName() {
        #expect(Self.problems(Self.root(sinks: [Self.sink(extra: [("filter", s("functions/filter.lua"))])]))
            == [Problem(.undeclaredFunction, "sinks[0].filter", "functions/filter.lua")])
    }

    @Test func initialBackfillTrueOrAListOfTables() throws {
        #expect(Self.problems(Self.root(sinks: [Self.sink(extra: [("initial_backfill", s("false"))])])) == [])
        let all = try Self.read(Self.root(sinks: [Self.sink(extra: [("initial_backfill", s("true"))])]))
        #expect(all.sinks[0].initialBackfill == [])
        let listed = try Self.read(Self.root(sinks: [Self.sink(tables: nil, extra: [
            ("initial_backfill", seq(map(["table": s("public.users")]),
                                     map(["table": s("public.orders"), "type": s("partial"), "sort_column": s("updated_at"),
                                          "start_position": s("2026-01-01T00:00:00Z")]))),
            ("backfill", map(["max_query_ms": s("2000")])),
        ])]))
        #expect(listed.sinks[0].initialBackfill == [
            BackfillSpec(table: TableName(schema: "public", name: "users")),
            BackfillSpec(table: TableName(schema: "public", name: "orders"), sortColumn: "updated_at", startPosition: "2026-01-01T00:00:00Z"),
        ])
        #expect(listed.sinks[0].backfillMaxQueryMS == 2000)
        #expect(Self.problems(Self.root(sinks: [Self.sink(tables: nil, extra: [
            ("initial_backfill", seq(map(["table": s("public.t"), "type": s("partial")]))),
        ])])) == [
            Problem(.missingField, "sinks[0].initial_backfill[0].sort_column"),
            Problem(.missingField, "sinks[0].initial_backfill[0].start_position"),
        ])
        #expect(Self.problems(Self.root(sinks: [Self.sink(extra: [("initial_backfill", seq(map(["table": s("public.orders"), "type": s("half")])))])]))
            == [Problem(.invalidValue, "sinks[0].initial_backfill[0].type", "half")])
    }

    @Test func otherFieldErrors() {
        #expect(Self.problems(Self.root(database: Self.database().replacing("heartbeat_interval", with: s("soon"))))
            == [Problem(.invalidValue, "database.heartbeat_interval", "soon")])
        #expect(Self.problems(Self.root(database: map(["url": s("postgres://db/app"), "port": s("70000")])))
            == [Problem(.outOfRange, "database.port", "70000")])
        #expect(Self.problems(destination: [("tls", s("maybe"))]) == [Problem(.invalidValue, "sinks[0].destination.tls", "maybe")])
        #expect(Self.problems(Self.root(sinks: [Self.sink(tables: seq(s("a.b.c")))])) == [Problem(.invalidValue, "sinks[0].tables[0]", "a.b.c")])
        #expect(Self.problems(Self.root(extra: [("console", map(["listen": s("nowhere")]))])) == [Problem(.invalidValue, "console.listen", "nowhere")])
        #expect(Self.problems(destination: [("hosts", seq(s("a:1")))]) == [Problem(.wrongType, Self.hosts)])
    }
}
