import DequeModule
import Foundation
import HeapModule
import KafkaSink
import Ledger
import SluiceCore

/// The state of one sink's delivery, as a plain value: each method takes an event (a message
/// submitted, delivery reports, ledger writes done, a tick of the clock, a user's cancel or retry,
/// the producer replaced) and returns the actions its owner must perform. No I/O, no threads, no
/// clock of its own: the time comes with each event, the jitter from the function given at init.
///
/// Groups are independent. A group's messages to one topic and key (one partition) are pipelined,
/// several in flight at once, in order. A group whose message fails is parked in the ledger (the
/// slot can move on) and retried from there, oldest first, with exponential backoff.
struct DeliveryStateMachine {
    struct Group {
        /// Handed to Kafka, oldest first; more than one only while they share a partition.
        var inFlight = FlightQueue()
        /// Messages behind the one in flight, in memory (only while the group is not parked).
        var waiting = Deque<OutgoingMessage>()
        /// Messages of this group in the ledger (including one in flight from it).
        var parked = 0
        /// When the parked head may be tried again.
        var retryAt: Date?
        var isIdle: Bool { inFlight.isEmpty && waiting.isEmpty && parked == 0 }

        /// Whether `next` may be handed to Kafka now: nothing parked before it, and the messages in
        /// flight (if any) go to the same topic and key, so Kafka keeps them in order.
        func admits(_ next: OutgoingMessage, limits: DeliveryLimits) -> Bool {
            guard parked == 0 else { return false }
            // In a Kafka transaction a failure aborts and re-runs all of it, in order: nothing can overtake.
            if limits.transactional { return true }
            guard let last = inFlight.last else { return true }
            return inFlight.count < limits.pipelineDepth && !next.isParked && !last.isParked && next.message.key != nil
                && last.message.key == next.message.key && last.message.topic == next.message.topic
        }
    }

    private(set) var groups: [String: Group] = [:]
    /// Everything else, apart from `groups` so that a group can be changed in place while it changes.
    private(set) var books: Books

    /// `parkedGroups`: what the ledger holds from before (group → number of parked messages).
    init(limits: DeliveryLimits, parkedGroups: [String: Int] = [:], jitter: @escaping () -> Double = { Double.random(in: 0...1) }) {
        for (key, count) in parkedGroups where count > 0 { groups[key] = Group(parked: count) }
        books = Books(limits: limits, jitter: jitter, retryCandidates: Set(groups.keys))
    }

    var limits: DeliveryLimits { books.limits }
    var inFlightByID: [UInt: String] { books.inFlightByID }
    var memoryBytes: Int { books.memoryBytes }
    var unwritten: LedgerWrites { books.unwritten }
    var retryCandidates: Set<String> { books.retryCandidates }
    var cancelledPositions: Set<MessagePosition> { books.cancelledPositions }
    var recentlyDelivered: Deque<RecentDelivery> { books.recentlyDelivered }
    var producerFailed: Bool { books.producerFailed }

    // MARK: - Capacity

    /// True while fewer than max_ack_pending messages are in flight and those in memory — including parks
    /// waiting for their ledger write — fit max_memory_mb.
    var hasCapacity: Bool {
        books.inFlightByID.count < limits.maxAckPending && books.memoryBytes + books.unwrittenParkBytes < limits.maxMemoryBytes
    }
    var inFlightCount: Int { books.inFlightByID.count }
    var parkedCount: Int { groups.values.reduce(0) { $0 + $1.parked } }

    // MARK: - Events

    /// A new message, after the sink's stages.
    mutating func submit(_ result: StageResult, now: Date) -> DeliveryActions {
        var actions = DeliveryActions()
        switch result {
        case .drop(let outgoing):
            actions.counts.filtered += 1
            actions.settle.append(outgoing.checkpointToken)
        case .failed(let outgoing, let stage, let error):
            // In place: a group taken out and put back would cost two more hash lookups per message.
            books.stageFailed(outgoing, stage: stage, error: error, group: &groups[outgoing.group, default: Group()], now: now,
                              actions: &actions)
        case .send(let outgoing):
            books.enqueue(outgoing, group: &groups[outgoing.group, default: Group()], now: now, actions: &actions)
            actions.counts.inFlight = books.inFlightByID.count
        case .tooLarge(let outgoing, let error):
            actions.counts.cancelledTooLarge += 1
            actions.cancel.append((outgoing, error))
            actions.settle.append(outgoing.checkpointToken)
        }
        return actions
    }

