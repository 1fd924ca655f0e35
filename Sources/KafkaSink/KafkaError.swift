import CRdKafka

/// An error from librdkafka or the broker, classified so callers know whether to retry.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    public enum Category: String, Sendable {
        /// Try again later: the broker or network will likely recover.
        case retriable
        /// The message can never be delivered as it is (e.g. larger than the broker accepts).
        case messageTooLarge = "message_too_large"
        /// Credentials were refused.
        case authentication
        /// A setting is wrong (unknown property, bad value, TLS files).
        case configuration
        /// The producer cannot continue (idempotence broken, fatal broker error).
        case fatal
    }

    /// librdkafka's `rd_kafka_resp_err_t` value.
    public var code: Int32
    /// librdkafka's name for the code, e.g. `MSG_SIZE_TOO_LARGE`.
    public var name: String
    /// The broker's or librdkafka's own words.
    public var message: String
    public var category: Category

    public init(code: Int32, message: String? = nil, fatal: Bool = false) {
        self.code = code
        let err = rd_kafka_resp_err_t(rawValue: code)
        self.name = String(cString: rd_kafka_err2name(err))
        self.message = message ?? String(cString: rd_kafka_err2str(err))
        self.category = fatal ? .fatal : Self.category(of: err)
    }

    /// A configuration problem found before talking to a broker.
    public init(configuration message: String) {
        self.code = RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue
        self.name = "INVALID_ARG"
        self.message = message
        self.category = .configuration
    }

    /// A message Sluice knows is larger than `message.max.bytes` before handing it over; the same
    /// error librdkafka gives for one it refuses.
    public static func messageTooLarge(_ message: String) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue, message: message)
    }

    public var isRetriable: Bool { category == .retriable }

    /// The message was purged from a producer being replaced (it may or may not have been delivered).
    public var isPurged: Bool {
        code == RD_KAFKA_RESP_ERR__PURGE_QUEUE.rawValue || code == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT.rawValue
    }

    public var description: String { "\(message) (\(name))" }

    static func category(of err: rd_kafka_resp_err_t) -> Category {
        switch err {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
            return .messageTooLarge
        case RD_KAFKA_RESP_ERR__AUTHENTICATION, RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED,
             RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
             RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            return .authentication
        case RD_KAFKA_RESP_ERR__INVALID_ARG, RD_KAFKA_RESP_ERR__SSL, RD_KAFKA_RESP_ERR_INVALID_CONFIG,
             RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, RD_KAFKA_RESP_ERR__INVALID_TYPE:
            return .configuration
        case RD_KAFKA_RESP_ERR__FATAL, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
             RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
            return .fatal
        default:
            return .retriable
        }
    }
}
