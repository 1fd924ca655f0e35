import Foundation
import KafkaSink
import Ledger
import Logging
import Metrics
import PostgresSource
import SluiceCore
import Synchronization

/// Turns changes into messages for every sink that wants them and hands them to each sink's
/// dispatcher; keeps the checkpoint: the slot only advances past what every sink has either
/// delivered to Kafka, parked durably in the ledger, or cancelled.
public final class Pipeline: ChangeConsumer, @unchecked Sendable {
    /// A class, not a struct: it is looked at for every change, and copying its configuration
    /// (strings, arrays, dictionaries) for each would cost a retain and release per field.
    final class Sink {
        let config: SinkConfig
        /// Its place in the configuration's `sinks`, for messages that name a field.
        let index: Int
        let encoder: MessageEncoder
        let dispatcher: Dispatcher
        let metrics: SinkMetrics
        let grouping: MessageGrouping
        /// The live path's instance of the sink's stages.
        let stages: SinkStages
        /// Batches messages for the enrichment query on its own thread, when the sink has one.
        let enrichment: EnrichmentBatcher?
        /// Exactly-once: the position committed in `offsets_topic` when sluice started; the stream's
        /// changes up to it are in Kafka already.
        var committedPosition: MessagePosition?
        /// Changes skipped for being at or before `committedPosition`.
        var skippedAtStart = 0
        var isExactlyOnce: Bool { config.delivery == .exactlyOnce }

        init(config: SinkConfig, index: Int, encoder: MessageEncoder, dispatcher: Dispatcher, metrics: SinkMetrics, stages: SinkStages,
             enrichment: EnrichmentBatcher?) {
            self.config = config
            self.index = index
            self.encoder = encoder
            self.dispatcher = dispatcher
            self.metrics = metrics
            self.grouping = MessageGrouping(sink: config)
            self.stages = stages
            self.enrichment = enrichment
        }

        /// Through the sink's stages to its dispatcher.
        func hand(_ outgoing: OutgoingMessage) {
            if let enrichment { enrichment.enqueue(outgoing) } else { dispatcher.submit(stages.run(outgoing)) }
        }

        /// Exactly-once: a PostgreSQL transaction (or a backfill page, with the cursor after it) ended;
        /// after its messages, in order.
        func transactionEnded(backfill: BackfillCursor? = nil) {
            guard isExactlyOnce else { return }
            if let enrichment { enrichment.transactionEnded(backfill: backfill) } else { dispatcher.transactionEnded(backfill: backfill) }
        }
    }

    let logger: Logger
    private var sinks: [Sink] = []
    private let tracker: Mutex<CheckpointTracker>
    /// Signalled whenever deliveries free capacity.
    private let capacity = NSCondition()
    private let ledger: any StateStore
    private let databaseName: String
    private let changesRead = Counter(label: "sluice_changes_read_total")
    /// Where backfill pages meet the stream.
    let backfills = BackfillCoordinator()