    /// A batch of delivery reports from Kafka (or refusals of `produce`, reported the same way).
    mutating func delivered(_ reports: [DeliveryReport], now: Date) -> DeliveryActions {
        var actions = DeliveryActions()
        for report in reports {
            guard let key = books.inFlightByID.removeValue(forKey: report.token), let slot = groups.index(forKey: key) else { continue }
            books.process(report, group: &groups.values[slot], now: now, actions: &actions)
            if groups.values[slot].isIdle { groups.remove(at: slot) }
        }
        actions.counts.inFlight = books.inFlightByID.count
        return actions
    }

    /// The ledger writes the owner takes to perform; answer with `ledgerWritten` or `ledgerWriteFailed`.
    mutating func takeLedgerWrites() -> LedgerWrites {
        defer { books.unwritten = LedgerWrites() }
        return books.unwritten
    }

    /// The writes are durable: parked messages' tokens settle, their groups are retried from the ledger.
    mutating func ledgerWritten(_ writes: LedgerWrites) -> DeliveryActions {
        var actions = DeliveryActions()
        books.unwrittenParkBytes -= writes.parks.reduce(0) { $0 + $1.beforeFunctions.value.count }
        for park in writes.parks {
            books.retryCandidates.insert(park.group)
            if park.checkpointToken != 0 { actions.settle.append(park.checkpointToken) }
        }
        return actions
    }

    /// The writes failed: nothing is settled, so the slot does not move past them; they go first next time.
    mutating func ledgerWriteFailed(_ writes: LedgerWrites) {
        books.unwritten.prepend(writes)
    }

    /// The clock moved: which parked groups are due (nothing in flight, backoff over), as many as
    /// max_ack_pending leaves room for, and when to look again.
    mutating func tick(now: Date) -> DeliveryActions {
        var actions = DeliveryActions()
        let room = max(0, limits.maxAckPending - books.inFlightByID.count)
        // No room for a retry: look again soon (deliveries free room all the time). The candidates are not
        // even looked at — with Kafka away, tens of thousands of parked groups would be scanned and sorted
        // twenty times a second, under the dispatcher's lock.
        guard room > 0 else {
            if !books.retryCandidates.isEmpty { actions.wakeAt = now.addingTimeInterval(0.05) }
            return actions
        }
        // The due groups with the smallest keys (a stable order), at most `room` of them: a bounded heap,
        // so that many due groups cost O(n log room), not a sort of them all.
        var due = Heap<String>()
        var stale: [String] = []
        var more = false
        for key in books.retryCandidates {
            guard let group = groups[key], group.parked > 0 else {
                stale.append(key)
                continue
            }
            guard group.inFlight.isEmpty else { continue }
            let at = group.retryAt ?? .distantPast
            if at <= now {
                due.insert(key)
                if due.count > room {
                    due.removeMax()
                    more = true
                }
            } else {
                actions.wakeAt = min(actions.wakeAt ?? at, at)
            }
        }
        for key in stale { books.retryCandidates.remove(key) }
        if more {
            let soon = now.addingTimeInterval(0.05)
            actions.wakeAt = min(actions.wakeAt ?? soon, soon)
        }
        actions.retry = due.unordered.sorted()
        return actions
    }

    /// Whether a group's parked head at `position`, just read from the ledger, is still to be tried (no
    /// message of its group in flight, not unparked or cancelled meanwhile). Checked before running the
    /// stages on it, and again by `retryLoaded`.
    func shouldRetry(group key: String, position: MessagePosition) -> Bool {
        guard let group = groups[key], group.parked > 0, group.inFlight.isEmpty else { return false }
        return !books.unwritten.unparks.contains(position) && !books.cancelledPositions.contains(position)
    }

