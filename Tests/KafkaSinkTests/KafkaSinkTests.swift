import KafkaMock
import KafkaSink
import SluiceCore
import Testing

struct KafkaPartitionerTests {
    /// The Java client's own test vectors (Kafka's UtilsTest.testMurmur2).
    @Test(arguments: [
        ("21", Int32(-973_932_308)), ("foobar", -790_332_482), ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829), ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        ("abc", 479_470_107),
    ])
    func murmur2MatchesJava(key: String, expected: Int32) {
        #expect(Int32(bitPattern: KafkaPartitioner.murmur2(Array(key.utf8))) == expected)
    }
}

struct KafkaSettingsTests {
    func properties(_ destination: KafkaDestination) -> [String: String] {
        Dictionary(KafkaSettings.producerProperties(for: destination, clientID: "c"), uniquingKeysWith: { $1 })
    }

    @Test func producerKeepsOrderAndWaitsForAllReplicas() {
        let p = properties(KafkaDestination(hosts: [HostPort(host: "a", port: 1), HostPort(host: "::1", port: 9092)], topic: "t"))
        #expect(p["bootstrap.servers"] == "a:1,[::1]:9092")
        #expect(p["enable.idempotence"] == "true")
        #expect(p["acks"] == "all")
        #expect(p["partitioner"] == "murmur2_random")
        #expect(p["security.protocol"] == "plaintext")
        #expect(p["compression.type"] == "none")
        #expect(p["batch.num.messages"] == "200")
    }

    @Test func saslAndTLS() {
        let p = properties(KafkaDestination(hosts: [HostPort(host: "a", port: 1)], topic: "t", tls: .init(verify: false), username: "u",
                                            password: "p", saslMechanism: .scram_sha_512, compression: .gzip))
        #expect(p["security.protocol"] == "sasl_ssl")
        #expect(p["sasl.mechanisms"] == "SCRAM-SHA-512")
        #expect(p["sasl.username"] == "u")
        #expect(p["enable.ssl.certificate.verification"] == "false")
        #expect(p["compression.type"] == "gzip")
    }
}