    public init(config: SluiceConfig, databaseName: String, hostname: String = "", startLSN: LSN, ledger: any StateStore,
                logger: Logger) throws {
        self.logger = logger
        self.ledger = ledger
        self.databaseName = databaseName
        tracker = Mutex(CheckpointTracker(confirmed: startLSN))
        let slots = DispatcherSlots()
        let database = DatabaseIdentity(name: config.database.name, annotations: config.database.annotations,
                                        database: databaseName, hostname: hostname)
        for (index, sink) in config.sinks.enumerated() {
            guard sink.enabled else {
                logger.notice("sink is disabled (status: disabled): it sends nothing and holds no slot position back",
                              metadata: ["sink": "\(sink.name)"])
                continue
            }
            var properties = KafkaSettings.producerProperties(for: sink.destination, clientID: "sluice-\(sink.name)")
            // A message not acknowledged within park_after comes back as failed, and its group is parked.
            properties.removeAll { $0.0 == "message.timeout.ms" }
            properties.append(("message.timeout.ms", String(Int(sink.parkAfter * 1000))))
            let makeProducer: () throws -> any MessageProducer
            if sink.delivery == .exactlyOnce {
                // librdkafka wants message.timeout.ms within transaction.timeout.ms; an unacknowledged
                // message aborts the transaction, which runs again.
                properties.removeAll { $0.0 == "message.timeout.ms" }
                properties.append(("message.timeout.ms", String(Int(min(sink.parkAfter, sink.destination.transactionTimeout) * 1000))))
                let settings = TransactionalProducer.Settings(
                    sinkName: sink.name, transactionalID: sink.transactionalID(slot: config.database.slotName),
                    offsetsTopic: sink.destination.offsetsTopic, offsetsKey: "\(config.database.slotName)/\(sink.name)",
                    transactionTimeout: sink.destination.transactionTimeout, properties: properties,
                    maxMessages: sink.destination.maxAckPending)
                makeProducer = {
                    try TransactionalProducer(settings: settings, logger: logger) { reports in slots.dispatcher(index)?.delivered(reports) }
                }
            } else {
                makeProducer = {
                    try KafkaProducer(properties: properties, logger: logger) { reports in
                        slots.dispatcher(index)?.delivered(reports)
                    }
                }
            }
            let metrics = SinkMetrics(sink: sink.name)
            let parameters = config.database.connectionParameters
            let dispatcher = try Dispatcher(sink: sink, makeProducer: makeProducer, ledger: ledger, logger: logger, metrics: metrics,
                                            retryStages: try SinkStages(sink: sink, databaseParameters: parameters)) { [weak self] tokens in
                self?.settle(tokens)
            }
            let stages = try SinkStages(sink: sink, databaseParameters: parameters)
            let enrichment = sink.enrichment == nil ? nil
                : EnrichmentBatcher(stages: stages, dispatcher: dispatcher, batchSize: sink.destination.batchSize,
                                    maxAckPending: sink.destination.maxAckPending, logger: logger) { [weak self] in self?.settle([]) }
            slots.set(index, dispatcher)
            let encoder = MessageEncoder(consumer: ConsumerIdentity(name: sink.name, annotations: sink.annotations),
                                         database: database, valueFormat: sink.valueFormat)
            let added = Sink(config: sink, index: index, encoder: encoder, dispatcher: dispatcher, metrics: metrics, stages: stages,
                             enrichment: enrichment)
            if let transactional = dispatcher.transactionalProducer {
                added.committedPosition = transactional.committedPosition
                logger.notice("exactly-once sink: changes up to its committed position are in Kafka already and are skipped", metadata: [
                    "sink": "\(sink.name)", "transactional_id": "\(transactional.settings.transactionalID)",
                    "offsets_topic": "\(transactional.settings.offsetsTopic)",
                    "position": "\(added.committedPosition.map { "\($0)" } ?? "none yet")"])
            }
            sinks.append(added)
        }
    }

    /// Producers, to probe the brokers at start.
    public var producers: [(name: String, producer: any MessageProducer)] { sinks.map { ($0.config.name, $0.dispatcher.currentProducer) } }

    // MARK: - ChangeConsumer

    public func transactionBegan(_ transaction: TransactionInfo) {
        tracker.withLock { $0.begin() }
    }

    public func received(_ change: Change) {
        changesRead.increment()
        backfills.observe(change)
        let accepted = acceptedActions(of: change.relation)
        let action = Self.bit(change.action)
        for (index, sink) in sinks.enumerated() where accepted[index] & action != 0 {
            submit(change, to: sink)
        }
    }

    /// Which sinks take which actions of a table, worked out once per relation instead of looking the
    /// table up in every sink's sets for every change. Replication thread only, like `received`.
    private var acceptedByRelation: [UInt32: (relation: Relation, actions: [UInt8])] = [:]

    private func acceptedActions(of relation: Relation) -> [UInt8] {
        if let known = acceptedByRelation[relation.id], known.relation === relation { return known.actions }
        let table = TableName(schema: relation.schema, name: relation.name)
        let actions = sinks.map { sink in
            Action.allCases.reduce(UInt8(0)) { mask, action in
                sink.stages.selection.accepts(table: table, action: action) ? mask | Self.bit(action) : mask
            }
        }
        acceptedByRelation[relation.id] = (relation, actions)
        return actions
    }

    private static func bit(_ action: Action) -> UInt8 {
        switch action {
        case .insert: 1
        case .update: 2
        case .delete: 4
        case .read: 8
        case .truncate: 16
        }
    }

    /// Rows whose values exceed the sink's `max_message_bytes` and this many bytes are cancelled without
    /// writing their JSON.
    static let unwrittenFrom = 8 << 20

