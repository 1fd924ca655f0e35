import Foundation
import Logging
import SluiceCore
import Synchronization

/// Receives decoded changes from `ReplicationSource`, on the source's own thread.
public protocol ChangeConsumer: AnyObject {
    func transactionBegan(_ transaction: TransactionInfo)
    func received(_ change: Change)
    func transactionCommitted(_ transaction: TransactionInfo, endLSN: LSN)
    /// Nothing is open in the stream and every transaction before `lsn` has been received.
    func caughtUp(to lsn: LSN)
    /// The connection dropped; a transaction that was open will be sent again from its start.
    func streamInterrupted()
    /// Blocks up to `timeout` seconds for room to take more changes; false while still full.
    func waitForCapacity(timeout: Double) -> Bool
    /// A table the stream knew as `old` now has another name (ALTER TABLE … RENAME or SET SCHEMA). The
    /// reason to stop, in one line, when a sink reads it by its old name only (its changes would be
    /// dropped); nil to go on.
    func relationRenamed(from old: Relation, to new: Relation) -> String?
    /// Waits up to `timeout` seconds for everything handed over to be acknowledged.
    func drain(timeout: Double)
    /// The position below which everything is acknowledged: the flush LSN to report.
    var confirmedLSN: LSN { get }
    /// A non-transactional logical decoding message (`pg_logical_emit_message(false, …)`), in stream order.
    func logicalMessage(prefix: String, content: [UInt8], lsn: LSN)
}

extension ChangeConsumer {
    public func logicalMessage(prefix: String, content: [UInt8], lsn: LSN) {}
    public func relationRenamed(from old: Relation, to new: Relation) -> String? { nil }
}

/// Reads a logical replication slot through libpq on a dedicated thread (never the cooperative
/// pool), decodes pgoutput, hands changes to a consumer, reports the consumer's confirmed LSN
/// back to the server and reconnects with backoff when the connection drops.
public final class ReplicationSource: Sendable {
    public struct Settings: Sendable {
        public var database: DatabaseConfig
        /// Seconds between standby status updates when nothing changes (the server wants < wal_sender_timeout).
        public var statusInterval: Double = 10
        public var maxReconnectDelay: Double = 30
        /// Where in-progress streamed transactions are spilled; nil turns streaming off (protocol 1).
        public var spillDirectory: String?
        /// Tables the configuration names, with where (`sinks[0].tables`): watched for being dropped or
        /// taken out of the publication.
        public var watchedTables: [(table: TableName, origin: String)]
        /// Seconds between two looks at the publication and the watched tables.
        public var watchInterval: Double = 5

        public init(database: DatabaseConfig, spillDirectory: String? = nil, watchedTables: [(table: TableName, origin: String)] = []) {
            self.database = database
            self.spillDirectory = spillDirectory
            self.watchedTables = watchedTables
        }
    }

    let settings: Settings
    let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
    private let skipDrain = Atomic<Bool>(false)
    private let stoppedBy = Mutex<ReplicationFailure?>(nil)
    /// Connection state and the server's WAL position, for the console.
    public let status = ReplicationStatus()

    /// Why `run` stopped on its own, if it did: sluice cannot go on without the operator.
    public var failure: ReplicationFailure? { stoppedBy.withLock { $0 } }

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    /// Stops reading; what was handed over is delivered first (up to 30 s), unless `drain` is false (a
    /// leader that lost its lease: another instance streams from the slot now).
    public func requestStop(drain: Bool = true) {
        if !drain { skipDrain.store(true, ordering: .relaxed) }
        stopRequested.store(true, ordering: .relaxed)
    }
    var isStopping: Bool { stopRequested.load(ordering: .relaxed) }

