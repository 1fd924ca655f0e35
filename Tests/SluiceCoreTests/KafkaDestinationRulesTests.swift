import Foundation
import SluiceCore
import Testing

/// The rules of a Kafka destination that came with TLS files, message size and sink delivery settings.
@Suite("Kafka destination rules")
struct KafkaDestinationRulesTests {
    static func s(_ text: String) -> ConfigNode { .scalar(text) }

    static func root(destination extra: [(String, ConfigNode)], sink sinkExtra: [(String, ConfigNode)] = []) -> ConfigNode {
        .mapping([
            ("database", .mapping([("url", s("postgres://app@127.0.0.1:5432/app"))])),
            ("sinks", .sequence([.mapping([
                ("name", s("orders")),
                ("destination", .mapping([("type", s("kafka")), ("hosts", s("127.0.0.1:9092")), ("topic", s("orders"))] + extra)),
            ] + sinkExtra)])),
        ])
    }

    static func read(_ root: ConfigNode) -> Result<SluiceConfig, ConfigErrors> {
        ConfigReader.read(root, environment: [:])
    }

    static func problems(_ root: ConfigNode) -> [Problem] {
        if case .failure(let failure) = read(root) { return failure.errors.map(Problem.init) }
        return []
    }

    func temporaryFile() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pem-\(UUID().uuidString).pem").path
        try "-----BEGIN CERTIFICATE-----\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func tlsTrueMeansEncryptedWithoutVerification() throws {
        let config = try Self.read(Self.root(destination: [("tls", Self.s("true"))])).get()
        #expect(config.sinks[0].destination.tls == KafkaDestination.TLS(verify: false))
        let off = try Self.read(Self.root(destination: [("tls", Self.s("false"))])).get()
        #expect(off.sinks[0].destination.tls == nil)
    }

    @Test func tlsObjectVerifiesByDefault() throws {
        let ca = try temporaryFile(), cert = try temporaryFile(), key = try temporaryFile()
        let config = try Self.read(Self.root(destination: [("tls", .mapping([
            ("ca_file", Self.s(ca)), ("cert_file", Self.s(cert)), ("key_file", Self.s(key)),
        ]))])).get()
        #expect(config.sinks[0].destination.tls == KafkaDestination.TLS(verify: true, caFile: ca, certFile: cert, keyFile: key))
    }

    @Test func tlsFilesMustExistAndCertNeedsKey() throws {
        let cert = try temporaryFile()
        #expect(Self.problems(Self.root(destination: [("tls", .mapping([("ca_file", Self.s("/nowhere/ca.pem"))]))]))
            == [Problem(.unreadableFile, "sinks[0].destination.tls.ca_file", "/nowhere/ca.pem")])
        #expect(Self.problems(Self.root(destination: [("tls", .mapping([("cert_file", Self.s(cert))]))]))
            == [Problem(.missingField, "sinks[0].destination.tls.key_file")])
        #expect(Self.problems(Self.root(destination: [("tls", .mapping([("verfy", Self.s("true"))]))]))
            == [Problem(.unknownField, "sinks[0].destination.tls.verfy", suggestion: "verify")])
    }

    @Test func maxMessageBytes() throws {
        let config = try Self.read(Self.root(destination: [])).get()
        #expect(config.sinks[0].destination.maxMessageBytes == 1_000_000)
        let larger = try Self.read(Self.root(destination: [("max_message_bytes", Self.s("5_000_000"))])).get()
        #expect(larger.sinks[0].destination.maxMessageBytes == 5_000_000)
        #expect(Self.problems(Self.root(destination: [("max_message_bytes", Self.s("10"))]))
            == [Problem(.outOfRange, "sinks[0].destination.max_message_bytes", "10")])
        // The bounds the message names: 1000 to 100000000.
        #expect(Self.problems(Self.root(destination: [("max_message_bytes", Self.s("100_000_001"))]))
            == [Problem(.outOfRange, "sinks[0].destination.max_message_bytes", "100_000_001")])
        for bytes in [1_000, 100_000_000] {
            let config = try Self.read(Self.root(destination: [("max_message_bytes", Self.s("\(bytes)"))])).get()
            #expect(config.sinks[0].destination.maxMessageBytes == bytes)
        }
    }

    @Test func sinkDeliverySettings() throws {
        let config = try Self.read(Self.root(destination: [], sink: [
            ("park_after", Self.s("30s")),
            ("group_columns", .mapping([("public.orders", .sequence([Self.s("customer_id")]))])),
        ])).get()
        let sink = config.sinks[0]
        #expect(sink.parkAfter == 30)
        #expect(sink.messageGrouping)
        let ungrouped = try Self.read(Self.root(destination: [], sink: [("message_grouping", Self.s("false"))])).get()
        #expect(ungrouped.sinks[0].messageGrouping == false)
        #expect(sink.groupColumns == [TableName(schema: "public", name: "orders"): ["customer_id"]])
        #expect(try Self.read(Self.root(destination: [])).get().sinks[0].parkAfter == 120)
        #expect(Self.problems(Self.root(destination: [], sink: [("park_after", Self.s("soon"))]))
            == [Problem(.invalidValue, "sinks[0].park_after", "soon")])
        // At least 1s, as the message says.
        #expect(Self.problems(Self.root(destination: [], sink: [("park_after", Self.s("999ms"))]))
            == [Problem(.outOfRange, "sinks[0].park_after", "999ms")])
        #expect(try Self.read(Self.root(destination: [], sink: [("park_after", Self.s("1s"))])).get().sinks[0].parkAfter == 1)
        #expect(Self.problems(Self.root(destination: [], sink: [("group_columns", Self.s("customer_id"))]))
            == [Problem(.wrongType, "sinks[0].group_columns")])
    }

    @Test func publishViaPartitionRootDefaultsOn() throws {
        #expect(try Self.read(Self.root(destination: [])).get().database.publishViaPartitionRoot)
    }
}
