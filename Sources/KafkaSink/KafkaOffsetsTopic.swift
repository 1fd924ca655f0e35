import CRdKafka
import Foundation
import SluiceCore

/// The topic where exactly-once sinks commit their position, in the same Kafka transaction as their
/// messages (`destination.offsets_topic`): compacted, one partition, one key per sink.
public enum KafkaOffsetsTopic {
    /// Creates the topic — compacted, one partition — unless it exists.
    public static func ensure(_ topic: String, producer: KafkaProducer, timeout: Double) throws(KafkaError) {
        try producer.createTopic(topic, partitions: 1, config: ["cleanup.policy": "compact"], timeout: timeout)
    }

    /// The newest committed value under `key`, reading the topic from its beginning to its end with
    /// `read_committed` (aborted records and open transactions are not seen). Nil when there is none.
    /// `properties`: the brokers and security settings.
    public static func newest(in topic: String, key: String, properties: [(String, String)], timeout: Double) throws(KafkaError) -> [UInt8]? {
        let conf = rd_kafka_conf_new()
        var errorText = [CChar](repeating: 0, count: 512)
        let settings = properties + [("group.id", "sluice-offsets-reader"), ("enable.auto.commit", "false"),
                                     ("enable.partition.eof", "true"), ("isolation.level", "read_committed"),
                                     ("auto.offset.reset", "earliest"), ("log.queue", "false")]
        for (name, value) in settings where rd_kafka_conf_set(conf, name, value, &errorText, errorText.count) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            let shown = KafkaSettings.secretProperties.contains(name) ? "(hidden)" : value
            throw KafkaError(configuration: "librdkafka refused \(name)=\(shown): \(KafkaProducer.text(errorText))")
        }
        guard let consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errorText, errorText.count) else {
            throw KafkaError(configuration: "could not create a Kafka consumer for \(topic): \(KafkaProducer.text(errorText))")
        }
        defer {
            rd_kafka_consumer_close(consumer)
            rd_kafka_destroy(consumer)
        }
        let partitions = rd_kafka_topic_partition_list_new(1)
        defer { rd_kafka_topic_partition_list_destroy(partitions) }
        rd_kafka_topic_partition_list_add(partitions, topic, 0).pointee.offset = Int64(RD_KAFKA_OFFSET_BEGINNING)
        let assigned = rd_kafka_assign(consumer, partitions)
        guard assigned == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: assigned.rawValue) }

        let wanted = Array(key.utf8)
        var newest: [UInt8]?
        let deadline = Date().addingTimeInterval(timeout)
        var lastError: KafkaError?
        while Date() < deadline {
            guard let message = rd_kafka_consumer_poll(consumer, 200) else { continue }
            defer { rd_kafka_message_destroy(message) }
            let record = message.pointee
            switch record.err {
            case RD_KAFKA_RESP_ERR_NO_ERROR:
                let recordKey = record.key.map { Array(UnsafeRawBufferPointer(start: $0, count: record.key_len)) }
                if recordKey == wanted {
                    newest = record.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: record.len)) }
                }
            case RD_KAFKA_RESP_ERR__PARTITION_EOF:
                return newest
            default:
                lastError = KafkaError(code: record.err.rawValue)
            }
        }
        throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue,
                         message: "reading offsets_topic \(topic) to its end took longer than \(Int(timeout)) s"
                             + (lastError.map { " (last error: \($0))" } ?? ""))
    }
}

extension KafkaProducer {
    /// Creates a topic (CreateTopics) unless it exists. `config`: topic settings such as cleanup.policy.
    public func createTopic(_ topic: String, partitions: Int32, config: [String: String] = [:], timeout: Double) throws(KafkaError) {
        var problem: KafkaError?
        for replication: Int32 in [-1, 1] {
            problem = createTopicOnce(topic, partitions: partitions, replication: replication, config: config, timeout: timeout)
            // -1 (the brokers' default replication) needs KIP-464; older brokers want a number.
            guard let error = problem, error.code == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR.rawValue else { break }
        }
        if let problem { throw problem }
    }

    private func createTopicOnce(_ topic: String, partitions: Int32, replication: Int32, config: [String: String],
                                 timeout: Double) -> KafkaError? {
        var errorText = [CChar](repeating: 0, count: 512)
        guard let newTopic = rd_kafka_NewTopic_new(topic, partitions, replication, &errorText, errorText.count) else {
            return KafkaError(configuration: "topic \(topic): \(Self.text(errorText))")
        }
        defer { rd_kafka_NewTopic_destroy(newTopic) }
        for (name, value) in config { rd_kafka_NewTopic_set_config(newTopic, name, value) }
        let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        rd_kafka_AdminOptions_set_request_timeout(options, Int32(timeout * 1000), &errorText, errorText.count)
        let queue = rd_kafka_queue_new(handle)
        defer { rd_kafka_queue_destroy(queue) }
        var topics: [OpaquePointer?] = [newTopic]
        rd_kafka_CreateTopics(handle, &topics, 1, options, queue)
        guard let event = rd_kafka_queue_poll(queue, Int32(timeout * 1000) + 1000) else {
            return KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "creating topic \(topic) timed out")
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        if eventError != RD_KAFKA_RESP_ERR_NO_ERROR {
            return KafkaError(code: eventError.rawValue, message: "creating topic \(topic): \(String(cString: rd_kafka_event_error_string(event)))")
        }
        var count = 0
        guard let result = rd_kafka_event_CreateTopics_result(event),
              let results = rd_kafka_CreateTopics_result_topics(result, &count), count > 0 else { return nil }
        let error = rd_kafka_topic_result_error(results[0])
        guard error != RD_KAFKA_RESP_ERR_NO_ERROR, error != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS else { return nil }
        let message = rd_kafka_topic_result_error_string(results[0]).map { String(cString: $0) }
        return KafkaError(code: error.rawValue, message: "creating topic \(topic): \(message ?? "refused")")
    }
}
