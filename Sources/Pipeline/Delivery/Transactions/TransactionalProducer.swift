import Foundation
import KafkaSink
import Ledger
import Logging
import Metrics
import SluiceCore

/// The producer of a `delivery: exactly_once` sink. To its dispatcher it looks like any producer, except
/// that a message's delivery report comes only once the Kafka transaction holding it committed — so the
/// dispatcher settles checkpoint tokens, and the slot advances, only past committed messages. The
/// decisions are `TransactionStateMachine`'s; this class holds it under a lock and performs its actions:
/// begin and produce under the lock (their order is the messages' order), commit and abort (which block
/// on the coordinator) on its own thread.
final class TransactionalProducer: MessageProducer, @unchecked Sendable {
    /// What a sink needs to make and start one.
    struct Settings {
        var sinkName: String
        var transactionalID: String
        var offsetsTopic: String
        /// The sink's key in `offsets_topic`.
        var offsetsKey: String
        var transactionTimeout: Double
        /// librdkafka properties for the brokers (those of the sink's producer).
        var properties: [(String, String)]
        var maxMessages: Int
    }

    let settings: Settings
    private let kafka: KafkaProducer
    private let logger: Logger
    /// Delivery reports for the dispatcher: delivered once committed, or failed (too large, purged).
    private let release: @Sendable ([DeliveryReport]) -> Void
    private let lock = NSCondition()
    private var machine: TransactionStateMachine
    /// The worker is to call commit on the open transaction.
    private var pendingCommit = false
    private var pendingAbort = false
    private var wakeAt: Date?
    private var stopping = false
    private var workerDone = DispatchSemaphore(value: 0)
    private let committedCounter: Counter
    private let abortedCounter: Counter
    private let messagesPerTransaction: Recorder
    /// Parked messages that `offsets_topic` says were committed, as read at start: the dispatcher
    /// removes them from the ledger before it retries anything.
    let committedRetries: [MessagePosition]
    /// A transaction stays open this long at least (unless full), so that under load several PostgreSQL
    /// transactions share one: each Kafka transaction costs a round trip to the coordinator and a marker per
    /// partition, and librdkafka's main thread spins while one completes.
    static let linger = 0.025
    /// Token of the offsets record's delivery report (delivery ids of messages start at 1 and count up).
    private static let offsetsToken = UInt.max

    /// Creates the transactional producer, registers its transactional id (fencing an earlier holder and
    /// aborting what it left open), makes sure `offsets_topic` exists and reads the sink's committed
    /// position from it.
    init(settings: Settings, logger: Logger, release: @escaping @Sendable ([DeliveryReport]) -> Void) throws {
        self.settings = settings
        self.logger = logger
        self.release = release
        let dimensions = [("sink", settings.sinkName)]
        committedCounter = Counter(label: "sluice_transactions_committed_total", dimensions: dimensions)
        abortedCounter = Counter(label: "sluice_transactions_aborted_total", dimensions: dimensions)
        messagesPerTransaction = Recorder(label: "sluice_transaction_messages", dimensions: dimensions, aggregate: true)
        let relay = DeliveryRelay()
        var properties = settings.properties
        properties.removeAll { ["transactional.id", "transaction.timeout.ms", "enable.gapless.guarantee"].contains($0.0) }
        properties += [("transactional.id", settings.transactionalID),
                       ("transaction.timeout.ms", String(Int(settings.transactionTimeout * 1000)))]
        kafka = try KafkaProducer(properties: properties, logger: logger) { reports in relay.target?.kafkaDelivered(reports) }
        let wait = max(10, settings.transactionTimeout)
        do {
            try kafka.initTransactions(timeout: wait)
        } catch {
            throw KafkaError(code: error.error.code, message: "transactional_id \(settings.transactionalID): \(error.error.message)"
                                 + (error.isFenced ? " — another producer holds it" : ""))
        }
        try KafkaOffsetsTopic.ensure(settings.offsetsTopic, producer: kafka, timeout: wait)
        let newest = try KafkaOffsetsTopic.newest(in: settings.offsetsTopic, key: settings.offsetsKey,
                                                  properties: settings.properties, timeout: wait)
        let committed = try newest.map { try OffsetsRecord(decoding: $0, topic: settings.offsetsTopic) }
        committedRetries = committed?.retried ?? []
        machine = TransactionStateMachine(maxMessages: settings.maxMessages, committedPosition: committed?.position,
                                          committedCursors: committed?.backfills ?? [:], linger: Self.linger)
        relay.target = self
        let thread = Thread { [self] in runWorker() }
        thread.name = "sluice-txn-\(settings.sinkName)"
        thread.start()
    }

