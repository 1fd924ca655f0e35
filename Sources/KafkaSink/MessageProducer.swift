/// What delivery needs of a Kafka producer. `KafkaProducer` (librdkafka) is the one sluice runs;
/// tests of the delivery core put their own in its place, so they need no librdkafka and no broker.
public protocol MessageProducer: AnyObject, Sendable {
    /// Queues a message; its delivery report later carries `token`. Throws when the message is refused
    /// before it could reach a broker (too large for the client, unknown topic, a failed producer).
    func produce(topic: String, key: [UInt8]?, value: [UInt8], token: UInt) throws(KafkaError)
    /// Fails every queued and in-flight message now (each gets a delivery report with an error).
    func purge()
    /// True once the producer can send nothing more.
    var hasFatalError: Bool { get }
    /// Messages handed over and not yet reported.
    var outstanding: Int { get }
    /// Waits up to `timeout` seconds until every queued message has been reported.
    @discardableResult func flush(timeout: Double) -> Bool
    /// The most recent error about the producer's connections (TLS, authentication, transport).
    var lastClientError: KafkaError? { get }
    /// The largest number of messages sent in one produce batch.
    var largestBatch: Int { get }
    /// Proves the brokers answer (and accept the credentials).
    func checkConnection(timeout: Double) throws(KafkaError)
}

extension KafkaProducer: MessageProducer {}
