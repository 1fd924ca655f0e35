import DequeModule
import Foundation
import Functions
import KafkaSink
import Ledger
import Logging
import PostgresSource
import SluiceCore

/// One message on its way to Kafka, with what the dispatcher knows about it.
struct OutgoingMessage: Sendable {
    /// What a message is, shared by its copies: queues, flights and reports pass one reference around
    /// instead of retaining every string and buffer. Replaced, never changed, when one of them is set.
    final class Content: Sendable {
        let group: String
        let table: String
        let message: Message
        let original: Message?

        init(group: String, table: String, message: Message, original: Message?) {
            self.group = group
            self.table = table
            self.message = message
            self.original = original
        }
    }

    private var content: Content
    var position: MessagePosition
    var group: String { content.group }
    var table: String { content.table }
    /// The message as it goes to Kafka (after the sink's functions).
    var message: Message {
        get { content.message }
        set { content = Content(group: content.group, table: content.table, message: newValue, original: content.original) }
    }
    /// The message as Sluice encoded it, before the sink's functions, when they changed it: this is
    /// what the ledger keeps, so a retry runs the functions again (fixed ones, after a restart).
    var original: Message? {
        get { content.original }
        set { content = Content(group: content.group, table: content.table, message: content.message, original: newValue) }
    }
    /// The checkpoint token to acknowledge once the message is safe; 0 once it was settled by parking.
    var checkpointToken: UInt
    var deliverCount = 0
    var lastError: String?
    /// The message lives in the ledger and must be removed from it once delivered or cancelled.
    var isParked = false
    var action: Action = .insert
    /// The transaction's commit time (µs since 2000-01-01), for the commit → ack latency; 0 if unknown.
    var commitTime: Int64 = 0
    /// When it was last handed to Kafka.
    var sentAt: Date?
    /// The token of its current attempt, matching the delivery report.
    var deliveryID: UInt = 0

    /// Sets the message and the one from before the functions (or enrichment) at once.
    mutating func replace(message: Message, original: Message?) {
        content = Content(group: content.group, table: content.table, message: message, original: original)
    }

    /// What the ledger keeps of it.
    var beforeFunctions: Message { content.original ?? content.message }

    /// Bytes held in memory for it: also the copy before functions when a transform made a new value
    /// (filters and routing share the encoded bytes). Set once, at submit.
    var memoryCost = 0

    init(position: MessagePosition, group: String, table: String, message: Message, original: Message? = nil,
         checkpointToken: UInt, deliverCount: Int = 0, lastError: String? = nil, isParked: Bool = false,
         action: Action = .insert, commitTime: Int64 = 0) {
        content = Content(group: group, table: table, message: message, original: original)
        self.position = position
        self.checkpointToken = checkpointToken
        self.deliverCount = deliverCount
        self.lastError = lastError
        self.isParked = isParked
        self.action = action
        self.commitTime = commitTime
    }
}

/// A delivered message as the dispatcher remembers it, with where Kafka put it.
struct RecentDelivery: Sendable {
    var outgoing: OutgoingMessage
    var topic: String
    var partition: Int32
    var offset: Int64
    var size: Int
    var deliveredAt: Date
    /// Bodies larger than the console shows: let go of once the message is no longer recent.
    let valueTooLarge: Bool
    let originalTooLarge: Bool
    var hasLargeBodies: Bool { valueTooLarge || originalTooLarge }

    init(outgoing: OutgoingMessage, topic: String, partition: Int32, offset: Int64, size: Int, deliveredAt: Date) {
        self.outgoing = outgoing
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.size = size
        self.deliveredAt = deliveredAt
        valueTooLarge = outgoing.message.value.count > Dispatcher.valueKeptBytes
        originalTooLarge = (outgoing.original?.value.count ?? 0) > Dispatcher.valueKeptBytes
    }

    var position: MessagePosition { outgoing.position }

    /// Lets go of bodies larger than the console shows, once the message is no longer among the few
    /// whose bodies `sluice fn test --recent` needs (each entry passes that point once).
    mutating func dropLargeBodies() {
        if valueTooLarge { outgoing.message.value = [] }
        if originalTooLarge { outgoing.original = nil }
    }

