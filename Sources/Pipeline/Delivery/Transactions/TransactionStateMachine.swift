import DequeModule
import Foundation
import KafkaSink
import Ledger
import SluiceCore

/// One exactly-once sink's Kafka transactions, as a plain value: each method takes an event (a message
/// handed over, a PostgreSQL transaction ended, Kafka's delivery reports, a commit or abort done or
/// failed, a tick of the clock) and returns what its owner must do: begin a transaction, produce these,
/// commit with this position, abort, release these delivery reports to the dispatcher, wake at time T.
///
/// Messages are held until the transaction that carries them commits; only then does the dispatcher
/// hear that they were delivered (and settle their checkpoint tokens). A transaction holds whole
/// PostgreSQL transactions — it is committed only when every message produced into it belongs to a
/// PostgreSQL transaction that ended — unless it reached `maxMessages`, where a larger PostgreSQL
/// transaction is split. A failed transaction is aborted and run again, whole, after a backoff; a
/// message Kafka refuses as too large is released as failed (the dispatcher cancels it) and the
/// transaction runs again without it. A fenced producer never commits again.
struct TransactionStateMachine {
    struct Held {
        /// The dispatcher's delivery id for this attempt (its delivery report carries it).
        var token: UInt
        var position: MessagePosition
        /// A parked message retried from the ledger: outside the stream's order, not part of the position.
        var isRetry: Bool
        /// Behind one reference: a held message is copied several times on its way (into the actions, at the
        /// commit), and a `Message` copied costs a retain per field.
        private let box: MessageBox
        var message: Message { box.message }
        /// Where Kafka put it in the running transaction (its acknowledgement).
        var placed: (partition: Int32, offset: Int64)?
        /// Kafka failed it in the running transaction (the commit will fail, and the transaction run again).
        var failed = false
        /// Kafka refused it as too large: it leaves the transaction when that is aborted.
        var refusal: KafkaError?
        /// The last message of a backfill page: the backfill's cursor after the page, committed with it.
        var backfill: BackfillCursor?

        init(token: UInt, position: MessagePosition, isRetry: Bool, message: Message) {
            self.token = token
            self.position = position
            self.isRetry = isRetry
            box = MessageBox(message)
        }
    }

    final class MessageBox: Sendable {
        let message: Message
        init(_ message: Message) { self.message = message }
    }

    enum Phase: Equatable {
        /// No transaction open.
        case idle
        /// A transaction is open; messages handed over go into it at once.
        case open
        /// Committing the first `count` held messages; new ones wait for the next transaction.
        case committing(count: Int)
        case aborting
        /// Backing off after an aborted transaction; it runs again at `until`.
        case waiting(until: Date)
        /// Another producer took the transactional id (or the producer failed for good): nothing more is committed.
        case stopped

        /// As the console and `/api/status` show it.
        var name: String {
            switch self {
            case .idle: "idle"
            case .open: "open"
            case .committing: "committing"
            case .aborting: "aborting"
            case .waiting: "waiting"
            case .stopped: "stopped"
            }
        }
    }

    /// What to commit: the first `count` held messages, and the sink's position after them.
    struct Commit: Equatable {
        var count: Int
        /// Backfills' cursors after their newest page committed so far, this transaction included.
        var backfills: [String: [String]] = [:]
        /// The newest stream position committed so far, this transaction included; nil while there is none.
        var position: MessagePosition?
        /// Parked messages (by position) delivered in this transaction, and in earlier ones while the
        /// ledger may still hold them.
        var retried: [MessagePosition]
    }

    struct Actions {
        var begin = false
        /// Hand these to Kafka, in this order, inside the open transaction.
        var produce: [Held] = []
        /// Commit these: write the offsets record into the transaction now; the commit itself follows
        /// (`callCommit`) once Kafka acknowledged everything in it, so that the commit does not wait.
        var commit: Commit?
        /// Call commit on the transaction now: every message in it, and the offsets record, has its report.
        var callCommit = false
        var abort = false
        /// Tell the dispatcher: delivered (after a commit), or failed (too large; purged).
        var release: [DeliveryReport] = []
        var wakeAt: Date?
        var committed: (messages: Int, position: MessagePosition?)?
        var aborted: KafkaError?
        var stopped: KafkaTransactionError?
    }

