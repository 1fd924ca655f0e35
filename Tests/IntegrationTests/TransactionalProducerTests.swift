import Foundation
import KafkaSink
import Logging
import SluiceCore
import Synchronization
import Testing

/// Kafka transactions through sluice's producer against the real broker: the ground that
/// `delivery: exactly_once` stands on. A `read_committed` consumer (kcat, librdkafka's default isolation)
/// checks what became visible; a `read_uncommitted` one that the aborted messages did reach the broker.
@Suite struct TransactionalProducerTests {
    final class Reports: Sendable {
        let failed = Mutex<Int>(0)
        let acked = Mutex<Int>(0)
    }

    static func producer(_ environment: TestEnvironment, transactionalID: String, reports: Reports) throws -> KafkaProducer {
        let hosts = environment.kafkaHosts.split(separator: ",").map { part -> HostPort in
            let pieces = part.split(separator: ":")
            return HostPort(host: String(pieces[0]), port: Int(pieces[1]) ?? 9092)
        }
        var properties = KafkaSettings.producerProperties(for: KafkaDestination(hosts: hosts, topic: "unused"), clientID: "tx-test")
        properties.append(("transactional.id", transactionalID))
        properties.append(("transaction.timeout.ms", "60000"))
        return try KafkaProducer(properties: properties, logger: Logger(label: "tx-test")) { batch in
            let failures = batch.filter { $0.error != nil }.count
            reports.failed.withLock { $0 += failures }
            reports.acked.withLock { $0 += batch.count - failures }
        }
    }

    static func send(_ producer: KafkaProducer, _ topic: KafkaTopic, _ values: [String], token: inout UInt) throws {
        for value in values {
            try producer.produce(topic: topic.name, key: Array("k".utf8), value: Array("{\"v\":\"\(value)\"}".utf8), token: token)
            token += 1
        }
    }

    static func values(_ messages: [ConsumedMessage]) -> [String] { messages.compactMap { $0.json["v"] as? String } }

    @Test func committedTransactionsAppearWholeAndAnAbortedOneNever() throws {
        let environment = try TestEnvironment.current()
        let topic = KafkaTopic(hosts: environment.kafkaHosts, name: TestEnvironment.uniqueName("tx"))
        let reports = Reports()
        let producer = try Self.producer(environment, transactionalID: TestEnvironment.uniqueName("txid"), reports: reports)
        try producer.initTransactions(timeout: 30)
        var token: UInt = 1
        try producer.beginTransaction()
        try Self.send(producer, topic, ["a1", "a2", "a3"], token: &token)
        try producer.commitTransaction(timeout: 30)
        try producer.beginTransaction()
        try Self.send(producer, topic, ["b1", "b2"], token: &token)
        #expect(producer.flush(timeout: 10), "the aborted transaction's messages reach the broker first")
        try producer.abortTransaction(timeout: 30)
        try producer.beginTransaction()
        try Self.send(producer, topic, ["c1"], token: &token)
        try producer.commitTransaction(timeout: 30)

        // The fault really happened: the aborted messages are in the log, for a consumer that reads uncommitted.
        let everything = try topic.messages(readUncommitted: true)
        #expect(Set(Self.values(everything)) == ["a1", "a2", "a3", "b1", "b2", "c1"])
        #expect(Self.values(try topic.messages()) == ["a1", "a2", "a3", "c1"])
        #expect(reports.acked.withLock { $0 } == 6, "committed and aborted messages alike were acknowledged")
    }

    @Test func aSecondProducerWithTheSameTransactionalIDFencesTheFirst() throws {
        let environment = try TestEnvironment.current()
        let topic = KafkaTopic(hosts: environment.kafkaHosts, name: TestEnvironment.uniqueName("fence"))
        let transactionalID = TestEnvironment.uniqueName("txid")
        let first = try Self.producer(environment, transactionalID: transactionalID, reports: Reports())
        try first.initTransactions(timeout: 30)
        var token: UInt = 1
        try first.beginTransaction()
        try Self.send(first, topic, ["zombie"], token: &token)
        #expect(first.flush(timeout: 10))

        // A new instance takes over: its InitProducerId aborts the first one's open transaction.
        let second = try Self.producer(environment, transactionalID: transactionalID, reports: Reports())
        try second.initTransactions(timeout: 30)
        let refused = #expect(throws: KafkaTransactionError.self) { try first.commitTransaction(timeout: 30) }
        #expect(refused?.isFenced == true, "the first producer learns it was fenced: \(refused.map { "\($0)" } ?? "")")

        try second.beginTransaction()
        try Self.send(second, topic, ["new"], token: &token)
        try second.commitTransaction(timeout: 30)
        #expect(Set(Self.values(try topic.messages(readUncommitted: true))) == ["zombie", "new"], "the zombie's message reached the broker")
        #expect(Self.values(try topic.messages()) == ["new"], "nothing the fenced producer held became visible")
    }
}