    func delivered(sink: String) -> DeliveredMessage {
        let value = outgoing.message.value
        return DeliveredMessage(
            sink: sink, group: outgoing.group, position: outgoing.position, table: outgoing.table, topic: topic,
            key: outgoing.message.key.map { String(decoding: $0, as: UTF8.self) }, size: size, partition: partition,
            offset: offset, deliverCount: outgoing.deliverCount, deliveredAt: deliveredAt, action: outgoing.action.rawValue,
            recordPKs: outgoing.message.recordPKs, value: valueTooLarge ? nil : value)
    }
}

/// A group's messages in flight, oldest first. Most groups have one message in flight at a time (a row
/// changed once), so the first is kept inline and only a pipelined hot row's further messages take a
/// Deque's storage: a new group costs no allocation of its own.
struct FlightQueue: RandomAccessCollection {
    /// nil only when the queue is empty.
    private var head: OutgoingMessage?
    private var rest = Deque<OutgoingMessage>()

    var startIndex: Int { 0 }
    var endIndex: Int { head == nil ? 0 : 1 + rest.count }

    subscript(position: Int) -> OutgoingMessage {
        precondition(position >= 0 && position < endIndex, "FlightQueue index out of range")
        return position == 0 ? head.unsafelyUnwrapped : rest[position - 1]
    }

    mutating func append(_ outgoing: OutgoingMessage) {
        if head == nil { head = outgoing } else { rest.append(outgoing) }
    }

    @discardableResult
    mutating func remove(at position: Int) -> OutgoingMessage {
        precondition(position >= 0 && position < endIndex, "FlightQueue index out of range")
        guard position == 0 else { return rest.remove(at: position - 1) }
        let first = head.unsafelyUnwrapped
        head = rest.popFirst()
        return first
    }
}

/// Delivers one sink's messages, groups independent of each other. A group's messages that go to the
/// same topic and key (one partition) are pipelined: several in flight at once, in order, which the
/// idempotent producer keeps across retries and broker outages. A group whose message fails is parked
/// in the ledger (durably, so the slot can move on) and retried from there one message at a time,
/// with exponential backoff, in order.
final class Dispatcher: @unchecked Sendable {
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

