import Foundation
import KafkaSink
import Ledger
import Logging
import SluiceCore
import Synchronization

/// Delivers one sink's messages. The decisions are `DeliveryStateMachine`'s; this class holds it
/// under a lock, feeds it events (messages from the stages, delivery reports from the producer's event
/// thread, ledger writes and clock ticks from its own worker thread, users' actions from the console)
/// and performs the actions it returns: produce, write the ledger, settle checkpoint tokens, record
/// cancellations, replace the producer.
final class Dispatcher: @unchecked Sendable {
    let sink: SinkConfig
    /// Creates this sink's producer; called again when one hits a fatal error.
    let makeProducer: () throws -> any MessageProducer
    let ledger: any StateStore
    let logger: Logger
    let metrics: SinkMetrics
    /// Acknowledges checkpoint tokens (the message is in Kafka, parked or cancelled).
    let settle: @Sendable ([UInt]) -> Void
    /// The sink's stages for messages retried from the ledger (the live path runs its own instance).
    private let retryStages: SinkStages
    private let clock: @Sendable () -> Date

    /// Guards `state`, `producer`, `retiredProducers` and the worker's flags; the worker waits on it.
    let lock = NSCondition()
    var state: DeliveryStateMachine
    private var producer: any MessageProducer
    /// Producers replaced after a fatal error, kept until their last delivery reports came back.
    private var retiredProducers: [any MessageProducer] = []
    var workerSignalled = false
    private var stopping = false
    /// Leadership lost: nothing more is sent or written from here (see `abandon`).
    private let abandoned = Atomic<Bool>(false)
    private let workerDone = DispatchSemaphore(value: 0)
    /// Whether writes to the state file succeed (see Dispatcher+LedgerHealth.swift).
    let ledgerHealth = LedgerHealth()

    init(sink: SinkConfig, makeProducer: @escaping () throws -> any MessageProducer, ledger: any StateStore, logger: Logger,
         metrics: SinkMetrics, retryStages: SinkStages, clock: @escaping @Sendable () -> Date = { Date() },
         settle: @escaping @Sendable ([UInt]) -> Void) throws {
        self.sink = sink
        self.makeProducer = makeProducer
        self.producer = try makeProducer()
        self.ledger = ledger
        self.logger = logger
        self.metrics = metrics
        self.settle = settle
        self.retryStages = retryStages
        self.clock = clock
        if let transactional = producer as? TransactionalProducer, !transactional.committedRetries.isEmpty {
            // Exactly-once: parked messages committed in Kafka just before sluice stopped leave the ledger first.
            try ledger.apply(park: [], unpark: transactional.committedRetries, attempts: [], sink: sink.name)
            logger.notice("parked messages already committed in Kafka removed from the ledger",
                          metadata: ["sink": "\(sink.name)", "messages": "\(transactional.committedRetries.count)"])
        }
        let parkedGroups = try ledger.parkedGroups(sink: sink.name)
        state = DeliveryStateMachine(
            limits: DeliveryLimits(maxAckPending: Self.admitted(sink), maxMemoryBytes: sink.maxMemoryMB * 1_048_576,
                                   transactional: sink.delivery == .exactlyOnce),
            parkedGroups: parkedGroups)
        let parked = state.parkedCount
        if parked > 0 {
            logger.notice("delivering parked messages from the ledger first",
                          metadata: ["sink": "\(sink.name)", "messages": "\(parked)", "groups": "\(parkedGroups.count)"])
        }
        metrics.parked(total: parked)
        let thread = Thread { [self] in runWorker() }
        thread.name = "sluice-dispatch-\(sink.name)"
        thread.start()
    }

    /// Messages admitted at once. Exactly-once: the Kafka transaction holds up to max_ack_pending, and as
    /// many more wait in memory for the next one while it commits, so that reading does not stop for each
    /// commit (memory stays within max_memory_mb all the same).
    static func admitted(_ sink: SinkConfig) -> Int {
        sink.delivery == .exactlyOnce ? 2 * sink.destination.maxAckPending : sink.destination.maxAckPending
    }

    // MARK: - Events