    deinit { stop() }

    /// The newest stream position committed: the stream's changes up to it are in Kafka already.
    var committedPosition: MessagePosition? { lock.withLock { machine.committedPosition } }
    var isStopped: Bool { lock.withLock { machine.isStopped } }
    /// Kafka's last error about the running transaction, if it failed.
    var lastTransactionError: KafkaError? { lock.withLock { machine.lastError } }

    /// For the console and `/api/status`.
    var status: MessageInspector.TransactionStatus {
        lock.withLock {
            MessageInspector.TransactionStatus(
                transactionalID: settings.transactionalID, offsetsTopic: settings.offsetsTopic,
                committedPosition: machine.committedPosition, state: machine.phase.name, lastError: machine.lastError?.description)
        }
    }

    // MARK: - From the dispatcher

    /// Hands a message to the open transaction (or the next one). Throws when Kafka refuses it at once.
    func produce(_ message: Message, token: UInt, position: MessagePosition, isRetry: Bool) throws(KafkaError) {
        lock.lock()
        let actions = machine.hand(message, token: token, position: position, isRetry: isRetry, now: Date())
        let refused = perform(actions)
        lock.unlock()
        if let error = refused.first(where: { $0.token == token })?.error { throw error }
        let others = refused.filter { $0.token != token }
        if !others.isEmpty { DispatchQueue.global().async { [release] in release(others) } }
    }

    /// `MessageProducer`'s form, without a stream position: the message counts as a unit of its own.
    func produce(topic: String, key: [UInt8]?, value: [UInt8], token: UInt) throws(KafkaError) {
        try produce(Message(key: key, value: value, topic: topic, recordPKs: []), token: token,
                    position: MessagePosition(commitLSN: .zero, commitIndex: 0), isRetry: true)
    }

    /// A PostgreSQL transaction ended (everything of it that this sink delivers was handed over); for a
    /// backfill page, with the backfill's cursor after it.
    func transactionEnded(backfill: BackfillCursor? = nil) {
        lock.lock()
        let refused = perform(machine.transactionEnded(backfill: backfill, now: Date()))
        lock.unlock()
        if !refused.isEmpty { DispatchQueue.global().async { [release] in release(refused) } }
    }

    /// The producer is being replaced: what it holds comes back to the dispatcher (to be sent again, in
    /// order, by the next one) and it commits nothing more.
    /// Backfill cursors committed in Kafka with their pages' rows (read at start, then each commit's).
    var committedCursors: [String: [String]] { lock.withLock { machine.committedCursors } }

    /// A backfill ended (its state is saved): commits need not carry its cursor any more.
    func backfillEnded(_ id: String) {
        lock.withLock { machine.backfillEnded(id) }
    }

    /// The ledger's removal of these parked messages is written: commits need not name them any more.
    func unparksWritten(_ positions: [MessagePosition]) {
        guard !positions.isEmpty else { return }
        lock.withLock { machine.unparksWritten(positions) }
    }

    func purge() {
        lock.lock()
        pendingCommit = false
        pendingAbort = false
        stopping = true
        lock.broadcast()
        let actions = machine.purge(with: KafkaError(code: -152, message: "purged: the producer is being replaced"))
        lock.unlock()
        kafka.purge()
        if !actions.release.isEmpty { release(actions.release) }
    }

    /// A fatal error other than being fenced: a new producer may take over. A fenced one is never
    /// replaced — its replacement would fence the instance that took over.
    var hasFatalError: Bool {
        guard let fatal = kafka.fatalError else { return false }
        return !KafkaTransactionError(error: fatal, isFatal: true).isFenced && !isStopped
    }
    var outstanding: Int { lock.withLock { machine.held.count } }
    var lastClientError: KafkaError? { kafka.lastClientError }
    var largestBatch: Int { kafka.largestBatch }
    func checkConnection(timeout: Double) throws(KafkaError) { try kafka.checkConnection(timeout: timeout) }