    /// Messages handed over and not yet committed, oldest first.
    private(set) var held = Deque<Held>()
    /// How many of `held` (from the front) are in the open transaction.
    private(set) var produced = 0
    /// Of the produced ones, how many have no report yet.
    private(set) var unreported = 0
    /// Where each held message is: `held[seq - headSeq]` (reports arrive by token, thousands per transaction).
    private var seqByToken: [UInt: Int] = [:]
    private var headSeq = 0
    /// How many of `held` (from the front) belong to PostgreSQL transactions that ended.
    private(set) var complete = 0
    private(set) var phase = Phase.idle
    /// The newest stream position committed (read from `offsets_topic` at start, then each commit's).
    private(set) var committedPosition: MessagePosition?
    /// Aborted runs of the held messages since the last commit.
    private(set) var attempt = 0
    /// Kafka's last error about the running transaction.
    private(set) var lastError: KafkaError?
    /// A commit that failed in a way that allows calling it again, at this time.
    private(set) var commitAgainAt: Date?
    /// An abort that failed without a fatal error is called again at this time (the transaction stays open
    /// in Kafka until an abort succeeds, so nothing may begin before).
    private(set) var abortAgainAt: Date?
    /// The committing transaction's offsets record was acknowledged (or failed).
    private(set) var offsetsReported = false
    /// Commit was called on the committing transaction.
    private(set) var commitCalled = false
    /// Parked messages committed in Kafka whose removal from the ledger is not known to be written yet:
    /// every commit names them again, so a restart after a crash in between finds them in `offsets_topic`.
    private(set) var unconfirmedRetries: Set<MessagePosition> = []
    /// Backfills' cursors after their newest committed page, until the backfill ends.
    private(set) var committedCursors: [String: [String]]
    /// A page's cursor whose messages all left (too large) before they were committed: goes with the next commit.
    private var strayCursors: [String: [String]] = [:]
    let maxMessages: Int
    /// How long a transaction stays open at least, gathering what arrives, before it is committed (unless
    /// it is full): fewer, larger transactions; each costs the coordinator and every partition a marker.
    let linger: Double
    /// When the open transaction began.
    private(set) var openedAt: Date?
    private let jitter: () -> Double

    init(maxMessages: Int, committedPosition: MessagePosition?, committedCursors: [String: [String]] = [:], linger: Double = 0,
         jitter: @escaping () -> Double = { Double.random(in: 0...1) }) {
        self.maxMessages = max(1, maxMessages)
        self.linger = linger
        self.committedPosition = committedPosition
        self.committedCursors = committedCursors
        self.jitter = jitter
    }

    var isStopped: Bool { phase == .stopped }

    // MARK: - Events

    /// The dispatcher hands over a message. A retried parked message is a whole unit on its own: when
    /// no PostgreSQL transaction is half handed over, it may be committed at once.
    mutating func hand(_ message: Message, token: UInt, position: MessagePosition, isRetry: Bool, now: Date) -> Actions {
        var actions = Actions()
        let wasComplete = complete == held.count
        seqByToken[token] = headSeq + held.count
        held.append(Held(token: token, position: position, isRetry: isRetry, message: message))
        if isRetry && wasComplete { complete = held.count }
        switch phase {
        case .idle:
            begin(now: now, &actions)
        case .open:
            produceRest(&actions)
        default:
            break
        }
        commitIfReady(now: now, &actions)
        return actions
    }

    /// Kafka refused a message before taking it (too large for the client, unknown topic): it leaves.
    mutating func refused(token: UInt) {
        guard let index = index(of: token) else { return }
        let gone = held.remove(at: index)
        if index < produced {
            produced -= 1
            if gone.placed == nil && !gone.failed { unreported -= 1 }
        }
        if index < complete { complete -= 1 }
        reindex()
    }

    /// The index in `held` of the message with this token.
    private func index(of token: UInt) -> Int? {
        guard let seq = seqByToken[token] else { return nil }
        let index = seq - headSeq
        return held.indices.contains(index) && held[index].token == token ? index : nil
    }

    /// After a removal inside `held`: the positions by token again.
    private mutating func reindex() {
        headSeq = 0
        seqByToken.removeAll(keepingCapacity: true)
        for (index, held) in held.enumerated() { seqByToken[held.token] = index }
    }

    /// A PostgreSQL transaction ended: everything handed over so far may be committed. A backfill page's
    /// cursor rides on its last message (or, with none held, on the next commit).
    mutating func transactionEnded(backfill: BackfillCursor? = nil, now: Date) -> Actions {
        var actions = Actions()
        if let backfill {
            if held.count > complete { held[held.count - 1].backfill = backfill } else { strayCursors[backfill.backfillID] = backfill.cursor }
        }
        complete = held.count
        commitIfReady(now: now, &actions)
        return actions
    }

