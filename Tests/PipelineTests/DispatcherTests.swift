import Foundation
import KafkaSink
import Ledger
import Logging
@testable import Pipeline
import SluiceCore
import Synchronization
import Testing

/// A producer in librdkafka's place: records what it is handed, in order, and reports only when told.
final class RecordingProducer: MessageProducer {
    struct Produced: Equatable {
        var topic: String
        var key: String?
        var token: UInt
    }

    private let state = Mutex<(produced: [Produced], refuse: KafkaError?)>(([], nil))

    var produced: [Produced] { state.withLock { $0.produced } }

    /// The next `produce` throws this (as librdkafka refuses a message too large for it).
    func refuseNext(with error: KafkaError) { state.withLock { $0.refuse = error } }

    func produce(topic: String, key: [UInt8]?, value: [UInt8], token: UInt) throws(KafkaError) {
        let refusal: KafkaError? = state.withLock { state in
            defer { state.refuse = nil }
            if state.refuse == nil {
                state.produced.append(Produced(topic: topic, key: key.map { String(decoding: $0, as: UTF8.self) }, token: token))
            }
            return state.refuse
        }
        if let refusal { throw refusal }
    }

    func purge() {}
    var hasFatalError: Bool { false }
    var outstanding: Int { 0 }
    func flush(timeout: Double) -> Bool { true }
    var lastClientError: KafkaError? { nil }
    var largestBatch: Int { 0 }
    func checkConnection(timeout: Double) throws(KafkaError) {}
}

/// Checkpoint tokens the dispatcher settled, in order.
final class Settled: Sendable {
    let tokens = Mutex<[UInt]>([])
}

/// The Dispatcher performing its state machine's actions, with a recording producer and a real
/// (temporary) ledger: no broker, no librdkafka.
struct DispatcherTests {
    typealias F = DeliveryFixture

    final class Harness {
        let producer = RecordingProducer()
        let settled = Settled()
        let ledger: any StateStore
        let dispatcher: Dispatcher
        let folder: URL

        init() throws {
            folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-dispatcher-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            ledger = try SQLiteStateStore(path: folder.appendingPathComponent("state.sqlite").path)
            let sink = SinkConfig(name: "s", destination: KafkaDestination(hosts: [HostPort(host: "127.0.0.1", port: 9)], topic: "t"))
            let producer = self.producer
            let settled = self.settled
            dispatcher = try Dispatcher(sink: sink, makeProducer: { producer }, ledger: ledger, logger: Logger(label: "test"),
                                        metrics: SinkMetrics(sink: "s"), retryStages: try SinkStages(sink: sink, databaseParameters: [])) { tokens in
                settled.tokens.withLock { $0 += tokens }
            }
        }

        deinit {
            dispatcher.stop()
            try? FileManager.default.removeItem(at: folder)
        }

        func report(_ token: UInt, error: KafkaError? = nil) {
            dispatcher.delivered([DeliveryReport(token: token, error: error, topic: "t", partition: 0, offset: Int64(token), size: 10)])
        }

        /// Waits (up to 10 s) until `condition` holds: the ledger worker runs on its own thread.
        func eventually(_ condition: () throws -> Bool) rethrows -> Bool {
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                if try condition() { return true }
                Thread.sleep(forTimeInterval: 0.01)
            }
            return try condition()
        }
    }

    @Test func aHotRowsMessagesAreHandedOverInOrderAndSettledOnTheirAcks() throws {
        let harness = try Harness()
        for index in 1...3 { harness.dispatcher.submit(.send(F.message(index))) }
        #expect(harness.producer.produced.map(\.token) == [1, 2, 3], "pipelined: all three handed over at once, in order")
        #expect(harness.settled.tokens.withLock { $0 }.isEmpty, "nothing settles before Kafka acknowledges")
        for token in UInt(1)...3 { harness.report(token) }
        #expect(harness.settled.tokens.withLock { $0 } == [1_001, 1_002, 1_003])
        #expect(harness.dispatcher.inFlightCount == 0)
    }

    @Test func aMessageTheProducerRefusesAsTooLargeIsCancelledAndItsGroupGoesOn() throws {
        let harness = try Harness()
        harness.producer.refuseNext(with: KafkaError(code: 10)) // MSG_SIZE_TOO_LARGE
        harness.dispatcher.submit(.send(F.message(1, size: 2_000_000)))
        harness.dispatcher.submit(.send(F.message(2)))
        #expect(harness.producer.produced.map(\.token) == [2], "the next message of the group is not held back")
        #expect(harness.settled.tokens.withLock { $0 } == [1_001], "the cancelled message no longer holds the slot back")
        let cancelled = try harness.ledger.cancelled(sink: "s")
        #expect(cancelled.map(\.position) == [F.position(1)])
        #expect(cancelled.first?.reason == "too_large")
    }

    @Test func aFailedDeliveryParksTheGroupDurablyBeforeItsTokenSettles() throws {
        let harness = try Harness()
        harness.dispatcher.submit(.send(F.message(1, key: "a")))
        harness.dispatcher.submit(.send(F.message(2, key: "b"))) // another key: waits behind 1
        harness.report(1, error: KafkaError(code: 7)) // REQUEST_TIMED_OUT, retriable
        #expect(harness.eventually { harness.settled.tokens.withLock { $0 }.count == 2 }, "both settle once written to the ledger")
        let parked = try harness.ledger.parked(sink: "s")
        #expect(parked.map(\.position) == [F.position(1), F.position(2)], "the failed message and the one behind it, in order")
        #expect(parked.first?.deliverCount == 1)
        #expect(harness.producer.produced.map(\.token) == [1], "nothing else was handed over")
    }
}