    /// Waits until everything handed over is committed, up to `timeout` seconds.
    @discardableResult func flush(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while !machine.held.isEmpty && !machine.isStopped {
            if !lock.wait(until: deadline) { return false }
        }
        return machine.held.isEmpty
    }

    func stop() {
        lock.lock()
        let wasStopping = stopping
        stopping = true
        lock.broadcast()
        lock.unlock()
        if !wasStopping { workerDone.wait() }
    }

    // MARK: - From Kafka

    private func kafkaDelivered(_ reports: [DeliveryReport]) {
        lock.lock()
        let refused = perform(machine.delivered(reports, offsetsToken: Self.offsetsToken))
        lock.unlock()
        if !refused.isEmpty { release(refused) }
    }

    // MARK: - Performing

    /// Under the lock: begin and produce now (in order), hand commits and aborts to the worker. Returns
    /// the delivery reports to release (after the lock), refusals of `produce` among them.
    private func perform(_ actions: TransactionStateMachine.Actions) -> [DeliveryReport] {
        var reports = actions.release
        if actions.begin {
            do {
                try kafka.beginTransaction()
            } catch {
                logger.error("could not begin a Kafka transaction", metadata: ["sink": "\(settings.sinkName)", "error": "\(error)"])
            }
        }
        for held in actions.produce {
            let message = held.message
            do {
                try kafka.produce(topic: message.topic, key: message.key, value: message.value, token: held.token)
            } catch where error.category == .messageTooLarge || error.category == .configuration {
                // Refused for what the message is (too large, unknown topic): it leaves the transaction.
                machine.refused(token: held.token)
                reports.append(DeliveryReport(token: held.token, error: error, topic: message.topic, partition: -1, offset: -1,
                                              size: message.value.count))
            } catch {
                // Refused for the transaction's state (it already failed, e.g. the broker refused an earlier
                // message): the message stays, in its place, and runs again with the transaction.
                _ = machine.delivered([DeliveryReport(token: held.token, error: error, topic: message.topic, partition: -1,
                                                      offset: -1, size: message.value.count)], offsetsToken: Self.offsetsToken)
            }
        }
        if let commit = actions.commit {
            // The sink's position goes into the transaction now; the commit is called once it and the
            // messages are acknowledged (`callCommit`).
            let record = OffsetsRecord(sink: settings.sinkName, position: commit.position, retried: commit.retried, backfills: commit.backfills)
            do {
                try kafka.produce(topic: settings.offsetsTopic, key: Array(settings.offsetsKey.utf8), value: record.json, token: Self.offsetsToken)
            } catch {
                reports += perform(machine.offsetsRecordRefused(error, now: Date()))
            }
        }
        if actions.callCommit { pendingCommit = true }
        if actions.abort { pendingAbort = true }
        if let at = actions.wakeAt { wakeAt = min(wakeAt ?? at, at) }
        if let (messages, position) = actions.committed {
            committedCounter.increment()
            messagesPerTransaction.record(messages)
            logger.debug("transaction committed", metadata: ["sink": "\(settings.sinkName)", "messages": "\(messages)",
                                                             "position": "\(position.map { "\($0)" } ?? "none")"])
        }
        if let error = actions.aborted {
            abortedCounter.increment()
            logger.warning("Kafka transaction aborted; running it again", metadata: [
                "sink": "\(settings.sinkName)", "error": "\(error)", "note": "all of the sink's messages wait for it"])
        }
        if let error = actions.stopped {
            logger.critical(error.isFenced
                ? "another producer took this sink's transactional_id: this sluice commits nothing more for the sink; stop it (another instance delivers now)"
                : "the transactional producer failed for good: the sink delivers nothing more until sluice restarts", metadata: [
                    "sink": "\(settings.sinkName)", "transactional_id": "\(settings.transactionalID)", "error": "\(error)"])
        }
        if actions.callCommit || actions.abort || actions.wakeAt != nil { lock.broadcast() }
        if case .idle = machine.phase, machine.held.isEmpty { lock.broadcast() } // flush waits for this
        return reports
    }