    /// What came of a group's parked head, read from the ledger and run through the stages again
    /// (nil: the ledger holds nothing for the group).
    mutating func retryLoaded(group key: String, _ result: StageResult?, now: Date) -> DeliveryActions {
        var actions = DeliveryActions()
        guard let result else {
            // Nothing left in the ledger for this group (a replayed duplicate was ignored): back to normal.
            let writing = books.unwritten.parks.contains { $0.group == key }
            modify(key) { group, _ in
                guard group.inFlight.isEmpty, !writing else { return }
                group.parked = 0
                group.retryAt = nil
            }
            return actions
        }
        let position: MessagePosition
        switch result {
        case .send(let outgoing), .drop(let outgoing), .failed(let outgoing, _, _), .tooLarge(let outgoing, _):
            position = outgoing.position
        }
        // Cancelled or unparked meanwhile, or a message of its group in flight: nothing to do.
        guard shouldRetry(group: key, position: position) else { return actions }
        switch result {
        case .send(var outgoing):
            books.startFlight(&outgoing, now: now)
            groups[key]?.inFlight.append(outgoing)
            actions.produce.append(outgoing)
            actions.counts.sent += 1
            actions.counts.inFlight = books.inFlightByID.count
        case .drop(let outgoing), .tooLarge(let outgoing, _):
            if case .tooLarge(_, let error) = result {
                actions.counts.cancelledTooLarge += 1
                actions.cancel.append((outgoing, error))
            } else {
                actions.counts.filtered += 1
            }
            books.unwritten.unparks.append(outgoing.position)
            actions.counts.parked -= 1
            actions.wakeWorker = true
            modify(key) { group, _ in
                group.parked -= 1
                group.retryAt = nil
            }
        case .failed(let outgoing, let stage, let error):
            let attempt = outgoing.deliverCount + 1
            actions.counts.failedAttempts += 1
            actions.counts.functionFailures += 1
            books.unwritten.attempts.append((outgoing.position, attempt, error))
            groups[key]?.retryAt = now.addingTimeInterval(books.backoff(attempt: attempt))
            actions.wakeWorker = true
            actions.notices.append(.retryFailed(stage: stage, table: outgoing.table, attempt: attempt, error: error))
        }
        return actions
    }

    /// A user asks for a failing group to be tried now: its backoff ends. False if it is not failing.
    mutating func retryNow(group key: String, now: Date) -> Bool {
        guard groups[key]?.parked ?? 0 > 0 else { return false }
        groups[key]?.retryAt = now
        return true
    }

    enum CancelRefusal: Error { case beingDelivered, notFailing }

    /// A user asks to cancel a failing message: refused while it is being delivered; otherwise it is
    /// never sent again, and the owner removes it from the ledger (answer with `cancelRecorded`).
    mutating func cancelRequested(group key: String, position: MessagePosition) -> CancelRefusal? {
        if groups[key]?.inFlight.contains(where: { $0.position == position }) == true { return .beingDelivered }
        books.cancelledPositions.insert(position)
        return nil
    }

    /// The ledger recorded the user's cancellation: the group moves on.
    mutating func cancelRecorded(group key: String) -> DeliveryActions {
        var actions = DeliveryActions()
        actions.counts.cancelledByUser += 1
        actions.counts.parked -= 1
        actions.wakeWorker = true
        modify(key) { group, _ in
            // The next parked message (if any) is not held back by the cancelled one's backoff.
            group.parked = max(0, group.parked - 1)
            group.retryAt = nil
        }
        return actions
    }

    /// The producer can send nothing more (librdkafka raised a fatal error).
    mutating func producerFatal() -> DeliveryActions {
        var actions = DeliveryActions()
        books.producerFatal(actions: &actions)
        return actions
    }

    /// A new producer replaced the failed one.
    mutating func producerReplaced() {
        books.producerFailed = false
    }

    /// The delivered messages the ledger has not saved yet (marked saved).
    mutating func takeUnsavedDeliveries() -> [RecentDelivery] {
        defer { books.deliveredUnsaved = 0 }
        return Array(books.recentlyDelivered.suffix(books.deliveredUnsaved))
    }

    /// Changes a group (created if missing), removed once idle. For the rarer events; the hot ones
    /// change their group in place.
    private mutating func modify(_ key: String, _ change: (inout Group, inout Books) -> Void) {
        var group = groups.removeValue(forKey: key) ?? Group()
        change(&group, &books)
        if !group.isIdle { groups[key] = group }
    }
}

