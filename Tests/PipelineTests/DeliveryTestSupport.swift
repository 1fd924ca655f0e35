import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

// Shared helpers of the DeliveryStateMachine*Tests: messages, reports, and a small driver that plays
// Kafka and the ledger worker around the state machine, sequencing events the way `Dispatcher` does.
// No Kafka, SQLite, threads or sleeping: time is a `Date` moved by hand, jitter a fixed function.

/// librdkafka error codes the tests report.
enum KafkaCode {
    /// REQUEST_TIMED_OUT: retriable.
    static let requestTimedOut: Int32 = 7
    /// MSG_SIZE_TOO_LARGE: the message is cancelled.
    static let messageTooLarge: Int32 = 10
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: fatal for an idempotent producer.
    static let outOfOrderSequence: Int32 = 45
    /// _MSG_TIMED_OUT: retriable.
    static let messageTimedOut: Int32 = -192
    /// _PURGE_QUEUE / _PURGE_INFLIGHT: the producer holding the message was purged.
    static let purgeQueue: Int32 = -152
    static let purgeInflight: Int32 = -151
}

enum DeliveryFixture {
    /// Time zero of the injected clock.
    static let start = Date(timeIntervalSince1970: 1_700_000_000)

    /// Message number `index` sits at (LSN 100, index): commit order is index order.
    static func position(_ index: Int) -> MessagePosition { MessagePosition(commitLSN: LSN(100), commitIndex: index) }

    /// Message number `index` of `group`, with `size` bytes of value and checkpoint token 1000 + index.
    static func message(_ index: Int, group: String = "g", key: String? = "k", topic: String = "t", size: Int = 10,
                        token: UInt? = nil, commitTime: Int64 = 0) -> OutgoingMessage {
        OutgoingMessage(position: position(index), group: group, table: "public.t",
                        message: Message(key: key.map { Array($0.utf8) }, value: [UInt8](repeating: UInt8(ascii: "x"), count: size),
                                         topic: topic, recordPKs: [key ?? ""]),
                        checkpointToken: token ?? UInt(1_000 + index), commitTime: commitTime)
    }

    /// A parked message as the Dispatcher reads it back from the ledger (token 0, `isParked`).
    static func parked(_ index: Int, group: String = "g", key: String? = "k", topic: String = "t", size: Int = 10,
                       deliverCount: Int = 1) -> OutgoingMessage {
        OutgoingMessage(parked: ParkedMessage(sink: "s", group: group, position: position(index), table: "public.t", topic: topic,
                                              key: key.map { Array($0.utf8) },
                                              value: [UInt8](repeating: UInt8(ascii: "x"), count: size), deliverCount: deliverCount,
                                              lastError: deliverCount > 0 ? "earlier failure" : nil, parkedAt: start))
    }

    static func limits(maxAckPending: Int = 100, maxMemoryBytes: Int = 1 << 30, depth: Int? = nil) -> DeliveryLimits {
        DeliveryLimits(maxAckPending: maxAckPending, maxMemoryBytes: maxMemoryBytes, pipelineDepth: depth)
    }

    /// A state machine whose jitter is always `jitter` (0: every backoff is its full base).
    static func machine(maxAckPending: Int = 100, maxMemoryBytes: Int = 1 << 30, depth: Int? = nil,
                        parkedGroups: [String: Int] = [:], jitter: Double = 0) -> DeliveryStateMachine {
        DeliveryStateMachine(limits: limits(maxAckPending: maxAckPending, maxMemoryBytes: maxMemoryBytes, depth: depth),
                             parkedGroups: parkedGroups, jitter: { jitter })
    }

    /// Kafka acknowledged `outgoing` (as produced: its `deliveryID` is set).
    static func ack(_ outgoing: OutgoingMessage, partition: Int32 = 0, offset: Int64 = 0) -> DeliveryReport {
        DeliveryReport(token: outgoing.deliveryID, error: nil, topic: outgoing.message.topic, partition: partition, offset: offset,
                       size: outgoing.message.value.count)
    }

    /// Kafka failed `outgoing` with librdkafka error `code`.
    static func failure(_ outgoing: OutgoingMessage, code: Int32) -> DeliveryReport {
        DeliveryReport(token: outgoing.deliveryID, error: KafkaError(code: code), topic: outgoing.message.topic, partition: -1,
                       offset: -1, size: outgoing.message.value.count)
    }
}