    private func runWorker() {
        defer { workerDone.signal() }
        lock.lock()
        while true {
            if pendingCommit {
                pendingCommit = false
                lock.unlock()
                let result = commitTransaction()
                lock.lock()
                let now = Date()
                let actions = result.map { machine.commitFailed($0, now: now) } ?? machine.commitSucceeded(now: now)
                releaseOutsideLock(perform(actions))
            } else if pendingAbort {
                pendingAbort = false
                lock.unlock()
                var failure: KafkaTransactionError?
                do { try kafka.abortTransaction(timeout: max(10, settings.transactionTimeout)) } catch { failure = error }
                lock.lock()
                releaseOutsideLock(perform(machine.abortFinished(now: Date(), error: failure)))
            } else if stopping {
                break
            } else {
                let now = Date()
                if let at = wakeAt, at <= now {
                    wakeAt = nil
                    releaseOutsideLock(perform(machine.tick(now: now)))
                    continue
                }
                _ = lock.wait(until: min(wakeAt ?? .distantFuture, now.addingTimeInterval(1)))
            }
        }
        lock.unlock()
    }

    /// Called with the lock held: lets it go while the dispatcher hears of the reports.
    private func releaseOutsideLock(_ reports: [DeliveryReport]) {
        guard !reports.isEmpty else { return }
        lock.unlock()
        release(reports)
        lock.lock()
    }

    /// Commits the open transaction (its messages and offsets record are acknowledged); nil when it committed.
    private func commitTransaction() -> KafkaTransactionError? {
        do {
            try kafka.commitTransaction(timeout: max(10, settings.transactionTimeout))
            return nil
        } catch {
            return error
        }
    }
}

/// Lets the producer's delivery callback, made before the producer exists, reach it; weak, so no cycle.
private final class DeliveryRelay: @unchecked Sendable {
    weak var target: TransactionalProducer?
}

/// What an exactly-once sink commits in `offsets_topic` with each Kafka transaction.
struct OffsetsRecord: Equatable {
    var sink: String
    /// The newest stream position in Kafka; the stream's changes up to it are skipped at start.
    var position: MessagePosition?
    /// Parked messages delivered in the transaction (or earlier, while the ledger may still hold them).
    var retried: [MessagePosition]
    /// Backfills' cursors after their newest committed page, by backfill id.
    var backfills: [String: [String]]

    init(sink: String, position: MessagePosition?, retried: [MessagePosition] = [], backfills: [String: [String]] = [:]) {
        self.sink = sink
        self.position = position
        self.retried = retried
        self.backfills = backfills
    }

    var json: [UInt8] {
        var json = JSONWriter(capacity: 128)
        json.raw("{\"sink\":")
        json.string(sink)
        json.raw(",\"commit_lsn\":")
        if let position { json.string(position.commitLSN.description) } else { json.null() }
        json.raw(",\"commit_idx\":")
        if let position { json.number(position.commitIndex) } else { json.null() }
        json.raw(",\"retried\":[")
        for (index, retried) in self.retried.enumerated() {
            if index > 0 { json.raw(",") }
            json.string("\(retried.commitLSN):\(retried.commitIndex)")
        }
        json.raw("],\"backfills\":{")
        for (index, (id, cursor)) in backfills.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { json.raw(",") }
            json.string(id)
            json.raw(":[")
            for (position, value) in cursor.enumerated() {
                if position > 0 { json.raw(",") }
                json.string(value)
            }
            json.raw("]")
        }
        json.raw("}}")
        return json.bytes
    }

    init(decoding bytes: [UInt8], topic: String) throws(KafkaError) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any], let sink = object["sink"] as? String else {
            throw KafkaError(configuration: "offsets_topic \(topic) holds a record sluice cannot read: \(String(decoding: bytes.prefix(200), as: UTF8.self))")
        }
        self.sink = sink
        if let lsnText = object["commit_lsn"] as? String, let lsn = LSN(lsnText), let index = object["commit_idx"] as? Int {
            position = MessagePosition(commitLSN: lsn, commitIndex: index)
        }
        retried = (object["retried"] as? [String] ?? []).compactMap { text in
            guard let colon = text.lastIndex(of: ":"), let lsn = LSN(String(text[..<colon])), let index = Int(text[text.index(after: colon)...])
            else { return nil }
            return MessagePosition(commitLSN: lsn, commitIndex: index)
        }
        backfills = (object["backfills"] as? [String: [String]]) ?? [:]
    }
}