        /// Whether `next` may be handed to Kafka now: nothing parked or waiting before it, and the
        /// messages in flight (if any) go to the same topic and key, so Kafka keeps them in order.
        func admits(_ next: OutgoingMessage, limit: Int) -> Bool {
            guard parked == 0 else { return false }
            guard let last = inFlight.last else { return true }
            return inFlight.count < limit && !next.isParked && !last.isParked && next.message.key != nil
                && last.message.key == next.message.key && last.message.topic == next.message.topic
        }
    }

    /// Messages of one group in flight at once (a hot row): enough to fill librdkafka's batches.
    var pipelineDepth: Int { min(sink.destination.maxAckPending, 1_000) }

    let sink: SinkConfig
    /// Creates this sink's producer; called again when one hits a fatal error.
    let makeProducer: () throws -> KafkaProducer
    let ledger: DeliveryLedger
    let logger: Logger
    let metrics: SinkMetrics
    /// Acknowledges checkpoint tokens (the message is in Kafka, parked or cancelled).
    let settle: @Sendable ([UInt]) -> Void
    let maxMemoryBytes: Int
    /// The sink's functions: one instance for the replication thread, one for retries from the ledger.
    private let liveFunctions: SinkFunctions?
    private let retryFunctions: SinkFunctions?
    /// The sink's enrichment query for retries from the ledger (live messages pass an EnrichmentStage first).
    private let retryEnrichment: EnrichmentQuery?

    let lock = NSCondition()
    var groups: [String: Group] = [:]
    var inFlightByID: [UInt: String] = [:]
    private var nextID: UInt = 1
    private var ungroupedCounter: UInt64 = 0
    private var memoryBytes = 0
    /// Messages to write to the ledger as parked. Every park passes through here: the ledger worker
    /// learns from it which groups have parked messages to retry.
    private var pendingParks: [OutgoingMessage] = []
    var pendingUnparks: [MessagePosition] = []
    private var pendingAttempts: [(MessagePosition, Int, String)] = []
    /// The last messages delivered, newest last: shown by the console, saved to the ledger every
    /// second, and (their bodies before functions) used by `sluice fn test --recent`.
    var recentlyDelivered = Deque<RecentDelivery>()
    private var deliveredUnsaved = 0
    private var stopping = false
    /// Positions a user cancelled: never sent again, even by a retry that read the ledger just before.
    var cancelledPositions: Set<MessagePosition> = []
    private var producer: KafkaProducer
    /// Producers replaced after a fatal error, kept until their last delivery reports came back.
    private var retiredProducers: [KafkaProducer] = []
    private var producerFailed = false
    private var worker: Thread?
    private let workerDone = DispatchSemaphore(value: 0)

    init(sink: SinkConfig, makeProducer: @escaping () throws -> KafkaProducer, ledger: DeliveryLedger, logger: Logger,
         metrics: SinkMetrics, databaseParameters: [(String, String)] = [], settle: @escaping @Sendable ([UInt]) -> Void) throws {
        retryEnrichment = sink.enrichment.map {
            EnrichmentQuery(function: $0, connectionParameters: databaseParameters, valueFormat: sink.valueFormat)
        }
        self.sink = sink
        self.makeProducer = makeProducer
        self.producer = try makeProducer()
        self.ledger = ledger
        self.logger = logger
        self.metrics = metrics
        self.settle = settle
        self.maxMemoryBytes = sink.maxMemoryMB * 1_048_576
        if sink.hasFunctions {
            liveFunctions = try SinkFunctions(sink: sink)
            retryFunctions = try SinkFunctions(sink: sink)
        } else {
            liveFunctions = nil
            retryFunctions = nil
        }
        for (group, count) in try ledger.parkedGroups(sink: sink.name) {
            groups[group] = Group(parked: count)
        }
        let parked = groups.values.reduce(0) { $0 + $1.parked }
        if parked > 0 {
            logger.notice("delivering parked messages from the ledger first",
                          metadata: ["sink": "\(sink.name)", "messages": "\(parked)", "groups": "\(groups.count)"])
        }
        metrics.parked(total: parked)
        let thread = Thread { [self] in runWorker() }
        thread.name = "sluice-dispatch-\(sink.name)"
        worker = thread
        thread.start()
    }

    // MARK: - Grouping

    /// The group a change belongs to: table plus primary key (or the configured group columns).
    /// Ungrouped messages (grouping off, or a table without a key) each get a group of their own.
    func groupKey(for change: Change, message: Message) -> String {
        if sink.messageGrouping {
            if !sink.groupColumns.isEmpty,
               let columns = sink.groupColumns[TableName(schema: change.relation.schema, name: change.relation.name)] {
                let row = (change.action == .delete ? change.old : change.new) ?? change.old
                let values = columns.map { name in
                    change.relation.columns.firstIndex { $0.name == name }.flatMap { row?.text(at: $0) } ?? ""
                }
                return change.relation.qualifiedName + "\u{1F}" + values.joined(separator: "\u{1F}")
            }
            if !message.recordPKs.isEmpty {
                var key = change.relation.qualifiedName
                key.reserveCapacity(message.recordPKs.reduce(key.utf8.count) { $0 + 1 + $1.utf8.count })
                for pk in message.recordPKs {
                    key.append("\u{1F}")
                    key.append(pk)
                }
                return key
            }
        }
        lock.lock()
        defer { lock.unlock() }
        ungroupedCounter += 1
        return "\u{0}\(ungroupedCounter)"
    }

    // MARK: - Submitting (replication thread)

    /// Takes a message as Sluice encoded it; runs the sink's functions on it first (on `enriched`, the
    /// message with its enrichment, when the sink has one). A message that failed before (`failure`,
    /// e.g. its enrichment) is parked as encoded.
    func submit(_ encoded: OutgoingMessage, enriched: Message? = nil, failure earlier: String? = nil) {
        var outgoing = encoded
        var failure = earlier
        if let enriched {
            outgoing.replace(message: enriched, original: encoded.message)
            outgoing.memoryCost = encoded.message.value.count
        }
        if let liveFunctions, failure == nil {
            let input = outgoing.message
            switch liveFunctions.apply(to: input) {
            case .send(let message):
                // Replaced only when the functions changed something (a filter that keeps, or a route to
                // the default topic and key, leaves the message as it was: nothing to remember).
                if liveFunctions.transformsValue || message.topic != input.topic || message.key != input.key {
                    outgoing.replace(message: message, original: encoded.message)
                }
                if liveFunctions.transformsValue { outgoing.memoryCost = encoded.message.value.count }
            case .drop:
                metrics.filtered()
                settle([encoded.checkpointToken])
                return
            case .failed(let error):
                failure = error
            }
        }
        let key = outgoing.group
        lock.lock()
        let toProduce = enqueue(&outgoing, encoded: encoded, failure: failure, earlier: earlier, group: &groups[key, default: Group()])
        let producer = self.producer
        lock.unlock()
        if let toProduce { produce(toProduce, with: producer) }
    }

    /// Puts a submitted message into its group (in place, under the lock): parked behind earlier
    /// parked ones or after a failed function, in flight when the group admits it, else waiting.
    /// Returns the message to hand to Kafka, if any.
    private func enqueue(_ outgoing: inout OutgoingMessage, encoded: OutgoingMessage, failure: String?, earlier: String?,
                         group: inout Group) -> OutgoingMessage? {
        var toProduce: OutgoingMessage?
        if group.parked > 0 {
            var parked = encoded
            parked.isParked = true
            pendingParks.append(parked)
            group.parked += 1
            metrics.parked(change: 1)
            lock.broadcast()
        } else if let failure {
            // A function failed: park the message as it was before the functions, hold its group behind it.
            var parked = encoded
            parked.isParked = true
            parked.deliverCount = 1
            parked.lastError = failure
            pendingParks.append(parked)
            group.parked += 1
            group.retryAt = Date().addingTimeInterval(Self.backoff(attempt: 1))
            metrics.parked(change: 1)
            metrics.functionFailed()
            lock.broadcast()
            logger.warning(earlier == nil ? "a function failed; parking the message and its group, retrying"
                                          : "enrichment failed; parking the message and its group, retrying", metadata: [
                "sink": "\(sink.name)", "table": "\(encoded.table)", "key": "\(Self.text(encoded.message.key))", "error": "\(failure)"])
        } else if group.waiting.isEmpty && group.admits(outgoing, limit: pipelineDepth) {
            outgoing.memoryCost += outgoing.message.value.count
            startFlight(&outgoing)
            group.inFlight.append(outgoing)
            toProduce = outgoing
            memoryBytes += outgoing.memoryCost
        } else {
            outgoing.memoryCost += outgoing.message.value.count
            group.waiting.append(outgoing)
            memoryBytes += outgoing.memoryCost
        }
        return toProduce
    }

    /// True while there is room: fewer than max_ack_pending messages handed to Kafka and the
    /// messages held in memory within max_memory_mb.
    var hasCapacity: Bool {
        lock.lock()
        defer { lock.unlock() }
        return inFlightByID.count < sink.destination.maxAckPending && memoryBytes < maxMemoryBytes
    }

    var inFlightCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return inFlightByID.count
    }

    // MARK: - Producing

    /// Gives a message the token of a new attempt; called under the lock, before it joins `inFlight`.
    private func startFlight(_ outgoing: inout OutgoingMessage) {
        outgoing.deliveryID = nextID
        outgoing.sentAt = Date()
        inFlightByID[nextID] = outgoing.group
        nextID += 1
    }

    private func produce(_ outgoing: OutgoingMessage) {
        lock.lock()
        let producer = self.producer
        lock.unlock()
        produce(outgoing, with: producer)
    }

    /// Hands a message to `producer`, the current one when the caller last held the lock.
    private func produce(_ outgoing: OutgoingMessage, with producer: KafkaProducer) {
        if let refusal = send(outgoing, with: producer) { delivered([refusal]) }
    }

    /// Hands a message to `producer`; a message refused before reaching a broker (too large for
    /// librdkafka, unknown topic, …) comes back as the failed delivery report it is in all but name,
    /// for the caller to pass to `delivered` once it no longer holds the lock.
    private func send(_ outgoing: OutgoingMessage, with producer: KafkaProducer) -> DeliveryReport? {
        let id = outgoing.deliveryID
        metrics.sent()
        do {
            try producer.produce(topic: outgoing.message.topic, key: outgoing.message.key, value: outgoing.message.value, token: id)
            return nil
        } catch {
            return DeliveryReport(token: id, error: error, topic: outgoing.message.topic, partition: -1, offset: -1,
                                  size: outgoing.message.value.count, payload: nil)
        }
    }

    // MARK: - Delivery reports (Kafka event thread)

    func delivered(_ reports: [DeliveryReport]) {
        var tokens: [UInt] = []
        var next: [OutgoingMessage] = []
        var cancelled: [(OutgoingMessage, KafkaError)] = []
        let now = Date() // one reading for the batch of reports
        lock.lock()
        for report in reports {
            guard let key = inFlightByID.removeValue(forKey: report.token), let slot = groups.index(forKey: key) else { continue }
            // The group is changed in place: a copy would copy its queues, for every report.
            if process(report, group: &groups.values[slot], now: now, tokens: &tokens, next: &next, cancelled: &cancelled) {
                groups.remove(at: slot)
            }
        }
        lock.broadcast()
        // Messages that moved from waiting into flight go to Kafka before the lock is let go: the next
        // message of their group that the replication thread admits must not reach Kafka before them.
        var refused: [DeliveryReport] = []
        for outgoing in next {
            if let refusal = send(outgoing, with: producer) { refused.append(refusal) }
        }
        lock.unlock()

        for (outgoing, error) in cancelled { cancelTooLarge(outgoing, error: error) }
        settle(tokens) // also when empty: capacity may have been freed
        if !refused.isEmpty { delivered(refused) }
    }

    /// One delivery report for a message of `group` (under the lock). Returns true when the group
    /// is idle afterwards and can go.
    private func process(_ report: DeliveryReport, group: inout Group, now: Date, tokens: inout [UInt], next: inout [OutgoingMessage],
                         cancelled: inout [(OutgoingMessage, KafkaError)]) -> Bool {
        guard let index = group.inFlight.firstIndex(where: { $0.deliveryID == report.token }) else { return false }
        var outgoing = group.inFlight.remove(at: index)
        metrics.reported()
        if !outgoing.isParked { memoryBytes -= outgoing.memoryCost }
        outgoing.deliverCount += 1

        if let error = report.error, error.category != .messageTooLarge {
            // Failed: park this message and everything behind it, retry from the ledger later.
            outgoing.lastError = error.description
            // A fatal error, or a failure with later messages of the group still in flight: replace
            // the producer, which fails what it holds, so nothing behind this message overtakes it.
            // (Purged messages come from a producer already being replaced.)
            if error.category == .fatal || (!group.inFlight.isEmpty && !error.isPurged) { producerFailed = true }
            metrics.failedAttempt()
            if outgoing.isParked {
                pendingAttempts.append((outgoing.position, outgoing.deliverCount, error.description))
            } else {
                outgoing.isParked = true
                var parking = [outgoing]
                while let waiting = group.waiting.popFirst() {
                    memoryBytes -= waiting.memoryCost
                    var parked = waiting
                    parked.isParked = true
                    parking.append(parked)
                }
                group.parked += parking.count
                pendingParks.append(contentsOf: parking)
                metrics.parked(change: parking.count)
                logger.warning("delivery failed; parking the group and retrying", metadata: [
                    "sink": "\(sink.name)", "table": "\(outgoing.table)", "key": "\(Self.text(outgoing.message.key))",
                    "messages": "\(parking.count)", "error": "\(error)", "category": "\(error.category.rawValue)"])
            }
            group.retryAt = Date().addingTimeInterval(Self.backoff(attempt: outgoing.deliverCount))
            return false
        }

        if let error = report.error {
            cancelled.append((outgoing, error))
        } else {
            record(delivered: outgoing, report: report, at: now)
        }
        if outgoing.isParked {
            pendingUnparks.append(outgoing.position)
            group.parked -= 1
            metrics.parked(change: -1)
        } else {
            tokens.append(outgoing.checkpointToken)
        }
        group.retryAt = nil
        while let following = group.waiting.first, group.admits(following, limit: pipelineDepth) {
            var flying = following
            group.waiting.removeFirst()
            startFlight(&flying)
            group.inFlight.append(flying)
            next.append(flying)
        }
        return group.isIdle
    }

    private func record(delivered outgoing: OutgoingMessage, report: DeliveryReport, at now: Date) {
        metrics.delivered()
        if outgoing.commitTime != 0 {
            metrics.committedToAcked(seconds: now.timeIntervalSince1970 - (Double(outgoing.commitTime) / 1e6 + 946_684_800))
        }
        // Kept as it is (one reference); made into a DeliveredMessage only when shown or saved.
        recentlyDelivered.append(RecentDelivery(outgoing: outgoing, topic: report.topic, partition: report.partition,
                                                offset: report.offset, size: report.size, deliveredAt: now))
        if recentlyDelivered.count > DeliveryLedger.deliveredKept { recentlyDelivered.removeFirst() }
        let aged = recentlyDelivered.count - DeliveryLedger.recentBodiesKept - 1
        if aged >= 0, recentlyDelivered[aged].hasLargeBodies { recentlyDelivered[aged].dropLargeBodies() }
        deliveredUnsaved += 1
    }

    /// Too large for Kafka: never retried; logged with table, key, size and limit, counted, kept in the ledger.
    private func cancelTooLarge(_ outgoing: OutgoingMessage, error: KafkaError) {
        metrics.cancelled()
        let key = Self.text(outgoing.message.key)
        logger.error("message too large for Kafka; cancelled", metadata: [
            "sink": "\(sink.name)", "table": "\(outgoing.table)", "key": "\(key)", "topic": "\(outgoing.message.topic)",
            "size_bytes": "\(outgoing.message.value.count)", "limit_bytes": "\(sink.destination.maxMessageBytes)",
            "error": "\(error)"])
        do {
            try ledger.recordCancelled(CancelledMessage(
                sink: sink.name, group: outgoing.group, position: outgoing.position, table: outgoing.table,
                topic: outgoing.message.topic, key: key, size: outgoing.message.value.count, reason: "too_large",
                error: error.description, action: outgoing.action.rawValue, recordPKs: outgoing.message.recordPKs,
                deliverCount: outgoing.deliverCount))
        } catch {
            logger.error("could not record a cancelled message in the ledger", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Ledger worker

    /// Writes parked messages (then settles them), removes delivered ones, retries parked groups
    /// whose backoff ended and saves the recently delivered list.
    private func runWorker() {
        defer { workerDone.signal() }
        var lastDeliveredSave = Date()
        // The groups that may have parked messages: those the ledger held at start and every group whose
        // messages this worker wrote to it since (every park passes through `pendingParks`). A group
        // leaves once it has nothing parked, so the retry pass looks at these, not at every group.
        lock.lock()
        var parkedGroups = Set(groups.filter { $0.value.parked > 0 }.keys)
        lock.unlock()
        while true {
            lock.lock()
            if pendingParks.isEmpty && pendingUnparks.isEmpty && !stopping {
                _ = lock.wait(until: Date().addingTimeInterval(0.05))
            }
            let parks = pendingParks
            let unparks = pendingUnparks
            let attempts = pendingAttempts
            pendingParks.removeAll(keepingCapacity: true)
            pendingUnparks.removeAll(keepingCapacity: true)
            pendingAttempts.removeAll()
            let exit = stopping
            lock.unlock()

            do {
                try writeLedger(parks: parks, unparks: unparks, attempts: attempts)
            } catch {
                // Not settled, so the slot does not move past these; they stay queued for the next try.
                logger.error("could not write the ledger; retrying", metadata: ["error": "\(error)", "path": "\(ledger.path)"])
                lock.lock()
                pendingParks.insert(contentsOf: parks, at: 0)
                pendingUnparks.insert(contentsOf: unparks, at: 0)
                pendingAttempts.insert(contentsOf: attempts, at: 0)
                lock.unlock()
                Thread.sleep(forTimeInterval: 1)
                continue
            }
            for park in parks { parkedGroups.insert(park.group) }
            let parkedTokens = parks.map(\.checkpointToken).filter { $0 != 0 }
            if !parkedTokens.isEmpty { settle(parkedTokens) }

            if Date().timeIntervalSince(lastDeliveredSave) >= 1 || exit {
                saveDelivered()
                lastDeliveredSave = Date()
            }
            if exit { return }
            replaceProducerIfFailed()
            retryDueGroups(among: &parkedGroups)
        }
    }

    /// A producer that hit a fatal error (e.g. the broker lost its idempotence state) can send
    /// nothing more: replace it, and fail what it still holds so those messages are parked and retried.
    private func replaceProducerIfFailed() {
        lock.lock()
        let failed = producerFailed || producer.hasFatalError
        let retired = retiredProducers
        retiredProducers.removeAll { $0.outstanding == 0 }
        lock.unlock()
        _ = retired // producers released here, on this thread, never on their own event thread
        guard failed else { return }
        let replacement: KafkaProducer
        do { replacement = try makeProducer() } catch {
            logger.error("could not create a new Kafka producer; retrying", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
            return
        }
        lock.lock()
        let old = producer
        producer = replacement
        producerFailed = false
        retiredProducers.append(old)
        lock.unlock()
        logger.warning("the Kafka producer hit a fatal error; replaced it, unacknowledged messages are retried in order",
                       metadata: ["sink": "\(sink.name)", "error": "\(old.lastClientError?.description ?? "")"])
        old.purge()
    }

    /// Waits up to `timeout` seconds for the producer to hand over everything queued.
    func flush(timeout: Double) {
        lock.lock()
        let producer = self.producer
        lock.unlock()
        producer.flush(timeout: timeout)
    }

    var largestBatch: Int {
        lock.lock()
        defer { lock.unlock() }
        return ([producer] + retiredProducers).map(\.largestBatch).max() ?? 0
    }

    /// The current producer, to probe the brokers at start.
    var currentProducer: KafkaProducer {
        lock.lock()
        defer { lock.unlock() }
        return producer
    }

    private func writeLedger(parks: [OutgoingMessage], unparks: [MessagePosition], attempts: [(MessagePosition, Int, String)]) throws {
        try ledger.apply(
            park: parks.map { outgoing in
                ParkedMessage(sink: sink.name, group: outgoing.group, position: outgoing.position, table: outgoing.table,
                              topic: outgoing.beforeFunctions.topic, key: outgoing.beforeFunctions.key,
                              value: outgoing.beforeFunctions.value, deliverCount: outgoing.deliverCount,
                              lastError: outgoing.lastError, lastAttemptAt: outgoing.deliverCount > 0 ? Date() : nil)
            },
            unpark: unparks, attempts: attempts.map { (position: $0.0, deliverCount: $0.1, error: $0.2) }, sink: sink.name)
    }

    private func saveDelivered() {
        lock.lock()
        let recent = recentlyDelivered.suffix(min(deliveredUnsaved, recentlyDelivered.count))
        let unsaved = recent.map { $0.delivered(sink: sink.name) }
        let bodies = deliveredUnsaved > 0
            ? recentlyDelivered.suffix(DeliveryLedger.recentBodiesKept).map(\.outgoing.beforeFunctions.value) : nil
        deliveredUnsaved = 0
        lock.unlock()
        do {
            try ledger.recordDelivered(unsaved)
            if let bodies { try ledger.replaceRecentBodies(sink: sink.name, bodies) }
        } catch {
            logger.warning("could not save recently delivered messages", metadata: ["error": "\(error)"])
        }
    }

    /// Sends the head of every parked group that has nothing in flight and whose backoff ended.
    /// `candidates` holds every group with parked messages (and maybe some without, which leave it):
    /// looking at all groups instead would copy each one under the lock, 20 times a second, with up to
    /// max_ack_pending groups in flight.
    private func retryDueGroups(among candidates: inout Set<String>) {
        guard !candidates.isEmpty else { return }
        let now = Date()
        lock.lock()
        var due: [String] = []
        var done: [String] = []
        for key in candidates {
            guard let group = groups[key], group.parked > 0 else {
                done.append(key)
                continue
            }
            if group.inFlight.isEmpty, (group.retryAt ?? .distantPast) <= now { due.append(key) }
        }
        lock.unlock()
        for key in done { candidates.remove(key) }
        for key in due.prefix(max(0, sink.destination.maxAckPending - inFlightCount)) {
            let head: ParkedMessage?
            do { head = try ledger.firstParked(sink: sink.name, group: key) } catch {
                logger.error("could not read the ledger", metadata: ["error": "\(error)"])
                return
            }
            guard let head else {
                // Nothing left in the ledger for this group (a replayed duplicate was ignored): back to normal.
                lock.lock()
                if var group = groups[key], group.inFlight.isEmpty, !pendingParks.contains(where: { $0.group == key }) {
                    group.parked = 0
                    group.retryAt = nil
                    if group.isIdle { groups.removeValue(forKey: key) } else { groups[key] = group }
                }
                lock.unlock()
                continue
            }
            var outgoing = OutgoingMessage(
                position: head.position, group: key, table: head.table,
                message: Message(key: head.key, value: head.value, topic: head.topic, recordPKs: []),
                checkpointToken: 0, deliverCount: head.deliverCount, lastError: head.lastError, isParked: true)
            let summary = MessageSummary(json: head.value)
            outgoing.action = summary.action ?? .insert
            outgoing.message.recordPKs = summary.recordPKs
            lock.lock()
            let skip = groups[key]?.inFlight.isEmpty == false || pendingUnparks.contains(head.position) || cancelledPositions.contains(head.position)
            lock.unlock()
            if skip { continue }
            if let retryEnrichment {
                // Parked before enrichment: look the row up again.
                switch retryEnrichment.run([.init(table: head.table, recordPKs: outgoing.message.recordPKs)])[0] {
                case .success(let row):
                    outgoing.original = outgoing.message
                    outgoing.message.value = MessageEncoder.enriched(outgoing.message.value, with: row)
                case .failure(let failure):
                    retryFailed(head: head, group: key, error: failure.message, what: "enrichment")
                    continue
                }
            }
            if let retryFunctions {
                // The ledger holds messages as they were before the functions: run them (again).
                switch retryFunctions.apply(to: outgoing.message) {
                case .send(let message):
                    if outgoing.original == nil { outgoing.original = outgoing.message }
                    outgoing.message = message
                case .drop:
                    metrics.filtered()
                    lock.lock()
                    pendingUnparks.append(head.position)
                    if var group = groups[key] {
                        group.parked -= 1
                        group.retryAt = nil
                        if group.isIdle { groups.removeValue(forKey: key) } else { groups[key] = group }
                    }
                    metrics.parked(change: -1)
                    lock.broadcast()
                    lock.unlock()
                    continue
                case .failed(let error):
                    retryFailed(head: head, group: key, error: error, what: "a function")
                    continue
                }
            }
            lock.lock()
            guard groups[key]?.inFlight.isEmpty == true, !pendingUnparks.contains(head.position), !cancelledPositions.contains(head.position)
            else { lock.unlock(); continue }
            startFlight(&outgoing)
            groups[key]?.inFlight.append(outgoing)
            lock.unlock()
            produce(outgoing)
        }
    }

    /// A parked message's enrichment or function failed again: count the attempt, try later.
    private func retryFailed(head: ParkedMessage, group key: String, error: String, what: String) {
        let attempt = head.deliverCount + 1
        metrics.failedAttempt()
        metrics.functionFailed()
        lock.lock()
        pendingAttempts.append((head.position, attempt, error))
        groups[key]?.retryAt = Date().addingTimeInterval(Self.backoff(attempt: attempt))
        lock.broadcast()
        lock.unlock()
        logger.warning("\(what) failed again; retrying later", metadata: [
            "sink": "\(sink.name)", "table": "\(head.table)", "attempt": "\(attempt)", "error": "\(error)"])
    }

    /// Exponential backoff with jitter: 1 s, 2 s, 4 s … capped at 3 minutes.
    static func backoff(attempt: Int) -> Double {
        let base = min(180.0, pow(2.0, Double(max(0, attempt - 1))))
        return base * Double.random(in: 0.8...1.0)
    }

    /// Values of delivered messages up to this size stay in memory for the console.
    static let valueKeptBytes = 64 * 1024

    static func text(_ key: [UInt8]?) -> String { key.map { String(decoding: $0, as: UTF8.self) } ?? "" }

    // MARK: - Stopping

    /// Stops the worker after it wrote what is pending.
    func stop() {
        lock.lock()
        stopping = true
        lock.broadcast()
        lock.unlock()
        workerDone.wait()
    }
}
