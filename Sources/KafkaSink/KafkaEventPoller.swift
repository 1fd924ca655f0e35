import CRdKafka
import Foundation
import Logging
import Synchronization

/// Serves one producer's librdkafka event queue: delivery reports, errors, statistics and log lines.
final class KafkaEventPoller: @unchecked Sendable {
    let handle: OpaquePointer
    let queue: OpaquePointer
    let logger: Logger
    let onDelivery: @Sendable ([DeliveryReport]) -> Void
    let largestBatch = Atomic<Int>(0)
    private let lastError = Mutex<KafkaError?>(nil)
    private let stopRequested = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    /// The last topic reported and its name (poller thread only): a sink sends to few topics, so most
    /// reports reuse the name instead of making a string each.
    private var lastTopic: (handle: OpaquePointer, name: String)?

    init(handle: OpaquePointer, queue: OpaquePointer, logger: Logger, onDelivery: @escaping @Sendable ([DeliveryReport]) -> Void) {
        self.handle = handle
        self.queue = queue
        self.logger = logger
        self.onDelivery = onDelivery
    }

    /// Ends `run()` and waits until it returned.
    func stop() {
        stopRequested.store(true, ordering: .relaxed)
        done.wait()
    }


    func run() {
        defer { done.signal() }
        while !stopRequested.load(ordering: .relaxed) {
            guard let event = rd_kafka_queue_poll(queue, 100) else { continue }
            defer { rd_kafka_event_destroy(event) }
            switch rd_kafka_event_type(event) {
            case RD_KAFKA_EVENT_DR:
                var reports: [DeliveryReport] = []
                reports.reserveCapacity(rd_kafka_event_message_count(event))
                while let message = rd_kafka_event_message_next(event) {
                    reports.append(report(for: message.pointee))
                }
                onDelivery(reports)
            case RD_KAFKA_EVENT_ERROR:
                let code = rd_kafka_event_error(event)
                let text = String(cString: rd_kafka_event_error_string(event))
                let error = KafkaError(code: code.rawValue, message: text)
                lastError.withLock { $0 = error }
                if error.category == .authentication {
                    logger.error("Kafka refused the credentials", metadata: ["error": "\(text)", "code": "\(error.name)"])
                    continue
                }
                if rd_kafka_event_error_is_fatal(event) != 0 {
                    var fatalText = [CChar](repeating: 0, count: 512)
                    let fatal = rd_kafka_fatal_error(handle, &fatalText, fatalText.count)
                    logger.critical("Kafka producer failed", metadata: ["error": "\(KafkaProducer.text(fatalText))",
                                                                        "code": "\(KafkaError(code: fatal.rawValue).name)"])
                } else {
                    logger.warning("Kafka client error", metadata: ["error": "\(text)",
                                                                    "code": "\(KafkaError(code: code.rawValue).name)"])
                }
            case RD_KAFKA_EVENT_STATS:
                if let json = rd_kafka_event_stats(event) { recordStatistics(json) }
            case RD_KAFKA_EVENT_LOG:
                // Errors also arrive as ERROR events; log lines are detail for debugging.
                var facility: UnsafePointer<CChar>?
                var text: UnsafePointer<CChar>?
                var level: Int32 = 0
                if rd_kafka_event_log(event, &facility, &text, &level) == 0 {
                    logger.debug("librdkafka", metadata: ["facility": "\(facility.map { String(cString: $0) } ?? "")",
                                                          "message": "\(text.map { String(cString: $0) } ?? "")"])
                }
            default:
                break
            }
        }
    }

    var lastClientError: KafkaError? { lastError.withLock { $0 } }

    /// Keeps the largest batch size seen (`topics.*.batchcnt.max` of librdkafka's statistics). The
    /// statistics come once a second on this thread, between delivery reports, and run to tens of
    /// kilobytes: reading the whole document (JSONSerialization) held up the reports behind it, so
    /// this only looks for the one field it needs.
    private func recordStatistics(_ json: UnsafePointer<CChar>) {
        if let largest = Self.largestBatchCount(inStatistics: UnsafeRawBufferPointer(start: json, count: strlen(json))) {
            largestBatch.max(largest, ordering: .relaxed)
        }
    }

    /// The largest `"max"` of the `"batchcnt"` windows (one per topic) in librdkafka's statistics JSON.
    static func largestBatchCount(inStatistics text: UnsafeRawBufferPointer) -> Int? {
        let field = Array(#""batchcnt":"#.utf8)
        let maxField = Array(#""max":"#.utf8)
        var largest: Int?
        var index = 0
        while let found = Self.find(field, in: text, from: index) {
            index = found + field.count
            // The window object's own fields come before any nested one; "max" is among the first.
            guard let maxAt = Self.find(maxField, in: text, from: index), maxAt - index < 200 else { continue }
            var cursor = maxAt + maxField.count
            var value = 0
            var digits = 0
            while cursor < text.count, text[cursor] >= 0x30, text[cursor] <= 0x39, digits < 18 {
                value = value * 10 + Int(text[cursor] - 0x30)
                cursor += 1
                digits += 1
            }
            if digits > 0 { largest = max(largest ?? 0, value) }
        }
        return largest
    }

    private static func find(_ needle: [UInt8], in text: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard needle.count <= text.count else { return nil }
        var index = start
        while index + needle.count <= text.count {
            if text[index] == needle[0], (1..<needle.count).allSatisfy({ text[index + $0] == needle[$0] }) { return index }
            index += 1
        }
        return nil
    }

    private func report(for message: rd_kafka_message_t) -> DeliveryReport {
        let token = UInt(bitPattern: message._private)
        var error: KafkaError?
        var payload: [UInt8]?
        if message.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // The payload of a delivery report is the message itself, so the text comes from the code.
            error = KafkaError(code: message.err.rawValue)
            if let bytes = message.payload { payload = Array(UnsafeRawBufferPointer(start: bytes, count: message.len)) }
        }
        return DeliveryReport(token: token, error: error, topic: topicName(message.rkt), partition: message.partition,
                              offset: message.offset, size: message.len, payload: payload)
    }

    private func topicName(_ topic: OpaquePointer?) -> String {
        guard let topic, let cName = rd_kafka_topic_name(topic) else { return "" }
        let length = strlen(cName)
        if let lastTopic, lastTopic.handle == topic,
           lastTopic.name.utf8.elementsEqual(UnsafeRawBufferPointer(start: cName, count: length)) {
            return lastTopic.name
        }
        let name = String(cString: cName)
        lastTopic = (topic, name)
        return name
    }
}
