import CRdKafka
import Foundation
import Logging
import SluiceCore
import Synchronization

/// The outcome of one message, from librdkafka's delivery report.
public struct DeliveryReport: Sendable {
    /// The token given to `produce`.
    public var token: UInt
    /// nil when the broker acknowledged the message.
    public var error: KafkaError?
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var size: Int
    /// The message itself, kept only for failed deliveries (to explain them).
    public var payload: [UInt8]?

    public init(token: UInt, error: KafkaError?, topic: String, partition: Int32, offset: Int64, size: Int,
                payload: [UInt8]? = nil) {
        self.token = token
        self.error = error
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.size = size
        self.payload = payload
    }
}

/// A librdkafka producer. Delivery reports arrive through librdkafka's event queue, polled on a
/// dedicated thread, and are handed to `onDelivery` in batches.
public final class KafkaProducer: @unchecked Sendable {
    let handle: OpaquePointer
    let queue: OpaquePointer
    /// Polls the event queue on its own thread; the thread holds the poller, never the producer,
    /// so releasing the producer stops the thread and destroys the client.
    private let events: KafkaEventPoller
    private var topics: [String: OpaquePointer] = [:]
    private let topicsLock = Mutex(())

    /// Creates the producer; the error names the librdkafka property that was refused.
    public init(properties: [(String, String)], logger: Logger,
                onDelivery: @escaping @Sendable ([DeliveryReport]) -> Void) throws(KafkaError) {
        let conf = rd_kafka_conf_new()
        var errorText = [CChar](repeating: 0, count: 512)
        for (name, value) in properties {
            if rd_kafka_conf_set(conf, name, value, &errorText, errorText.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let shown = KafkaSettings.secretProperties.contains(name) ? "(hidden)" : value
                throw KafkaError(configuration: "librdkafka refused \(name)=\(shown): \(Self.text(errorText))")
            }
        }
        // librdkafka's own log lines come through the event queue too, into swift-log, not stderr.
        rd_kafka_conf_set(conf, "log.queue", "true", &errorText, errorText.count)
        rd_kafka_conf_set(conf, "statistics.interval.ms", "1000", &errorText, errorText.count)
        rd_kafka_conf_set_events(conf, Int32(RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG | RD_KAFKA_EVENT_STATS))
        guard let producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errorText, errorText.count) else {
            throw KafkaError(configuration: "could not create the Kafka producer: \(Self.text(errorText))")
        }
        handle = producer
        queue = rd_kafka_queue_get_main(producer)
        rd_kafka_set_log_queue(producer, nil)
        let events = KafkaEventPoller(handle: producer, queue: queue, logger: logger, onDelivery: onDelivery)
        self.events = events
        let thread = Thread { events.run() }
        thread.name = "sluice-kafka-events"
        thread.start()
    }

    /// The most recent error librdkafka reported about its connections (TLS, authentication, transport).
    public var lastClientError: KafkaError? { events.lastClientError }

    /// The largest number of messages librdkafka put in one produce batch (from its statistics).
    public var largestBatch: Int { events.largestBatch.load(ordering: .relaxed) }

    deinit {
        events.stop()
        for topic in topics.values { rd_kafka_topic_destroy(topic) }
        rd_kafka_queue_destroy(queue)
        rd_kafka_destroy(handle)
    }

    /// Queues a message; returns once librdkafka holds a copy. Waits while its queue is full.
    public func produce(topic: String, key: [UInt8]?, value: [UInt8], token: UInt) throws(KafkaError) {
        let topicHandle = try topicHandle(topic)
        precondition(token != 0, "delivery tokens start at 1")
        while true {
            let result = value.withUnsafeBytes { payload in
                withKey(key) { keyPointer, keyLength in
                    rd_kafka_produce(topicHandle, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                     UnsafeMutableRawPointer(mutating: payload.baseAddress), payload.count,
                                     keyPointer, keyLength, UnsafeMutableRawPointer(bitPattern: token))
                }
            }
            if result == 0 { return }
            let err = rd_kafka_last_error()
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                Thread.sleep(forTimeInterval: 0.001)
                continue
            }
            throw KafkaError(code: err.rawValue)
        }
    }

    private func withKey<R>(_ key: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
        guard let key else { return body(nil, 0) }
        return key.withUnsafeBytes { body($0.baseAddress, $0.count) }
    }

    private func topicHandle(_ name: String) throws(KafkaError) -> OpaquePointer {
        let found: OpaquePointer? = topicsLock.withLock { _ in
            if let existing = topics[name] { return existing }
            guard let created = rd_kafka_topic_new(handle, name, nil) else { return nil }
            topics[name] = created
            return created
        }
        guard let found else { throw KafkaError(code: rd_kafka_last_error().rawValue) }
        return found
    }

    /// Fails every queued and in-flight message now (each gets a delivery report with an error);
    /// used before retiring a producer that hit a fatal error.
    public func purge() {
        rd_kafka_purge(handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
    }

    /// True once librdkafka raised a fatal error: this producer can send nothing more.
    public var hasFatalError: Bool { rd_kafka_fatal_error(handle, nil, 0) != RD_KAFKA_RESP_ERR_NO_ERROR }

    /// The fatal error librdkafka raised, if any (a fenced transactional producer gets `_FENCED`).
    public var fatalError: KafkaError? {
        var text = [CChar](repeating: 0, count: 512)
        let code = rd_kafka_fatal_error(handle, &text, text.count)
        guard code != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return KafkaError(code: code.rawValue, message: Self.text(text), fatal: true)
    }

    /// Messages handed to librdkafka and not yet reported.
    public var outstanding: Int { Int(rd_kafka_outq_len(handle)) }

    /// Waits up to `timeout` seconds until every queued message has been reported.
    @discardableResult
    public func flush(timeout: Double) -> Bool {
        rd_kafka_flush(handle, Int32(timeout * 1000)) == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Asks the cluster for its metadata: proves the brokers answer (and accept the credentials).
    public func checkConnection(timeout: Double) throws(KafkaError) {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 0, nil, &metadata, Int32(timeout * 1000))
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: err.rawValue) }
    }

    /// A NUL-terminated C buffer as a String.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// How many messages the broker holds for `topic`: the sum of its partitions' high watermarks.
    /// (Counts without consuming, which matters for topics too large to read back in a test.)
    public func messageCount(topic: String, timeout: Double) throws(KafkaError) -> Int64 {
        let topicHandle = try topicHandle(topic)
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 0, topicHandle, &metadata, Int32(timeout * 1000))
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(code: err.rawValue) }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt == 1 else { return 0 }
        let described = metadata.pointee.topics[0]
        if described.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(code: described.err.rawValue) }
        var total: Int64 = 0
        for index in 0..<Int(described.partition_cnt) {
            var low: Int64 = 0, high: Int64 = 0
            let result = rd_kafka_query_watermark_offsets(handle, topic, described.partitions[index].id, &low, &high,
                                                          Int32(timeout * 1000))
            guard result == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: result.rawValue) }
            total += high
        }
        return total
    }
}