extension DeliveryStateMachine {
    /// The state machine's bookkeeping besides its groups.
    struct Books {
        let limits: DeliveryLimits
        /// A number in 0...1 for each backoff.
        let jitter: () -> Double
        /// The group of each message in flight, by its delivery token.
        var inFlightByID: [UInt: String] = [:]
        var nextID: UInt = 1
        /// Bytes of the messages in memory (in flight or waiting), counted against `max_memory_mb`.
        var memoryBytes = 0
        /// Ledger writes decided and not yet performed.
        var unwritten = LedgerWrites()
        /// Bytes of the parks in `unwritten` (and in the owner's hands until `ledgerWritten`): held in
        /// memory until written, so counted against max_memory_mb too — with the state file unwritable
        /// (a full disk), reading pauses instead of memory growing.
        var unwrittenParkBytes = 0
        /// Groups that may have parked messages: those the ledger held at start and every group whose
        /// parks were written since. A group leaves once it has nothing parked, so a tick looks at these only.
        var retryCandidates: Set<String>
        /// Positions a user cancelled: never sent again, even by a retry that read the ledger just before.
        var cancelledPositions: Set<MessagePosition> = []
        /// The last messages delivered, newest last.
        var recentlyDelivered = Deque<RecentDelivery>()
        /// How many of `recentlyDelivered` the ledger has not saved yet.
        var deliveredUnsaved = 0
        /// The producer failed and its replacement has not been made yet.
        var producerFailed = false

        init(limits: DeliveryLimits, jitter: @escaping () -> Double, retryCandidates: Set<String>) {
            self.limits = limits
            self.jitter = jitter
            self.retryCandidates = retryCandidates
        }

        func backoff(attempt: Int) -> Double { Backoff.seconds(attempt: attempt, jitter: jitter()) }

        /// Gives a message the token of a new attempt, before it joins its group's `inFlight`.
        mutating func startFlight(_ outgoing: inout OutgoingMessage, now: Date) {
            outgoing.deliveryID = nextID
            outgoing.sentAt = now
            inFlightByID[nextID] = outgoing.group
            nextID += 1
        }

        /// A new message joins its group: parked behind earlier parked ones, in flight when the group
        /// admits it, else waiting.
        mutating func enqueue(_ message: OutgoingMessage, group: inout Group, now: Date, actions: inout DeliveryActions) {
            var outgoing = message
            if group.parked > 0 {
                park([outgoing], in: &group, actions: &actions)
                return
            }
            outgoing.memoryCost += outgoing.message.value.count
            memoryBytes += outgoing.memoryCost
            if group.waiting.isEmpty && group.admits(outgoing, limits: limits) {
                startFlight(&outgoing, now: now)
                group.inFlight.append(outgoing)
                actions.produce.append(outgoing)
                actions.counts.sent += 1
            } else {
                group.waiting.append(outgoing)
            }
        }

        /// A stage failed a new message: park it as it was before the stages, its group behind it.
        mutating func stageFailed(_ outgoing: OutgoingMessage, stage: FailedStage, error: String, group: inout Group,
                                  now: Date, actions: inout DeliveryActions) {
            if group.parked > 0 {
                park([outgoing], in: &group, actions: &actions)
                return
            }
            var failed = outgoing
            failed.deliverCount = 1
            failed.lastError = error
            // Messages waiting behind the group's flight are older: they park first, so the retries
            // from the ledger (oldest first) keep the group's order.
            var parking = Array(group.waiting)
            group.waiting.removeAll()
            for waiting in parking { memoryBytes -= waiting.memoryCost }
            parking.append(failed)
            park(parking, in: &group, actions: &actions)
            group.retryAt = now.addingTimeInterval(backoff(attempt: 1))
            actions.counts.functionFailures += 1
            actions.notices.append(.stageFailed(stage: stage, table: outgoing.table, key: outgoing.keyText, error: error))
        }

        /// Queues messages for the ledger as parked, behind whatever the group has parked already.
        mutating func park(_ messages: [OutgoingMessage], in group: inout Group, actions: inout DeliveryActions) {
            for var message in messages {
                message.isParked = true
                unwrittenParkBytes += message.beforeFunctions.value.count
                unwritten.parks.append(message)
            }
            group.parked += messages.count
            actions.counts.parked += messages.count
            actions.wakeWorker = true
        }

