import DequeModule
import Foundation
import Logging
import SluiceCore

/// The live path of a sink with an enrichment query: takes messages in stream order, gathers up to
/// the sink's batch size (waiting at most a few milliseconds for more) and runs each batch through the
/// sink's stages on its own thread (one enrichment query per batch), handing every result to the
/// dispatcher in the same order.
final class EnrichmentBatcher: @unchecked Sendable {
    private let stages: SinkStages
    private let dispatcher: Dispatcher
    private let batchSize: Int
    private let capacityLimit: Int
    private let logger: Logger
    private let lock = NSCondition()
    private var queue = Deque<OutgoingMessage>()
    /// Messages taken off the queue and not yet handed to the dispatcher.
    private var working = 0
    /// Messages queued and handed to the dispatcher so far, and where PostgreSQL transactions ended
    /// (by `enqueued` at the time): exactly-once sinks commit only whole ones.
    private var enqueued = 0
    private var handed = 0
    private var transactionEnds = Deque<(enqueued: Int, backfill: BackfillCursor?)>()
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    /// Called when the queue has room again.
    private let freed: @Sendable () -> Void
    /// How long a partial batch waits for more messages.
    static let gatherSeconds = 0.005

    init(stages: SinkStages, dispatcher: Dispatcher, batchSize: Int, maxAckPending: Int, logger: Logger,
         freed: @escaping @Sendable () -> Void) {
        self.stages = stages
        self.dispatcher = dispatcher
        self.batchSize = max(1, batchSize)
        self.capacityLimit = max(self.batchSize * 4, min(maxAckPending, 10_000))
        self.logger = logger
        self.freed = freed
        let thread = Thread { [self] in run() }
        thread.name = "sluice-enrich"
        thread.start()
    }

    func enqueue(_ message: OutgoingMessage) {
        lock.lock()
        queue.append(message)
        enqueued += 1
        lock.broadcast()
        lock.unlock()
    }

    /// A PostgreSQL transaction ended: the dispatcher hears of it once its messages were handed over.
    func transactionEnded(backfill: BackfillCursor? = nil) {
        lock.lock()
        let allHanded = handed == enqueued
        if !allHanded { transactionEnds.append((enqueued, backfill)) }
        lock.unlock()
        if allHanded { dispatcher.transactionEnded(backfill: backfill) }
    }

    var hasCapacity: Bool {
        lock.lock()
        defer { lock.unlock() }
        return queue.count < capacityLimit
    }

    /// Waits until everything queued went to the dispatcher (or the time is up).
    func flush(timeout: Double) {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        while !queue.isEmpty || working > 0, lock.wait(until: deadline) {}
        lock.unlock()
    }

    func stop() {
        lock.lock()
        if stopping { lock.unlock(); return }
        stopping = true
        lock.broadcast()
        lock.unlock()
        done.wait()
    }

    private func run() {
        defer { done.signal() }
        while true {
            lock.lock()
            while queue.isEmpty && !stopping { lock.wait() }
            if stopping { lock.unlock(); return }
            if queue.count < batchSize {
                let deadline = Date().addingTimeInterval(Self.gatherSeconds)
                while queue.count < batchSize, !stopping, lock.wait(until: deadline) {}
            }
            var batch: [OutgoingMessage] = []
            batch.reserveCapacity(min(batchSize, queue.count))
            while batch.count < batchSize, let next = queue.popFirst() { batch.append(next) }
            working = batch.count
            lock.unlock()
            freed()

            for result in stages.run(batch) { dispatcher.submit(result) }
            lock.lock()
            working = 0
            handed += batch.count
            var ended: [BackfillCursor?] = []
            while let end = transactionEnds.first, end.enqueued <= handed {
                transactionEnds.removeFirst()
                ended.append(end.backfill)
            }
            lock.broadcast()
            lock.unlock()
            for backfill in ended { dispatcher.transactionEnded(backfill: backfill) }
        }
    }
}
