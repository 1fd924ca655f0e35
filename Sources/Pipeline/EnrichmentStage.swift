import DequeModule
import Foundation
import Logging
import PostgresSource
import SluiceCore

/// Runs a sink's enrichment query before its dispatcher sees the messages: takes them in stream
/// order, gathers up to the sink's batch size (waiting at most a few milliseconds for more), runs one
/// query per batch on its own thread and hands every message on, in the same order, with
/// `metadata.enrichment` set — or with the failure, which parks it like a function error.
final class EnrichmentStage: @unchecked Sendable {
    private let query: EnrichmentQuery
    private let dispatcher: Dispatcher
    private let batchSize: Int
    private let capacityLimit: Int
    private let logger: Logger
    private let lock = NSCondition()
    private var queue = Deque<OutgoingMessage>()
    /// Messages taken off the queue and not yet handed to the dispatcher.
    private var working = 0
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    /// Called when the queue has room again.
    private let freed: @Sendable () -> Void
    /// How long a partial batch waits for more messages.
    static let gatherSeconds = 0.005

    init(query: EnrichmentQuery, dispatcher: Dispatcher, batchSize: Int, maxAckPending: Int, logger: Logger,
         freed: @escaping @Sendable () -> Void) {
        self.query = query
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
        lock.broadcast()
        lock.unlock()
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

            let results = query.run(batch.map { EnrichmentQuery.Input(table: $0.table, recordPKs: $0.message.recordPKs) })
            for (outgoing, result) in zip(batch, results) {
                switch result {
                case .success(let row):
                    var enriched = outgoing.message
                    enriched.value = MessageEncoder.enriched(enriched.value, with: row)
                    dispatcher.submit(outgoing, enriched: enriched)
                case .failure(let failure):
                    dispatcher.submit(outgoing, failure: failure.message)
                }
            }
            lock.lock()
            working = 0
            lock.broadcast()
            lock.unlock()
        }
    }
}