    /// A message from the sink's stages (replication or enrichment thread).
    func submit(_ result: StageResult) {
        lock.lock()
        let actions = state.submit(result, now: clock())
        let producer = self.producer
        wakeWorker(if: actions)
        lock.unlock()
        // Produced after the lock: only this thread submits, and a message it admitted behind others
        // in flight is already in its group's flight queue, so a delivery report cannot promote a later one.
        perform(actions, producing: producer)
    }

    /// Delivery reports (Kafka event thread), or refusals of `produce` reported the same way.
    func delivered(_ reports: [DeliveryReport]) {
        lock.lock()
        var actions = state.delivered(reports, now: clock())
        wakeWorker(if: actions)
        // Messages that moved from waiting into flight go to Kafka before the lock is let go: the next
        // message of their group that the replication thread admits must not reach Kafka before them.
        let refused = send(actions.produce, with: producer)
        lock.unlock()
        actions.produce = []
        perform(actions, producing: nil)
        if actions.settle.isEmpty { settle([]) } // capacity may have been freed
        if !refused.isEmpty { delivered(refused) }
    }

    /// True while there is room: fewer than max_ack_pending messages handed to Kafka and the
    /// messages held in memory within max_memory_mb.
    var hasCapacity: Bool { lock.withLock { state.hasCapacity } }

    var inFlightCount: Int { lock.withLock { state.inFlightCount } }

    // MARK: - Performing

    /// Under the lock: the worker has something to do now.
    private func wakeWorker(if actions: DeliveryActions) {
        guard actions.wakeWorker else { return }
        workerSignalled = true
        lock.broadcast()
    }

    private func perform(_ actions: DeliveryActions, producing producer: (any MessageProducer)?) {
        if let producer, !actions.produce.isEmpty {
            let refused = send(actions.produce, with: producer)
            if !refused.isEmpty { delivered(refused) }
        }
        for (outgoing, error) in actions.cancel { cancelTooLarge(outgoing, error: error) }
        if !actions.settle.isEmpty { settle(actions.settle) }
        metrics.record(actions.counts)
        for notice in actions.notices { log(notice) }
    }

    /// Hands messages to `producer`; those refused before reaching a broker (too large for librdkafka,
    /// unknown topic, …) come back as the failed delivery reports they are in all but name.
    private func send(_ messages: [OutgoingMessage], with producer: any MessageProducer) -> [DeliveryReport] {
        var refused: [DeliveryReport] = []
        if abandoned.load(ordering: .relaxed) { return refused }
        let transactional = producer as? TransactionalProducer
        for outgoing in messages {
            let message = outgoing.message
            do {
                if let transactional {
                    try transactional.produce(message, token: outgoing.deliveryID, position: outgoing.position, isRetry: outgoing.isParked)
                } else {
                    try producer.produce(topic: message.topic, key: message.key, value: message.value, token: outgoing.deliveryID)
                }
            } catch {
                refused.append(DeliveryReport(token: outgoing.deliveryID, error: error, topic: message.topic, partition: -1,
                                              offset: -1, size: message.value.count))
            }
        }
        return refused
    }

    private func log(_ notice: DeliveryNotice) {
        switch notice {
        case let .deliveryFailed(table, key, messages, error, category):
            logger.warning("delivery failed; parking the group and retrying", metadata: [
                "sink": "\(sink.name)", "table": "\(table)", "key": "\(key)", "messages": "\(messages)", "error": "\(error)",
                "category": "\(category)"])
        case let .stageFailed(stage, table, key, error):
            logger.warning(stage == .enrichment ? "enrichment failed; parking the message and its group, retrying"
                                                : "a function failed; parking the message and its group, retrying",
                           metadata: ["sink": "\(sink.name)", "table": "\(table)", "key": "\(key)", "error": "\(error)"])
        case let .retryFailed(stage, table, attempt, error):
            logger.warning("\(stage.rawValue) failed again; retrying later", metadata: [
                "sink": "\(sink.name)", "table": "\(table)", "attempt": "\(attempt)", "error": "\(error)"])
        }
    }