    /// Kafka's delivery reports for messages of the running transaction (`offsetsToken`: its offsets record).
    mutating func delivered(_ reports: [DeliveryReport], offsetsToken: UInt) -> Actions {
        var actions = Actions()
        for report in reports {
            if report.token == offsetsToken {
                if case .committing = phase { offsetsReported = true }
                if let error = report.error, !error.isPurged { lastError = error }
                continue
            }
            guard let index = index(of: report.token), index < produced else { continue }
            if held[index].placed == nil && !held[index].failed { unreported -= 1 }
            if let error = report.error {
                if error.category == .messageTooLarge { held[index].refusal = error }
                if !error.isPurged { lastError = error }
                held[index].failed = true
            } else {
                held[index].placed = (report.partition, report.offset)
            }
        }
        callCommitIfReported(&actions)
        return actions
    }

    /// The offsets record could not be written into the transaction: it must be aborted and run again.
    mutating func offsetsRecordRefused(_ error: KafkaError, now: Date) -> Actions {
        offsetsReported = true
        return commitFailed(KafkaTransactionError(error: error, requiresAbort: true), now: now)
    }

    mutating func commitSucceeded(now: Date) -> Actions {
        var actions = Actions()
        guard case .committing(let count) = phase else { return actions }
        let summary = summarize(count: count)
        committedPosition = summary.position
        actions.release.reserveCapacity(count)
        for index in 0..<count {
            let message = held[index].message
            let placed = held[index].placed
            actions.release.append(DeliveryReport(token: held[index].token, error: nil, topic: message.topic,
                                                  partition: placed?.partition ?? -1, offset: placed?.offset ?? -1,
                                                  size: message.value.count))
            seqByToken[held[index].token] = nil
        }
        actions.committed = (count, committedPosition)
        unconfirmedRetries.formUnion(summary.retried)
        committedCursors = summary.cursors
        strayCursors = [:]
        held.removeFirst(count)
        headSeq += count
        produced = 0
        unreported = 0
        complete = max(0, complete - count)
        attempt = 0
        lastError = nil
        commitAgainAt = nil
        offsetsReported = false
        commitCalled = false
        phase = .idle
        if !held.isEmpty {
            begin(now: now, &actions)
            commitIfReady(now: now, &actions)
        }
        return actions
    }

    mutating func commitFailed(_ error: KafkaTransactionError, now: Date) -> Actions {
        var actions = Actions()
        guard case .committing = phase else { return actions }
        lastError = error.error
        if error.isFenced || (error.isFatal && !error.requiresAbort) {
            phase = .stopped
            actions.stopped = error
        } else if error.isRetriable && !error.requiresAbort {
            commitAgainAt = now.addingTimeInterval(Backoff.seconds(attempt: attempt + 1, jitter: jitter()))
            actions.wakeAt = commitAgainAt
        } else {
            phase = .aborting
            offsetsReported = false
            commitCalled = false
            actions.abort = true
        }
        return actions
    }

    /// The transaction was aborted (or the abort failed, and the producer must be given up: `error`).
    mutating func abortFinished(now: Date, error: KafkaTransactionError? = nil) -> Actions {
        var actions = Actions()
        guard phase == .aborting else { return actions }
        if let error, error.isFenced || error.isFatal {
            phase = .stopped
            actions.stopped = error
            return actions
        }
        if let error {
            // Neither done nor fatal (a timeout, a broker away): the same abort is called again after a backoff.
            lastError = error.error
            attempt += 1
            abortAgainAt = now.addingTimeInterval(Backoff.seconds(attempt: attempt, jitter: jitter()))
            actions.wakeAt = abortAgainAt
            return actions
        }
        abortAgainAt = nil
        actions.aborted = lastError
        // Messages Kafka refused as too large leave; the rest run again.
        var refusedAny = false
        var index = 0
        while index < held.count {
            if let refusal = held[index].refusal {
                let gone = held.remove(at: index)
                if index < complete { complete -= 1 }
                if let backfill = gone.backfill {
                    // The page's cursor moves to its message before, if that one is of the same page; else it
                    // goes with the next commit.
                    if index > 0, held[index - 1].backfill == nil, held[index - 1].position.commitLSN == gone.position.commitLSN {
                        held[index - 1].backfill = backfill
                    } else {
                        strayCursors[backfill.backfillID] = backfill.cursor
                    }
                }
                actions.release.append(DeliveryReport(token: gone.token, error: refusal, topic: gone.message.topic, partition: -1,
                                                      offset: -1, size: gone.message.value.count))
                refusedAny = true
            } else {
                held[index].placed = nil
                held[index].failed = false
                index += 1
            }
        }
        produced = 0
        unreported = 0
        if refusedAny { reindex() }
        commitAgainAt = nil
        if refusedAny {
            phase = .idle
            runAgain(now: now, &actions)
        } else {
            attempt += 1
            let until = now.addingTimeInterval(Backoff.seconds(attempt: attempt, jitter: jitter()))
            phase = .waiting(until: until)
            actions.wakeAt = until
        }
        return actions
    }

