import KafkaMock
@testable import KafkaSink
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

struct KafkaStatisticsTests {
    /// A cut-down statistics document in librdkafka's own layout (two topics; brokers carry windows too).
    static let statistics = #"""
        {"name":"sluice-s#producer-1","type":"producer","ts":1,"msg_cnt":0,
         "brokers":{"127.0.0.1:9092/1":{"name":"127.0.0.1:9092/1","rtt":{"min":100,"max":9000,"avg":500,"p99":8000},
           "int_latency":{"min":1,"max":70000,"avg":20}}},
         "topics":{
           "orders":{"topic":"orders","age":1000,"batchsize":{"min":90,"max":950000,"avg":4000},
             "batchcnt":{"min":1,"max":37,"avg":5,"sum":90,"stddev":2,"p50":4,"p99":30,"hdrsize":100,"cnt":18},
             "partitions":{"0":{"partition":0,"msgq_cnt":0}}},
           "audit":{"topic":"audit","age":1000,"batchsize":{"min":90,"max":95000,"avg":400},
             "batchcnt":{"min":1,"max":120,"avg":50,"sum":900,"stddev":20,"p50":40,"p99":110,"hdrsize":100,"cnt":18},
             "partitions":{}}}}
        """#

    func largest(_ text: String) -> Int? {
        Array(text.utf8).withUnsafeBytes { KafkaEventPoller.largestBatchCount(inStatistics: $0) }
    }

    @Test func theLargestBatchCountOfAllTopicsIsFound() {
        #expect(largest(Self.statistics) == 120)
    }

    @Test func batchSizesAndBrokerWindowsAreNotMistakenForBatchCounts() {
        // batchsize max (950000) and the brokers' rtt max (9000) are larger: neither may be taken.
        let onlyOrders = Self.statistics.replacingOccurrences(of: #""max":120"#, with: #""max":3"#)
        #expect(largest(onlyOrders) == 37)
    }

    @Test func statisticsWithoutTopicsGiveNothing() {
        #expect(largest(#"{"name":"p","topics":{}}"#) == nil)
        #expect(largest("") == nil)
        #expect(largest(#"{"batchcnt":{"min":1,"max":"#) == nil)
    }
}