/// Jitter values handed out in order; the last one repeats.
final class JitterSequence {
    private var values: [Double]
    private(set) var drawn = 0

    init(_ values: [Double]) { self.values = values }

    func next() -> Double {
        drawn += 1
        return values.count > 1 ? values.removeFirst() : values.first ?? 0
    }
}

/// Equal within a microsecond (times go through `Date`).
func approx(_ value: Double?, _ expected: Double) -> Bool {
    guard let value else { return false }
    return abs(value - expected) < 1e-6
}

extension Array where Element == OutgoingMessage {
    /// Commit indexes, to compare orders at a glance.
    var indexes: [Int] { map(\.position.commitIndex) }
}

extension Array where Element == MessagePosition {
    var indexes: [Int] { map(\.commitIndex) }
}

/// Plays Kafka (records what was produced, answers with reports) and the ledger worker (takes the
/// ledger writes into an in-memory ledger ordered like the real one, answers `ledgerWritten`, ticks and
/// retries due groups from the ledger's oldest message) around a `DeliveryStateMachine`.
struct DeliveryDriver {
    var machine: DeliveryStateMachine
    /// The injected clock.
    var now = DeliveryFixture.start
    /// What a retry's stages make of a parked message read back from the ledger.
    var retryStages: (OutgoingMessage) -> StageResult = { .send($0) }

    /// Handed to Kafka and not reported yet, in produce order.
    private(set) var inKafka: [OutgoingMessage] = []
    /// Every message of every `produce` action, in order.
    private(set) var produced: [OutgoingMessage] = []
    /// What Kafka acknowledged, in order.
    private(set) var delivered: [MessagePosition] = []
    /// Every settled checkpoint token, in order.
    private(set) var settled: [UInt] = []
    /// Messages cancelled as too large.
    private(set) var cancelled: [MessagePosition] = []
    /// How many actions asked for a new producer.
    private(set) var replacements = 0
    private(set) var notices: [DeliveryNotice] = []
    /// All counter changes, summed.
    private(set) var counts = DeliveryCounts()
    /// The ledger: parked messages by position, each as the ledger keeps it (deliverCount, lastError).
    private(set) var ledger: [MessagePosition: OutgoingMessage] = [:]
    private var nextOffset: Int64 = 0

    init(_ machine: DeliveryStateMachine) { self.machine = machine }

    /// Performs the actions the way the Dispatcher does, recording them.
    @discardableResult
    mutating func perform(_ actions: DeliveryActions) -> DeliveryActions {
        inKafka += actions.produce
        produced += actions.produce
        cancelled += actions.cancel.map(\.outgoing.position)
        settled += actions.settle
        if actions.replaceProducer { replacements += 1 }
        notices += actions.notices
        counts.merge(actions.counts)
        return actions
    }

    @discardableResult
    mutating func submit(_ outgoing: OutgoingMessage) -> DeliveryActions { submit(.send(outgoing)) }

    @discardableResult
    mutating func submit(_ result: StageResult) -> DeliveryActions { perform(machine.submit(result, now: now)) }

    /// The message in Kafka at commit index `index`.
    func inKafka(_ index: Int) -> OutgoingMessage? { inKafka.first { $0.position.commitIndex == index } }

    /// Kafka acknowledges message `index` (which must be in Kafka).
    @discardableResult
    mutating func ack(_ index: Int, sourceLocation: SourceLocation = #_sourceLocation) -> DeliveryActions {
        guard let outgoing = take(index, sourceLocation) else { return DeliveryActions() }
        nextOffset += 1
        delivered.append(outgoing.position)
        return perform(machine.delivered([DeliveryFixture.ack(outgoing, offset: nextOffset)], now: now))
    }

    /// Kafka fails message `index` with error `code`.
    @discardableResult
    mutating func fail(_ index: Int, code: Int32 = KafkaCode.requestTimedOut,
                       sourceLocation: SourceLocation = #_sourceLocation) -> DeliveryActions {
        guard let outgoing = take(index, sourceLocation) else { return DeliveryActions() }
        return perform(machine.delivered([DeliveryFixture.failure(outgoing, code: code)], now: now))
    }