    private func submit(_ change: Change, to sink: Sink) {
        let position = MessagePosition(commitLSN: change.transaction.commitLSN, commitIndex: change.commitIndex)
        // Exactly-once: committed in Kafka before the restart that sends it again.
        if let committed = sink.committedPosition {
            if position <= committed {
                sink.skippedAtStart += 1
                return
            }
            sink.committedPosition = nil
            logger.notice("exactly-once sink: past its committed position; changes sent again by the database were skipped",
                          metadata: ["sink": "\(sink.config.name)", "skipped": "\(sink.skippedAtStart)", "position": "\(committed)"])
        }
        let topic = sink.config.destination.topic
        let limit = sink.config.destination.maxMessageBytes
        // Too large by its values alone, large enough that its JSON would weigh on memory, and no function
        // that could shrink or drop it: not written (a smaller one is, so that its exact size is logged).
        // (The received bytes bound the values: most changes are ruled out without looking at their cells.)
        let threshold = max(limit, Self.unwrittenFrom)
        let received = max(change.new?.bytes.count ?? 0, change.old?.bytes.count ?? 0)
        var unwrittenSize = sink.stages.functions == nil && received > threshold ? sink.encoder.valueBytesAtLeast(change) : 0
        if unwrittenSize <= threshold { unwrittenSize = 0 }
        let message = unwrittenSize > 0 ? sink.encoder.unwritten(change, topic: topic) : sink.encoder.encode(change, topic: topic)
        let token = tracker.withLock { $0.addMessage() }
        let group = sink.grouping.groupKey(for: change, message: message)
        var outgoing = OutgoingMessage(position: position, group: group, table: change.relation.qualifiedName,
                                       message: message, checkpointToken: token, action: change.action,
                                       commitTime: change.action == .read ? 0 : change.transaction.commitTimestamp)
        guard unwrittenSize > 0 else { return sink.hand(outgoing) }
        outgoing.unwrittenSize = unwrittenSize
        sink.dispatcher.submit(.tooLarge(outgoing, error: .messageTooLarge(
            "its values alone are \(unwrittenSize) bytes, more than message.max.bytes (\(limit)); not written")))
    }

    /// A renamed table stops the stream when a sink selects it by its old name and not by its new one:
    /// going on would drop its changes and let the slot pass them. Nothing of the renamed table has been
    /// handed over yet, and the open transaction is not confirmed, so its changes arrive after a restart
    /// with the new name in the configuration.
    public func relationRenamed(from old: Relation, to new: Relation) -> String? {
        let before = TableName(schema: old.schema, name: old.name)
        let after = TableName(schema: new.schema, name: new.name)
        let stranded = sinks.filter { sink in
            Action.allCases.contains { sink.config.accepts(table: before, action: $0) }
                && !Action.allCases.contains { sink.config.accepts(table: after, action: $0) }
        }
        guard let first = stranded.first else { return nil }
        let names = stranded.map { "\"\($0.config.name)\"" }.joined(separator: ", ")
        return """
            table \(before) was renamed to \(after), and sink \(names) reads it as \(before) — its changes would be dropped; \
            put \(after) in sinks[\(first.index)].tables (and database.publication.tables, if listed) and start sluice again: \
            nothing after the rename was confirmed, so its changes arrive then
            """
    }

    /// A backfill watermark: at a page's high watermark, its rows go out as `read` messages, here in
    /// the stream (one pseudo-transaction ending at the watermark, so the slot passes it only once
    /// they are safe).
    public func logicalMessage(prefix: String, content: [UInt8], lsn: LSN) {
        guard prefix == BackfillReader.watermarkPrefix,
              let (page, found) = backfills.watermark(String(decoding: content, as: UTF8.self)) else { return }
        guard let rows = found else { return page.reread() }
        guard let sink = sinks.first(where: { $0.config.name == page.sink }) else {
            page.finished(emitted: 0, at: lsn)
            return
        }
        tracker.withLock { $0.begin() }
        let transaction = TransactionInfo(xid: 0, commitLSN: lsn, commitTimestamp: page.readAt)
        for (index, row) in rows.enumerated() {
            var change = Change(action: .read, relation: page.table.relation, new: row, old: nil, transaction: transaction,
                                commitIndex: index)
            change.backfillID = page.backfillID
            submit(change, to: sink)
        }
        tracker.withLock { $0.commit(endLSN: lsn) }
        sink.transactionEnded(backfill: BackfillCursor(backfillID: page.backfillID, cursor: page.cursor))
        page.finished(emitted: rows.count, at: lsn)
    }

    public func transactionCommitted(_ transaction: TransactionInfo, endLSN: LSN) {
        backfills.committed(xid: transaction.xid)
        tracker.withLock { $0.commit(endLSN: endLSN) }
        for sink in sinks where sink.isExactlyOnce { sink.transactionEnded() }
    }

    public func caughtUp(to lsn: LSN) {
        tracker.withLock { $0.caughtUp(to: lsn) }
    }