        mutating func producerFatal(actions: inout DeliveryActions) {
            guard !producerFailed else { return }
            producerFailed = true
            actions.replaceProducer = true
            actions.wakeWorker = true
        }

        /// One delivery report for a message of `group`.
        mutating func process(_ report: DeliveryReport, group: inout Group, now: Date, actions: inout DeliveryActions) {
            guard let index = group.inFlight.firstIndex(where: { $0.deliveryID == report.token }) else { return }
            var outgoing = group.inFlight.remove(at: index)
            actions.counts.reported += 1
            if !outgoing.isParked { memoryBytes -= outgoing.memoryCost }
            outgoing.deliverCount += 1

            if let error = report.error, error.category != .messageTooLarge {
                failed(outgoing, error: error, group: &group, now: now, actions: &actions)
                return
            }
            if let error = report.error {
                actions.counts.cancelledTooLarge += 1
                actions.cancel.append((outgoing, error))
            } else {
                record(delivered: outgoing, report: report, now: now, actions: &actions)
            }
            if outgoing.isParked {
                // A retry got through: the group's next parked message may go at once.
                unwritten.unparks.append(outgoing.position)
                group.parked -= 1
                group.retryAt = nil
                actions.counts.parked -= 1
                actions.wakeWorker = true
            } else {
                // A live message; a backoff of parked ones behind it (a stage failed them) still holds.
                actions.settle.append(outgoing.checkpointToken)
            }
            while let following = group.waiting.first, group.admits(following, limits: limits) {
                var flying = group.waiting.removeFirst()
                startFlight(&flying, now: now)
                group.inFlight.append(flying)
                actions.produce.append(flying)
                actions.counts.sent += 1
            }
        }

        /// Kafka failed a message: park it and everything behind it, retry from the ledger later.
        mutating func failed(_ message: OutgoingMessage, error: KafkaError, group: inout Group, now: Date,
                             actions: inout DeliveryActions) {
            var outgoing = message
            outgoing.lastError = error.description
            actions.counts.failedAttempts += 1
            // A fatal error, or a failure with later messages of the group still in flight: replace the
            // producer, which fails what it holds, so nothing behind this message overtakes it. (Purged
            // messages come from a producer already being replaced.)
            if error.category == .fatal || (!group.inFlight.isEmpty && !error.isPurged) {
                producerFatal(actions: &actions)
            }
            if outgoing.isParked {
                unwritten.attempts.append((outgoing.position, outgoing.deliverCount, error.description))
                actions.wakeWorker = true
            } else {
                var parking = [outgoing]
                while let waiting = group.waiting.popFirst() {
                    memoryBytes -= waiting.memoryCost
                    parking.append(waiting)
                }
                park(parking, in: &group, actions: &actions)
                actions.notices.append(.deliveryFailed(table: outgoing.table, key: outgoing.keyText, messages: parking.count,
                                                       error: error.description, category: error.category.rawValue))
            }
            group.retryAt = now.addingTimeInterval(backoff(attempt: outgoing.deliverCount))
        }

        mutating func record(delivered outgoing: OutgoingMessage, report: DeliveryReport, now: Date,
                             actions: inout DeliveryActions) {
            actions.counts.delivered += 1
            if outgoing.commitTime != 0 {
                actions.counts.commitToAck.append(now.timeIntervalSince1970 - (Double(outgoing.commitTime) / 1e6 + 946_684_800))
            }
            // Kept as it is (one reference); made into a DeliveredMessage only when shown or saved.
            recentlyDelivered.append(RecentDelivery(outgoing: outgoing, topic: report.topic, partition: report.partition,
                                                    offset: report.offset, size: report.size, deliveredAt: now))
            if recentlyDelivered.count > StateLimits.deliveredKept { recentlyDelivered.removeFirst() }
            let aged = recentlyDelivered.count - StateLimits.recentBodiesKept - 1
            if aged >= 0, recentlyDelivered[aged].hasLargeBodies { recentlyDelivered[aged].dropLargeBodies() }
            deliveredUnsaved = min(deliveredUnsaved + 1, recentlyDelivered.count)
        }
    }
}

extension OutgoingMessage {
    /// The Kafka key as text, for log lines.
    var keyText: String { message.key.map { String(decoding: $0, as: UTF8.self) } ?? "" }
}