    private mutating func take(_ index: Int, _ sourceLocation: SourceLocation) -> OutgoingMessage? {
        guard let slot = inKafka.firstIndex(where: { $0.position.commitIndex == index }) else {
            Issue.record("message \(index) is not in Kafka", sourceLocation: sourceLocation)
            return nil
        }
        return inKafka.remove(at: slot)
    }

    /// Kafka acknowledges everything it holds, oldest first, including what those acks release.
    mutating func ackAll() {
        while let first = inKafka.first { ack(first.position.commitIndex) }
    }

    /// The old producer is purged: everything it held comes back failed, in order.
    @discardableResult
    mutating func purgeAll(code: Int32 = KafkaCode.purgeQueue) -> DeliveryActions {
        var actions = DeliveryActions()
        let held = inKafka
        inKafka = []
        for outgoing in held {
            actions.merge(perform(machine.delivered([DeliveryFixture.failure(outgoing, code: code)], now: now)))
        }
        return actions
    }

    /// The worker writes what the state machine queued for the ledger, then reports it durable.
    @discardableResult
    mutating func writeLedger() -> DeliveryActions {
        let writes = machine.takeLedgerWrites()
        guard !writes.isEmpty else { return DeliveryActions() }
        for park in writes.parks where ledger[park.position] == nil { ledger[park.position] = park } // INSERT OR IGNORE
        for position in writes.unparks { ledger[position] = nil }
        for attempt in writes.attempts {
            ledger[attempt.position]?.deliverCount = attempt.deliverCount
            ledger[attempt.position]?.lastError = attempt.error
        }
        return perform(machine.ledgerWritten(writes))
    }

    /// The group's parked messages in the ledger, oldest first.
    func ledger(group: String) -> [MessagePosition] {
        ledger.values.filter { $0.group == group }.map(\.position).sorted()
    }

    /// The worker's tick: due groups are retried from the ledger's oldest message, through `retryStages`.
    @discardableResult
    mutating func tick() -> DeliveryActions {
        let tick = perform(machine.tick(now: now))
        for group in tick.retry { retry(group: group) }
        return tick
    }

    /// What the Dispatcher's `retry(group:)` does.
    mutating func retry(group: String) {
        guard let head = ledger(group: group).first.flatMap({ ledger[$0] }) else {
            perform(machine.retryLoaded(group: group, nil, now: now))
            return
        }
        guard machine.shouldRetry(group: group, position: head.position) else { return }
        let loaded = DeliveryFixture.parked(head.position.commitIndex, group: head.group, key: head.keyText.isEmpty ? nil : head.keyText,
                                            topic: head.message.topic, size: head.message.value.count, deliverCount: head.deliverCount)
        perform(machine.retryLoaded(group: group, retryStages(loaded), now: now))
    }

    mutating func advance(_ seconds: Double) { now = now.addingTimeInterval(seconds) }

    /// Seconds from now until the group's backoff ends (nil: no backoff).
    func backoffLeft(_ group: String) -> Double? { machine.groups[group]?.retryAt?.timeIntervalSince(now) }

    /// What the ledger held before the process started (`parkedGroups` must count them).
    mutating func seedLedger(_ messages: [OutgoingMessage]) {
        for message in messages { ledger[message.position] = message }
    }

    /// The ledger deleted a message (a user's cancellation).
    mutating func removeFromLedger(_ index: Int) {
        ledger[DeliveryFixture.position(index)] = nil
    }

    /// Acks everything, writes the ledger, waits out backoffs and retries until nothing is left to do.
    mutating func runUntilQuiet(maxSteps: Int = 10_000) {
        for _ in 0..<maxSteps {
            ackAll()
            writeLedger()
            let tick = tick()
            if !inKafka.isEmpty || !machine.unwritten.isEmpty { continue }
            if tick.retry.isEmpty {
                guard let at = tick.wakeAt else { return }
                now = max(now, at)
            }
        }
        Issue.record("the driver did not come to rest")
    }
}

/// Actions of several events as one (the driver performs them together); production code performs each event's own.
extension DeliveryActions {
    mutating func merge(_ other: DeliveryActions) {
        produce += other.produce
        cancel += other.cancel
        settle += other.settle
        wakeWorker = wakeWorker || other.wakeWorker
        replaceProducer = replaceProducer || other.replaceProducer
        retry += other.retry
        if let at = other.wakeAt { wakeAt = min(wakeAt ?? at, at) }
        counts.merge(other.counts)
        notices += other.notices
    }
}
