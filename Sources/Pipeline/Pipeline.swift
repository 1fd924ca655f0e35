import Foundation
import KafkaSink
import Logging
import PostgresSource
import SluiceCore
import Synchronization

/// One sink at run time: which changes it takes, how it encodes them, and its producer.
final class SinkRuntime: Sendable {
    let config: SinkConfig
    let encoder: MessageEncoder
    let producer: KafkaProducer
    let inFlight = Atomic<Int>(0)
    let cancelled = Atomic<Int>(0)

    init(config: SinkConfig, encoder: MessageEncoder, producer: KafkaProducer) {
        self.config = config
        self.encoder = encoder
        self.producer = producer
    }
}

/// Turns changes into messages for every sink that wants them, hands them to Kafka and keeps the
/// checkpoint: the slot only advances past what every sink's broker acknowledged.
public final class Pipeline: ChangeConsumer, @unchecked Sendable {
    let logger: Logger
    private var sinks: [SinkRuntime] = []
    private let tracker: Mutex<CheckpointTracker>
    /// Signalled whenever acknowledgements free capacity.
    private let capacity = NSCondition()

    /// Message bytes above which a message is cancelled rather than retried.
    public static let defaultMaxMessageBytes = 1_000_000

    public init(config: SluiceConfig, databaseName: String, startLSN: LSN, logger: Logger) throws(KafkaError) {
        self.logger = logger
        tracker = Mutex(CheckpointTracker(confirmed: startLSN))
        for sink in config.sinks {
            let properties = KafkaSettings.producerProperties(for: sink.destination, clientID: "sluice-\(sink.name)")
            let producer = try KafkaProducer(properties: properties, logger: logger) { [weak self] reports in
                self?.delivered(reports, sinkName: sink.name)
            }
            let encoder = MessageEncoder(consumer: ConsumerIdentity(name: sink.name), databaseName: databaseName)
            sinks.append(SinkRuntime(config: sink, encoder: encoder, producer: producer))
        }
    }

    /// Producers, for `sluice check`-style probing.
    public var producers: [(name: String, producer: KafkaProducer)] { sinks.map { ($0.config.name, $0.producer) } }

    // MARK: - ChangeConsumer

    public func transactionBegan(_ transaction: TransactionInfo) {
        tracker.withLock { $0.begin() }
    }

    public func received(_ change: Change) {
        let table = TableName(schema: change.relation.schema, name: change.relation.name)
        for sink in sinks where sink.config.accepts(table: table, action: change.action) {
            let message = sink.encoder.encode(change, topic: sink.config.destination.topic)
            let token = tracker.withLock { $0.addMessage() }
            sink.inFlight.add(1, ordering: .relaxed)
            produce(message, token: token, on: sink)
        }
    }

    public func transactionCommitted(_ transaction: TransactionInfo, endLSN: LSN) {
        tracker.withLock { $0.commit(endLSN: endLSN) }
    }

    public func caughtUp(to lsn: LSN) {
        tracker.withLock { $0.caughtUp(to: lsn) }
    }

    public func streamInterrupted() {
        tracker.withLock { $0.abandonOpen() }
    }

    public func waitForCapacity(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        capacity.lock()
        defer { capacity.unlock() }
        while true {
            if sinks.allSatisfy({ $0.inFlight.load(ordering: .relaxed) < $0.config.destination.maxAckPending }) { return true }
            if !capacity.wait(until: deadline) { return false }
        }
    }

    public func drain(timeout: Double) {
        let deadline = Date().addingTimeInterval(timeout)
        for sink in sinks {
            sink.producer.flush(timeout: max(0, deadline.timeIntervalSinceNow))
        }
        while tracker.withLock({ $0.outstanding }) > 0, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let left = tracker.withLock { $0.outstanding }
        if left > 0 {
            logger.warning("stopping with unacknowledged messages; they will be sent again on the next start",
                           metadata: ["messages": "\(left)"])
        }
    }

    public var confirmedLSN: LSN { tracker.withLock { $0.confirmed } }

    // MARK: - Delivery

    /// Queues a message, retrying with backoff while librdkafka refuses it for a passing reason.
    private func produce(_ message: Message, token: UInt, on sink: SinkRuntime) {
        var delay = 0.1
        while true {
            do {
                try sink.producer.produce(topic: message.topic, key: message.key, value: message.value, token: token)
                return
            } catch {
                if error.category == .messageTooLarge {
                    cancelTooLarge(sink: sink, topic: message.topic, key: message.key, size: message.value.count,
                                   payload: message.value, token: token)
                    return
                }
                logger.error("Kafka refused a message; retrying", metadata: [
                    "sink": "\(sink.config.name)", "topic": "\(message.topic)", "error": "\(error)", "retry_in_s": "\(delay)"])
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, 30)
            }
        }
    }

    private func delivered(_ reports: [DeliveryReport], sinkName: String) {
        guard let sink = sinks.first(where: { $0.config.name == sinkName }) else { return }
        var settled: [UInt] = []
        settled.reserveCapacity(reports.count)
        for report in reports {
            guard let error = report.error else {
                settled.append(report.token)
                continue
            }
            if error.category == .messageTooLarge {
                cancelTooLarge(sink: sink, topic: report.topic, key: report.key, size: report.size, payload: report.payload,
                               token: report.token)
            } else {
                // With message.timeout.ms=0 librdkafka retries passing errors itself; what reaches us is
                // permanent. The message stays unacknowledged so the slot cannot pass it.
                logger.error("Kafka did not accept a message; the slot will not advance past it", metadata: [
                    "sink": "\(sinkName)", "topic": "\(report.topic)", "key": "\(report.key.map { String(decoding: $0, as: UTF8.self) } ?? "")",
                    "error": "\(error)", "category": "\(error.category.rawValue)"])
            }
        }
        settle(settled, on: sink)
    }

    /// A message larger than Kafka accepts can never be delivered: it is cancelled (its group goes
    /// on), logged with its table, key, size and limit, and counted.
    private func cancelTooLarge(sink: SinkRuntime, topic: String, key: [UInt8]?, size: Int, payload: [UInt8]?, token: UInt) {
        sink.cancelled.add(1, ordering: .relaxed)
        var metadata: Logger.Metadata = [
            "sink": "\(sink.config.name)", "topic": "\(topic)",
            "key": "\(key.map { String(decoding: $0, as: UTF8.self) } ?? "")",
            "size_bytes": "\(size)", "limit_bytes": "\(Self.defaultMaxMessageBytes)"]
        if let payload, let table = Self.tableName(inMessage: payload) { metadata["table"] = "\(table)" }
        logger.error("message too large for Kafka; cancelled", metadata: metadata)
        settle([token], on: sink)
    }

    private func settle(_ tokens: [UInt], on sink: SinkRuntime) {
        guard !tokens.isEmpty else { return }
        tracker.withLock { tracker in
            for token in tokens { tracker.acknowledge(token) }
        }
        sink.inFlight.subtract(tokens.count, ordering: .relaxed)
        capacity.lock()
        capacity.broadcast()
        capacity.unlock()
    }

    static func tableName(inMessage payload: [UInt8]) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any],
              let metadata = object["metadata"] as? [String: Any],
              let schema = metadata["table_schema"] as? String, let table = metadata["table_name"] as? String
        else { return nil }
        return "\(schema).\(table)"
    }

    /// Messages cancelled because they were too large, per sink.
    public var cancelledCounts: [String: Int] {
        Dictionary(uniqueKeysWithValues: sinks.map { ($0.config.name, $0.cancelled.load(ordering: .relaxed)) })
    }
}