    /// Runs until `requestStop()`, or until a `ReplicationFailure` (then `failure` says why); then drains
    /// the consumer and sends a last status update.
    public func run(consumer: ChangeConsumer) {
        var delay = 0.5
        while !isStopping {
            var session: Session?
            do {
                session = try Session(settings: settings, logger: logger)
                status.connected(at: session!.serverWALAtStart)
                delay = 0.5
                try session!.stream(into: consumer, source: self)
            } catch let failure as ReplicationFailure {
                stop(failure)
            } catch let error as PostgresError {
                if let failure = ReplicationFailure.classify(error, slot: settings.database.slotName,
                                                             publication: settings.database.publicationName,
                                                             confirmed: session?.reported ?? consumer.confirmedLSN) {
                    stop(failure)
                } else {
                    logger.warning("replication interrupted; reconnecting", metadata: ["error": "\(error)", "retry_in_s": "\(delay)"])
                }
            } catch {
                logger.warning("replication interrupted; reconnecting", metadata: ["error": "\(error)", "retry_in_s": "\(delay)"])
            }
            if isStopping {
                if skipDrain.load(ordering: .relaxed) { return }
                // Whatever was handed over goes to Kafka first; the slot is told only what was delivered.
                consumer.drain(timeout: 30)
                session?.finish(confirmed: consumer.confirmedLSN)
                return
            }
            status.disconnected()
            consumer.streamInterrupted()
            sleep(seconds: delay)
            delay = min(delay * 2, settings.maxReconnectDelay)
        }
        if !skipDrain.load(ordering: .relaxed) { consumer.drain(timeout: 30) }
    }

    /// Stops for good: the operator must act first.
    private func stop(_ failure: ReplicationFailure) {
        logger.error("replication cannot go on; stopping once what is in flight is delivered (up to 30 s)",
                     metadata: ["reason": "\(failure.message)"])
        stoppedBy.withLock { $0 = $0 ?? failure }
        status.disconnected()
        requestStop()
    }

    private func sleep(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while !isStopping, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
    }

    /// One connected stream: the walsender connection, a catalog connection and the relation cache.
    final class Session {
        let stream: ReplicationStream
        let admin: PostgresConnection
        let catalog: RelationCatalog
        let settings: Settings
        let logger: Logger
        var relations: [UInt32: Relation] = [:]
        var received = LSN.zero
        var reported = LSN.zero
        var lastStatus = Date.distantPast
        var lastHeartbeat = Date()
        /// When the reported position last moved, to warn about a slot that holds WAL back.
        var lastAdvance = Date()
        var lastStallWarning = Date.distantPast
        let spill: TransactionSpill?
        /// The transaction whose chunk is being streamed (between Stream Start and Stream Stop).
        var streamingXid: UInt32?
        let serverWALAtStart: LSN
        var watch: PublicationWatch

        init(settings: Settings, logger: Logger) throws(PostgresError) {
            self.settings = settings
            self.logger = logger
            watch = PublicationWatch(database: settings.database, tables: settings.watchedTables, interval: settings.watchInterval)
            admin = try PostgresConnection(parameters: settings.database.connectionParameters, applicationName: "sluice-catalog")
            catalog = RelationCatalog(connection: admin)
            stream = try ReplicationStream(parameters: settings.database.connectionParameters)
            spill = try settings.spillDirectory.map { directory throws(PostgresError) in try TransactionSpill(directory: directory) }
            let identity = try stream.identifySystem()
            serverWALAtStart = identity.walPosition
            try stream.start(slot: settings.database.slotName, publication: settings.database.publicationName,
                             streaming: spill != nil)
            logger.info("streaming", metadata: ["slot": "\(settings.database.slotName)",
                                                "publication": "\(settings.database.publicationName)",
                                                "database": "\(identity.databaseName)",
                                                "server_wal": "\(identity.walPosition)"])
        }

