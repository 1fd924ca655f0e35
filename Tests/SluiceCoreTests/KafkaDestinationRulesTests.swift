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

    static func errors(_ root: ConfigNode) -> [String] {
        if case .failure(let failure) = read(root) { return failure.errors.map(\.description) }
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
        #expect(Self.errors(Self.root(destination: [("tls", .mapping([("ca_file", Self.s("/nowhere/ca.pem"))]))]))
            == ["sinks[0].destination.tls.ca_file: \"/nowhere/ca.pem\" — no readable file there; give the path of a PEM file"])
        #expect(Self.errors(Self.root(destination: [("tls", .mapping([("cert_file", Self.s(cert))]))]))
            == ["sinks[0].destination.tls.key_file: cert_file and key_file go together — give both for a client certificate, or neither"])
        #expect(Self.errors(Self.root(destination: [("tls", .mapping([("verfy", Self.s("true"))]))]))
            == ["sinks[0].destination.tls.verfy: unknown field — did you mean verify?"])
    }

    @Test func maxMessageBytes() throws {
        let config = try Self.read(Self.root(destination: [])).get()
        #expect(config.sinks[0].destination.maxMessageBytes == 1_000_000)
        let larger = try Self.read(Self.root(destination: [("max_message_bytes", Self.s("5_000_000"))])).get()
        #expect(larger.sinks[0].destination.maxMessageBytes == 5_000_000)
        #expect(Self.errors(Self.root(destination: [("max_message_bytes", Self.s("10"))]))
            == ["sinks[0].destination.max_message_bytes: \"10\" — must be a whole number from 1000 to 100000000"])
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
        #expect(Self.errors(Self.root(destination: [], sink: [("park_after", Self.s("soon"))]))
            == ["sinks[0].park_after: \"soon\" — write a duration of at least 1s, such as 2m"])
        #expect(Self.errors(Self.root(destination: [], sink: [("group_columns", Self.s("customer_id"))]))
            == ["sinks[0].group_columns: must map tables to column lists, e.g. public.orders: [customer_id]"])
    }

    @Test func publishViaPartitionRootDefaultsOn() throws {
        #expect(try Self.read(Self.root(destination: [])).get().database.publishViaPartitionRoot)
    }
}