    /// The clock: a backoff ended, or a commit may be called again.
    mutating func tick(now: Date) -> Actions {
        var actions = Actions()
        switch phase {
        case .waiting(let until) where now >= until:
            phase = .idle
            runAgain(now: now, &actions)
        case .committing where commitAgainAt.map { now >= $0 } == true:
            commitAgainAt = nil
            actions.callCommit = true
        case .aborting where abortAgainAt.map { now >= $0 } == true:
            abortAgainAt = nil
            actions.abort = true
        case .open:
            commitIfReady(now: now, &actions)
        default:
            if let at = commitAgainAt ?? abortAgainAt { actions.wakeAt = at }
            if case .waiting(let until) = phase { actions.wakeAt = until }
        }
        return actions
    }

    /// A backfill ended (its state is saved): its cursor no longer needs to ride along.
    mutating func backfillEnded(_ id: String) {
        committedCursors[id] = nil
        strayCursors[id] = nil
    }

    /// The ledger no longer holds these parked messages (their delivery, or a cancellation, is written).
    mutating func unparksWritten(_ positions: [MessagePosition]) {
        unconfirmedRetries.subtract(positions)
    }

    /// The producer is being replaced or stopped: everything held comes back to the dispatcher as
    /// purged, to be sent again in order (or kept, at a stop, for the next start).
    mutating func purge(with error: KafkaError) -> Actions {
        var actions = Actions()
        actions.release = held.map {
            DeliveryReport(token: $0.token, error: error, topic: $0.message.topic, partition: -1, offset: -1, size: $0.message.value.count)
        }
        held.removeAll()
        seqByToken.removeAll()
        headSeq = 0
        produced = 0
        unreported = 0
        complete = 0
        if phase != .stopped { phase = .idle }
        return actions
    }

    // MARK: - Helpers

    private mutating func runAgain(now: Date, _ actions: inout Actions) {
        guard !held.isEmpty else { return }
        begin(now: now, &actions)
        commitIfReady(now: now, &actions)
    }

    private mutating func begin(now: Date, _ actions: inout Actions) {
        actions.begin = true
        phase = .open
        openedAt = now
        produceRest(&actions)
    }

    private mutating func produceRest(_ actions: inout Actions) {
        while produced < held.count {
            actions.produce.append(held[produced])
            produced += 1
            unreported += 1
        }
    }

    /// Commits when every message in the open transaction belongs to an ended PostgreSQL transaction,
    /// or when the transaction holds `maxMessages` (a larger PostgreSQL transaction is split there).
    private mutating func commitIfReady(now: Date, _ actions: inout Actions) {
        guard phase == .open, produced > 0, complete >= produced || produced >= maxMessages else { return }
        if produced < maxMessages, let openedAt, now < openedAt.addingTimeInterval(linger) {
            actions.wakeAt = openedAt.addingTimeInterval(linger)
            return
        }
        // Everything produced is in the transaction, so all of it is committed.
        phase = .committing(count: produced)
        offsetsReported = false
        commitCalled = false
        actions.commit = commit(count: produced)
        callCommitIfReported(&actions)
    }

    /// Calls the commit once every message of the committing transaction and its offsets record have
    /// their reports: librdkafka's commit then has nothing left to wait for (it would wait spinning).
    private mutating func callCommitIfReported(_ actions: inout Actions) {
        guard case .committing(let count) = phase, !commitCalled, offsetsReported,
              count == produced, unreported == 0 else { return }
        commitCalled = true
        actions.callCommit = true
    }

    private func commit(count: Int) -> Commit {
        let summary = summarize(count: count)
        return Commit(count: count, backfills: summary.cursors, position: summary.position,
                      retried: unconfirmedRetries.union(summary.retried).sorted())
    }

    /// What committing the first `count` held messages records: the newest stream position (never going
    /// back), the retried parked messages among them, and the backfills' cursors. One pass, no copies.
    private func summarize(count: Int) -> (position: MessagePosition?, retried: [MessagePosition], cursors: [String: [String]]) {
        var position = committedPosition
        var retried: [MessagePosition] = []
        var cursors = committedCursors.merging(strayCursors) { _, stray in stray }
        for index in 0..<count {
            let candidate = held[index].position
            if held[index].isRetry {
                retried.append(candidate)
            } else if position.map({ candidate > $0 }) ?? true {
                position = candidate
            }
            if let backfill = held[index].backfill { cursors[backfill.backfillID] = backfill.cursor }
        }
        return (position, retried, cursors)
    }
}

/// A backfill's cursor after one of its pages.
struct BackfillCursor: Equatable, Sendable {
    var backfillID: String
    var cursor: [String]
}
