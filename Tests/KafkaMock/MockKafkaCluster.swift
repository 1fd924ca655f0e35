import CRdKafka
import KafkaSink
import Synchronization

/// librdkafka's built-in mock cluster: real Kafka protocol brokers on 127.0.0.1 whose faults a
/// test controls (request errors, brokers going down). Test support only: not part of the `sluice` binary.
public final class MockKafkaCluster: @unchecked Sendable {
    let client: OpaquePointer
    let cluster: OpaquePointer

    /// Starts `brokers` mock brokers (ids 1…brokers) on free loopback ports.
    public init(brokers: Int) throws(KafkaError) {
        let conf = rd_kafka_conf_new()
        var errorText = [CChar](repeating: 0, count: 512)
        // The hosting client bootstraps to its own mock brokers, so it has nothing to complain about.
        rd_kafka_conf_set(conf, "test.mock.num.brokers", String(brokers), &errorText, errorText.count)
        rd_kafka_conf_set(conf, "log_level", "0", &errorText, errorText.count)
        guard let client = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errorText, errorText.count) else {
            throw KafkaError(configuration: "could not create the mock cluster's client: \(String(decoding: errorText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        guard let cluster = rd_kafka_handle_mock_cluster(client) else {
            rd_kafka_destroy(client)
            throw KafkaError(configuration: "could not start a mock Kafka cluster")
        }
        self.client = client
        self.cluster = cluster
    }

    deinit {
        rd_kafka_destroy(client) // destroys the cluster it hosts
    }

    /// `host:port,…` of the mock brokers.
    public var bootstrapServers: String { String(cString: rd_kafka_mock_cluster_bootstraps(cluster)) }

    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaError) {
        let err = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor))
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: err.rawValue) }
    }

    public func setLeader(topic: String, partition: Int32, broker: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_partition_set_leader(cluster, topic, partition, broker)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: err.rawValue) }
    }

    /// The next `errors.count` Produce requests (to any broker) fail with these codes, in order.
    public func failNextProduceRequests(with errors: [Int32]) {
        var codes = errors.map { rd_kafka_resp_err_t(rawValue: $0) }
        rd_kafka_mock_push_request_errors_array(cluster, 0 /* Produce */, codes.count, &codes)
    }

    /// Takes `broker` down: its connections are closed and its port refuses new ones until
    /// `setBrokerUp`. librdkafka closes the listening socket, binds a new one to the same port, and
    /// aborts the whole process if that bind fails, as it does while a child being launched still
    /// holds a copy of the old socket: see `launchLock`.
    public func setBrokerDown(_ broker: Int32) {
        Self.launchLock.withLock { _ in rd_kafka_mock_broker_set_down(cluster, broker) }
    }

    /// Held while a broker is taken down. A process hosting mock clusters holds it around every
    /// launch of a child process (`posix_spawn`, `Process.run`) and has the child close inherited
    /// descriptors before exec, so that no child holds a listening socket while its port is re-bound.
    public static let launchLock = Mutex(())

    /// Delays every response of `broker` by `milliseconds` (a far-away broker).
    public func setRoundTripTime(_ broker: Int32, milliseconds: Int32) { rd_kafka_mock_broker_set_rtt(cluster, broker, milliseconds) }
    public func setBrokerUp(_ broker: Int32) { rd_kafka_mock_broker_set_up(cluster, broker) }

    /// Error codes tests commonly inject.
    public static let notEnoughReplicas = RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS.rawValue
    public static let messageTooLarge = RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue
    /// Fatal for an idempotent producer: it must be replaced.
    public static let outOfOrderSequence = RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER.rawValue
}

/// Kafka's default partitioner for keyed messages (murmur2, as the Java client and librdkafka's
/// `murmur2_random` compute it): which partition a key lands on.
public enum KafkaPartitioner {
    public static func partition(forKey key: [UInt8], partitions: Int) -> Int {
        Int(murmur2(key) & 0x7fff_ffff) % partitions
    }

    public static func murmur2(_ data: [UInt8]) -> UInt32 {
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: data.count)
        var index = 0
        while index + 4 <= data.count {
            var k = UInt32(data[index]) | UInt32(data[index + 1]) << 8 | UInt32(data[index + 2]) << 16 | UInt32(data[index + 3]) << 24
            k = k &* m
            k ^= k >> r
            k = k &* m
            h = h &* m
            h ^= k
            index += 4
        }
        let rest = data.count - index
        if rest >= 3 { h ^= UInt32(data[index + 2]) << 16 }
        if rest >= 2 { h ^= UInt32(data[index + 1]) << 8 }
        if rest >= 1 {
            h ^= UInt32(data[index])
            h = h &* m
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return h
    }
}