    public func streamInterrupted() {
        tracker.withLock { $0.abandonOpen() }
    }

    public func waitForCapacity(timeout: Double) -> Bool {
        capacity.lock()
        defer { capacity.unlock() }
        var deadline: Date? // made only when there is no room: this runs for every replication event
        while true {
            if sinks.allSatisfy({ $0.dispatcher.hasCapacity && $0.enrichment?.hasCapacity != false }) { return true }
            let end = deadline ?? Date().addingTimeInterval(timeout)
            deadline = end
            if !capacity.wait(until: end) { return false }
        }
    }

    public func drain(timeout: Double) {
        let deadline = Date().addingTimeInterval(timeout)
        for sink in sinks {
            sink.enrichment?.flush(timeout: max(0, deadline.timeIntervalSinceNow))
            sink.enrichment?.stop()
            sink.dispatcher.flush(timeout: max(0, deadline.timeIntervalSinceNow))
        }
        while tracker.withLock({ $0.outstanding }) > 0, Date() < deadline {
            capacity.lock()
            _ = capacity.wait(until: min(deadline, Date().addingTimeInterval(0.1)))
            capacity.unlock()
        }
        let left = tracker.withLock { $0.outstanding }
        if left > 0 {
            logger.warning("stopping with unacknowledged messages; they will be sent again on the next start",
                           metadata: ["messages": "\(left)"])
        }
        for sink in sinks {
            sink.dispatcher.stop()
            var totals: Logger.Metadata = sink.metrics.summary.mapValues { "\($0)" }
            totals["sink"] = "\(sink.config.name)"
            totals["largest_batch"] = "\(sink.dispatcher.largestBatch)"
            logger.info("sink totals", metadata: totals)
        }
    }

    /// Leadership lost: every sink stops sending and writing at once, dropping what it holds (see
    /// `Dispatcher.abandon`); the stream must be stopped without draining.
    public func abandon() {
        for sink in sinks {
            sink.enrichment?.stop()
            sink.dispatcher.abandon()
        }
    }

    public var confirmedLSN: LSN { tracker.withLock { $0.confirmed } }

    /// Backfills of this pipeline's sinks, meeting the stream at this pipeline's watermarks.
    public func makeBackfills(config: SluiceConfig) -> BackfillManager {
        let transactional = Dictionary(sinks.compactMap { sink in sink.dispatcher.transactionalProducer.map { (sink.config.name, $0) } },
                                       uniquingKeysWith: { first, _ in first })
        return BackfillManager(config: config, ledger: ledger, coordinator: backfills, logger: logger,
                               confirmed: { [weak self] in self?.confirmedLSN ?? .zero },
                               committedCursor: { sink, id in transactional[sink]?.committedCursors[id] },
                               ended: { sink, id in transactional[sink]?.backfillEnded(id) })
    }

    /// The console's view of this pipeline's sinks, combined with the ledger.
    public func makeInspector(replication: ReplicationStatus, slotName: String) -> MessageInspector {
        MessageInspector(ledger: ledger, sinks: sinks.map { .init(config: $0.config, dispatcher: $0.dispatcher, metrics: $0.metrics) },
                         replication: replication, confirmed: { [weak self] in self?.confirmedLSN ?? .zero },
                         databaseName: databaseName, slotName: slotName)
    }

    // MARK: - Settling

    /// Messages that are safe (in Kafka, parked or cancelled) release their checkpoint tokens.
    private func settle(_ tokens: [UInt]) {
        if !tokens.isEmpty {
            tracker.withLock { tracker in
                for token in tokens { tracker.acknowledge(token) }
            }
        }
        capacity.lock()
        capacity.broadcast()
        capacity.unlock()
    }
}

/// Lets a producer's delivery callback, created before its dispatcher, reach that dispatcher.
/// Weak, so that dispatcher → producer → callback → dispatcher is no cycle: releasing the
/// pipeline destroys the librdkafka clients before the process exits.
final class DispatcherSlots: @unchecked Sendable {
    private struct WeakDispatcher { weak var dispatcher: Dispatcher? }
    private let lock = NSLock()
    private var dispatchers: [Int: WeakDispatcher] = [:]

    func set(_ index: Int, _ dispatcher: Dispatcher) {
        lock.lock()
        dispatchers[index] = WeakDispatcher(dispatcher: dispatcher)
        lock.unlock()
    }

    func dispatcher(_ index: Int) -> Dispatcher? {
        lock.lock()
        defer { lock.unlock() }
        return dispatchers[index]?.dispatcher
    }
}