        /// Streams until the source stops; throws a `PostgresError` when the connection fails, a
        /// `ReplicationFailure` when sluice must stop.
        func stream(into consumer: ChangeConsumer, source: ReplicationSource) throws {
            var transaction: TransactionInfo?
            var position = TransactionPosition()
            while !source.isStopping {
                if !consumer.waitForCapacity(timeout: 0.5) {
                    try reportIfDue(consumer.confirmedLSN)
                    continue
                }
                let event = try stream.next(timeout: 0.5)
                switch event {
                case .keepalive(let walEnd, let replyRequested):
                    received = max(received, walEnd)
                    if transaction == nil { consumer.caughtUp(to: walEnd) }
                    if replyRequested { try sendStatus(consumer.confirmedLSN, replyRequested: false) }
                case .xlogData(let walStart, let walEnd, let payload):
                    received = max(received, walEnd, walStart)
                    if let xid = streamingXid, try keepStreamed(payload, xid: xid, at: walStart, consumer: consumer) { break }
                    let message: PgOutputMessage
                    do { message = try PgOutputDecoder.decode(payload) } catch {
                        throw PostgresError(.replication, "could not decode a message at \(walStart): \(error)")
                    }
                    switch message {
                    case .streamStart(let xid, _):
                        streamingXid = xid
                    case .streamStop:
                        streamingXid = nil
                    case .streamAbort(let xid, let subtransaction):
                        spill?.abort(xid: xid, subtransactionXid: subtransaction)
                    case .streamCommit(let xid, let commitLSN, let endLSN, let timestamp):
                        try replayStreamed(TransactionInfo(xid: xid, commitLSN: commitLSN, commitTimestamp: timestamp),
                                           endLSN: endLSN, consumer: consumer, source: source)
                    case .begin(let info):
                        transaction = info
                        position = TransactionPosition()
                        consumer.transactionBegan(info)
                    case .commit(_, let endLSN, _):
                        if let current = transaction { consumer.transactionCommitted(current, endLSN: endLSN) }
                        transaction = nil
                    case .relation(let description):
                        try learn(try catalog.relation(from: description), consumer: consumer)
                    case .insert, .update, .delete, .truncate:
                        try deliverRowChange(message, transaction, &position, consumer)
                    case .message(let transactional, let lsn, let prefix, let content):
                        if !transactional, transaction == nil {
                            consumer.logicalMessage(prefix: prefix, content: content, lsn: lsn)
                            consumer.caughtUp(to: max(lsn, walStart))
                        } else if transactional, let transaction {
                            position.apply(prefix: prefix, content: content, xid: transaction.xid, logger: logger)
                        }
                    case .type, .origin:
                        break
                    }
                case nil:
                    break
                }
                source.status.advance(to: received)
                // One clock reading per event serves the status update, the stall warning and the heartbeat.
                let now = Date()
                try reportIfDue(consumer.confirmedLSN, now: now)
                try heartbeatIfDue(now: now)
                if let problems = try watch.checkIfDue(now: now, on: admin, confirmed: reported, logger: logger) {
                    source.status.setProblems(problems)
                }
            }
        }

        /// A Relation message: the relation as it is now. A table the stream knew under another name
        /// was renamed; the consumer says whether that stops sluice (before any of its changes under
        /// the new name is handed over).
        private func learn(_ relation: Relation, consumer: ChangeConsumer) throws(ReplicationFailure) {
            if let known = relations[relation.id], known.qualifiedName != relation.qualifiedName,
               let reason = consumer.relationRenamed(from: known, to: relation) {
                throw ReplicationFailure(.tableRenamed, reason)
            }
            relations[relation.id] = relation
        }

        /// Inside a streamed chunk: Relation messages update the cache now; changes go to the spill
        /// file until the transaction commits. Returns false for messages handled the usual way.
        private func keepStreamed(_ payload: [UInt8], xid: UInt32, at lsn: LSN, consumer: ChangeConsumer) throws -> Bool {
            guard let kind = payload.first, PgOutputDecoder.streamedKinds.contains(kind) else { return false }
            switch kind {
            case UInt8(ascii: "R"):
                do {
                    if case .relation(let description) = try PgOutputDecoder.decode(payload, streamed: true) {
                        try learn(try catalog.relation(from: description), consumer: consumer)
                    }
                } catch let error as PostgresError {
                    throw error
                } catch let error as ReplicationFailure {
                    throw error
                } catch {
                    throw PostgresError(.replication, "could not decode a streamed message at \(lsn): \(error)")
                }
            case UInt8(ascii: "Y"):
                break
            default:
                try spill?.append(xid: xid, payload: payload)
            }
            return true
        }

        /// Stream Commit: the spilled changes become one ordinary transaction, read back from disk
        /// with the same backpressure as live changes.
        private func replayStreamed(_ transaction: TransactionInfo, endLSN: LSN, consumer: ChangeConsumer,
                                    source: ReplicationSource) throws(PostgresError) {
            guard let spill else { return }
            consumer.transactionBegan(transaction)
            var position = TransactionPosition()
            try spill.replay(xid: transaction.xid) { payload throws(PostgresError) in
                while !consumer.waitForCapacity(timeout: 0.5) {
                    try reportIfDue(consumer.confirmedLSN)
                    if source.isStopping { throw PostgresError(.replication, "stopping in the middle of a streamed transaction") }
                }
                let message: PgOutputMessage
                do { message = try PgOutputDecoder.decode(payload, streamed: true) } catch {
                    throw PostgresError(.replication, "could not decode a spilled message of transaction \(transaction.xid): \(error)")
                }
                if case .message(true, _, let prefix, let content) = message {
                    position.apply(prefix: prefix, content: content, xid: transaction.xid, logger: logger)
                } else {
                    try deliverRowChange(message, transaction, &position, consumer)
                }
                try reportIfDue(consumer.confirmedLSN)
            }
            consumer.transactionCommitted(transaction, endLSN: endLSN)
        }

