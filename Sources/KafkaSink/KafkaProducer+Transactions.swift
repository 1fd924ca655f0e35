import CRdKafka

/// Kafka transactions on a producer created with a `transactional.id` (librdkafka's transactional API):
/// what `delivery: exactly_once` builds on. Each call blocks until the coordinator answered or the
/// timeout passed, so callers run them on their own thread, never on the cooperative pool.
extension KafkaProducer {
    /// Registers the transactional id with its coordinator (InitProducerId): fences any earlier
    /// producer with the same id and aborts the transaction it left open. Needed once, before the first
    /// transaction; it also proves that the brokers support transactions.
    public func initTransactions(timeout: Double) throws(KafkaTransactionError) {
        try Self.check(rd_kafka_init_transactions(handle, Self.milliseconds(timeout)))
    }

    public func beginTransaction() throws(KafkaTransactionError) {
        try Self.check(rd_kafka_begin_transaction(handle))
    }

    /// Flushes what the transaction holds and commits it: every message produced since
    /// `beginTransaction` becomes visible to `read_committed` consumers at once, or none does.
    public func commitTransaction(timeout: Double) throws(KafkaTransactionError) {
        try Self.check(rd_kafka_commit_transaction(handle, Self.milliseconds(timeout)))
    }

    /// Aborts the open transaction: its messages stay invisible to `read_committed` consumers. Their
    /// delivery reports come back failed (purged).
    public func abortTransaction(timeout: Double) throws(KafkaTransactionError) {
        try Self.check(rd_kafka_abort_transaction(handle, Self.milliseconds(timeout)))
    }

    private static func milliseconds(_ seconds: Double) -> Int32 { Int32(clamping: Int((seconds * 1000).rounded())) }

    private static func check(_ error: OpaquePointer?) throws(KafkaTransactionError) {
        guard let error else { return }
        defer { rd_kafka_error_destroy(error) }
        let kafkaError = KafkaError(code: rd_kafka_error_code(error).rawValue, message: String(cString: rd_kafka_error_string(error)),
                                    fatal: rd_kafka_error_is_fatal(error) != 0)
        throw KafkaTransactionError(
            error: kafkaError, isRetriable: rd_kafka_error_is_retriable(error) != 0,
            requiresAbort: rd_kafka_error_txn_requires_abort(error) != 0, isFatal: rd_kafka_error_is_fatal(error) != 0)
    }
}

/// A failed transactional call, with what librdkafka says may be done next.
public struct KafkaTransactionError: Error, Sendable, CustomStringConvertible {
    public var error: KafkaError
    /// The same call may be made again (e.g. a commit that timed out).
    public var isRetriable: Bool
    /// The transaction must be aborted, then run again from its beginning.
    public var requiresAbort: Bool
    /// The producer can do nothing more; with `isFenced`, because another producer took its transactional id.
    public var isFatal: Bool

    /// Another producer with the same transactional id initialised after this one: this one must
    /// never commit again (with exactly-once, another instance took over the sink).
    public var isFenced: Bool {
        error.code == RD_KAFKA_RESP_ERR__FENCED.rawValue || error.code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED.rawValue
            || (isFatal && error.code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH.rawValue)
    }

    public init(error: KafkaError, isRetriable: Bool = false, requiresAbort: Bool = false, isFatal: Bool = false) {
        self.error = error
        self.isRetriable = isRetriable
        self.requiresAbort = requiresAbort
        self.isFatal = isFatal
    }

    public var description: String { error.description }
}