    /// Too large for Kafka: never retried; logged with table, key, size and limit, kept in the ledger.
    private func cancelTooLarge(_ outgoing: OutgoingMessage, error: KafkaError) {
        let key = outgoing.keyText
        logger.error("message too large for Kafka; cancelled", metadata: [
            "sink": "\(sink.name)", "table": "\(outgoing.table)", "key": "\(key)", "topic": "\(outgoing.message.topic)",
            "size_bytes": "\(outgoing.size)", "limit_bytes": "\(sink.destination.maxMessageBytes)",
            "error": "\(error)"])
        do {
            try ledger.recordCancelled(CancelledMessage(
                sink: sink.name, group: outgoing.group, position: outgoing.position, table: outgoing.table,
                topic: outgoing.message.topic, key: key, size: outgoing.size, reason: "too_large",
                error: error.description, action: outgoing.action.rawValue, recordPKs: outgoing.message.recordPKs,
                deliverCount: outgoing.deliverCount))
        } catch {
            logger.error("could not record a cancelled message in the ledger", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Ledger worker

    /// Writes parks, unparks and attempts to the ledger (then settles what was parked), replaces a
    /// failed producer, retries parked groups whose backoff ended and saves the recently delivered
    /// list. Sleeps until there is work, the next backoff ends or a second passed.
    private func runWorker() {
        defer { workerDone.signal() }
        var lastDeliveredSave = clock()
        var wakeAt = Date.distantFuture
        while true {
            lock.lock()
            if !workerSignalled && !stopping && state.unwritten.isEmpty {
                _ = lock.wait(until: min(wakeAt, Date().addingTimeInterval(1)))
            }
            workerSignalled = false
            let writes = state.takeLedgerWrites()
            let exit = stopping
            lock.unlock()
            if abandoned.load(ordering: .relaxed) { return }

            if !writes.isEmpty {
                do {
                    try write(writes)
                } catch {
                    reportLedgerFailure(error, pending: writes)
                    lock.withLock { state.ledgerWriteFailed(writes) }
                    Thread.sleep(forTimeInterval: 1)
                    continue
                }
                reportLedgerWritten(parks: true)
                transactionalProducer?.unparksWritten(writes.unparks)
                perform(lock.withLock { state.ledgerWritten(writes) }, producing: nil)
            }
            if clock().timeIntervalSince(lastDeliveredSave) >= 1 || exit {
                saveDelivered()
                lastDeliveredSave = clock()
            }
            if exit { return }
            replaceProducerIfFailed()
            let tick = lock.withLock { state.tick(now: clock()) }
            wakeAt = tick.wakeAt ?? .distantFuture
            for group in tick.retry { retry(group: group) }
        }
    }

    private func write(_ writes: LedgerWrites) throws {
        let now = clock()
        try ledger.apply(
            park: writes.parks.map { outgoing in
                let kept = outgoing.beforeFunctions
                return ParkedMessage(sink: sink.name, group: outgoing.group, position: outgoing.position, table: outgoing.table,
                                     topic: kept.topic, key: kept.key, value: kept.value, deliverCount: outgoing.deliverCount,
                                     lastError: outgoing.lastError, lastAttemptAt: outgoing.deliverCount > 0 ? now : nil)
            },
            unpark: writes.unparks, attempts: writes.attempts, sink: sink.name)
    }

    /// Tries a due group's oldest parked message: read from the ledger, through the sink's stages again.
    private func retry(group key: String) {
        let head: ParkedMessage?
        do { head = try ledger.firstParked(sink: sink.name, group: key) } catch {
            logger.error("could not read the ledger", metadata: ["error": "\(error)"])
            return
        }
        var result: StageResult?
        if let head {
            guard lock.withLock({ state.shouldRetry(group: key, position: head.position) }) else { return }
            result = retryStages.run(OutgoingMessage(parked: head))
        }
        lock.lock()
        let actions = state.retryLoaded(group: key, result, now: clock())
        let producer = self.producer
        wakeWorker(if: actions)
        lock.unlock()
        // After the lock: the group's later messages are parked behind this one, nothing can overtake it.
        perform(actions, producing: producer)
    }

    /// A producer that hit a fatal error (e.g. the broker lost its idempotence state) can send
    /// nothing more: replace it, and fail what it still holds so those messages are parked and retried.
    private func replaceProducerIfFailed() {
        lock.lock()
        if !state.producerFailed && producer.hasFatalError { _ = state.producerFatal() }
        let failed = state.producerFailed
        let retired = retiredProducers
        retiredProducers.removeAll { $0.outstanding == 0 }
        lock.unlock()
        _ = retired // producers released here, on this thread, never on their own event thread
        guard failed else { return }
        let replacement: any MessageProducer
        do { replacement = try makeProducer() } catch {
            logger.error("could not create a new Kafka producer; retrying", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
            return
        }
        lock.lock()
        let old = producer
        producer = replacement
        state.producerReplaced()
        retiredProducers.append(old)
        lock.unlock()
        logger.warning("the Kafka producer hit a fatal error; replaced it, unacknowledged messages are retried in order",
                       metadata: ["sink": "\(sink.name)", "error": "\(old.lastClientError?.description ?? "")"])
        old.purge()
    }

    private func saveDelivered() {
        // Taken under the lock as they are (references); made into records after it, so that up to a
        // second's worth of conversions never holds up delivery reports.
        // After a failed save the bodies are written again even with nothing new: that write tells when
        // the state file takes writes again.
        let retrying = ledgerHealth.isFailing(.delivered)
        lock.lock()
        let unsaved = state.takeUnsavedDeliveries()
        let recent = unsaved.isEmpty && !retrying ? [] : Array(state.recentlyDelivered.suffix(StateLimits.recentBodiesKept))
        lock.unlock()
        let bodies = recent.isEmpty ? nil : recent.map(\.outgoing.beforeFunctions.value)
        do {
            try ledger.recordDelivered(unsaved.map { $0.delivered(sink: sink.name) })
            if let bodies { try ledger.replaceRecentBodies(sink: sink.name, bodies) }
            if !unsaved.isEmpty || retrying { reportLedgerWritten(parks: false) }
        } catch {
            reportLedgerFailure(error, pending: nil)
        }
    }

    // MARK: - Producer

    /// Waits up to `timeout` seconds for the producer to hand over everything queued.
    func flush(timeout: Double) {
        lock.withLock { producer }.flush(timeout: timeout)
    }

    var largestBatch: Int {
        lock.withLock { ([producer] + retiredProducers).map(\.largestBatch).max() ?? 0 }
    }

    /// The current producer, to probe the brokers.
    var currentProducer: any MessageProducer { lock.withLock { producer } }

    /// Stops the worker after it wrote what is pending (and an exactly-once sink's transaction thread).
    func stop() {
        lock.lock()
        stopping = true
        lock.broadcast()
        let producers = [producer] + retiredProducers
        lock.unlock()
        workerDone.wait()
        for case let transactional as TransactionalProducer in producers { transactional.stop() }
    }

    /// This instance lost its leadership: another streams from the slot and owns the shared state now.
    /// Nothing more goes to Kafka from here — what the producers hold is dropped (the new leader sends
    /// it again from the slot and the state it keeps) — and the worker ends without writing.
    func abandon() {
        abandoned.store(true, ordering: .relaxed)
        for producer in lock.withLock({ [producer] + retiredProducers }) { producer.purge() }
        stop()
    }

    /// Exactly-once: a PostgreSQL transaction ended, and every message of it for this sink was handed over
    /// (its stages run on the replication thread, which calls this; with enrichment, the batcher does).
    func transactionEnded(backfill: BackfillCursor? = nil) {
        transactionalProducer?.transactionEnded(backfill: backfill)
    }

    /// Exactly-once: the sink's transactional producer, for its committed position and state.
    var transactionalProducer: TransactionalProducer? { lock.withLock { producer } as? TransactionalProducer }
}

extension OutgoingMessage {
    /// A parked message read back from the ledger, as it was before the sink's stages.
    init(parked head: ParkedMessage) {
        let summary = MessageSummary(json: head.value)
        self.init(position: head.position, group: head.group, table: head.table,
                  message: Message(key: head.key, value: head.value, topic: head.topic, recordPKs: summary.recordPKs),
                  checkpointToken: 0, deliverCount: head.deliverCount, lastError: head.lastError, isParked: true,
                  action: summary.action ?? .insert)
    }
}