        /// Hands an insert, update, delete or truncate to the consumer; other messages are ignored here.
        private func deliverRowChange(_ message: PgOutputMessage, _ transaction: TransactionInfo?, _ position: inout TransactionPosition,
                                      _ consumer: ChangeConsumer) throws(PostgresError) {
            switch message {
            case .insert(let id, let new):
                try deliver(.insert, id, new: new, old: nil, transaction, &position, consumer)
            case .update(let id, let old, _, let new):
                try deliver(.update, id, new: new, old: old, transaction, &position, consumer)
            case .delete(let id, let old, _):
                try deliver(.delete, id, new: nil, old: old, transaction, &position, consumer)
            case .truncate(let ids, _, _):
                for id in ids { try deliver(.truncate, id, new: nil, old: nil, transaction, &position, consumer) }
            default:
                break
            }
        }

        private func deliver(_ action: Action, _ relationID: UInt32, new: Tuple?, old: Tuple?,
                             _ transaction: TransactionInfo?, _ position: inout TransactionPosition,
                             _ consumer: ChangeConsumer) throws(PostgresError) {
            guard let relation = relations[relationID] else {
                throw PostgresError(.replication, "a change arrived for relation \(relationID) before its Relation message")
            }
            guard let transaction else {
                throw PostgresError(.replication, "a change arrived outside a transaction")
            }
            var change = Change(action: action, relation: relation, new: new, old: old, transaction: transaction,
                                commitIndex: position.commitIndex)
            change.transactionAnnotations = position.annotations
            consumer.received(change)
            position.commitIndex += 1
        }

        private func reportIfDue(_ confirmed: LSN, now: Date = Date()) throws(PostgresError) {
            warnIfStalled(confirmed, now: now)
            let elapsed = now.timeIntervalSince(lastStatus)
            if elapsed >= settings.statusInterval || (confirmed > reported && elapsed >= 0.2) {
                try sendStatus(confirmed, replyRequested: false)
            }
        }

        /// The slot has not moved for 5 minutes although the server has newer WAL: say so, every 5 minutes.
        private func warnIfStalled(_ confirmed: LSN, now: Date) {
            if confirmed > reported || received <= reported { lastAdvance = now; return }
            guard now.timeIntervalSince(lastAdvance) >= 300, now.timeIntervalSince(lastStallWarning) >= 300 else { return }
            lastStallWarning = now
            logger.warning("the replication slot has not advanced for 5 minutes; WAL is being retained", metadata: [
                "slot": "\(settings.database.slotName)", "confirmed_flush_lsn": "\(reported)", "server_wal": "\(received)"])
        }

        private func sendStatus(_ confirmed: LSN, replyRequested: Bool) throws(PostgresError) {
            let flushed = max(confirmed, reported)
            try stream.sendStatus(received: max(received, flushed), flushed: flushed, replyRequested: replyRequested)
            reported = flushed
            lastStatus = Date()
        }

        private func heartbeatIfDue(now: Date) throws(PostgresError) {
            let interval = settings.database.heartbeatInterval
            guard interval > 0, now.timeIntervalSince(lastHeartbeat) >= interval else { return }
            lastHeartbeat = now
            do {
                try ReplicationSetup(connection: admin, config: settings.database).emitHeartbeat()
            } catch {
                logger.warning("could not write a heartbeat message", metadata: ["error": "\(error)"])
            }
        }

        /// Sends the final status update; errors are logged, the slot keeps its last position.
        func finish(confirmed: LSN) {
            do {
                try sendStatus(confirmed, replyRequested: false)
                logger.info("stopped", metadata: ["confirmed_flush_lsn": "\(reported)"])
            } catch {
                logger.warning("could not send the final status update", metadata: ["error": "\(error)"])
            }
        }
    }
}
