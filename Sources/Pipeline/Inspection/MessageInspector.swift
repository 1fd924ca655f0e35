import Foundation
import Ledger
import PostgresSource
import SluiceCore
import Synchronization

/// A request about messages could not be answered as asked.
public struct InspectionError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case notFound, conflict, badRequest, unavailable }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}

/// Answers what the console, the API and `sluice messages` ask: every sink's counts and its messages
/// by state, one message in detail, and the user's retry and cancel. Live, it combines the
/// dispatchers' groups with the ledger; offline (sluice stopped), the state file alone.
public final class MessageInspector: @unchecked Sendable {
    struct SinkEntry {
        let config: SinkConfig
        let dispatcher: Dispatcher?
        let metrics: SinkMetrics?
    }

    let ledger: any StateStore
    let sinks: [SinkEntry]
    let replication: ReplicationStatus?
    let confirmed: @Sendable () -> LSN
    public let databaseName: String
    public let slotName: String
    private let rates = Mutex<[String: RateSamples]>([:])
    /// The running pipeline's backfills (nil offline).
    public private(set) var backfills: BackfillManager?

    func attach(_ backfills: BackfillManager) { self.backfills = backfills }

    init(ledger: any StateStore, sinks: [SinkEntry], replication: ReplicationStatus?, confirmed: @escaping @Sendable () -> LSN,
         databaseName: String, slotName: String) {
        self.ledger = ledger
        self.sinks = sinks
        self.replication = replication
        self.confirmed = confirmed
        self.databaseName = databaseName
        self.slotName = slotName
    }

    /// The state file alone: failing, delivered and cancelled messages; nothing in flight is known.
    public convenience init(offline ledger: any StateStore, config: SluiceConfig) {
        // A URL comes as dbname: show only its database, never its password.
        var name = config.database.connectionParameters.last { $0.0 == "dbname" }?.1 ?? ""
        if name.contains("://") { name = URLComponents(string: name).map { String($0.path.drop { $0 == "/" }) } ?? "" }
        self.init(ledger: ledger, sinks: config.sinks.map { SinkEntry(config: $0, dispatcher: nil, metrics: nil) }, replication: nil,
                  confirmed: { .zero }, databaseName: name, slotName: config.database.slotName)
    }

    public var isLive: Bool { replication != nil }
    public var sinkNames: [String] { sinks.map(\.config.name) }

    public func hasSink(_ name: String) -> Bool { sinks.contains { $0.config.name == name } }

    // MARK: - Status

    public struct SinkStatus: Sendable {
        public var name: String
        public var topic: String
        public var inFlight: Int
        public var waiting: Int
        public var failing: Int
        public var deliveredTotal: Int
        public var cancelledTotal: Int
        public var filteredTotal: Int
        public var messagesPerSecond: Double
        /// `at_least_once` or `exactly_once`.
        public var delivery = DeliveryMode.atLeastOnce.rawValue
        /// Exactly-once sinks: their Kafka transactions.
        public var transactions: TransactionStatus?
    }

    /// An exactly-once sink's Kafka transactions.
    public struct TransactionStatus: Sendable {
        public var transactionalID: String
        public var offsetsTopic: String
        /// The newest stream position committed in Kafka (with the messages up to it).
        public var committedPosition: MessagePosition?
        /// `idle`, `open`, `committing`, `aborting`, `waiting` (backing off after an abort) or `stopped`
        /// (fenced: another producer took the transactional id).
        public var state: String
        public var lastError: String?
    }

    public struct Status: Sendable {
        public var databaseName: String
        public var connected: Bool
        public var slotName: String
        public var confirmedFlushLSN: LSN
        public var lagBytes: UInt64
        public var sinks: [SinkStatus]
    }

    public func status() -> Status {
        let confirmed = confirmed()
        let server = replication?.serverWAL ?? .zero
        return Status(databaseName: databaseName, connected: replication?.isConnected ?? false, slotName: slotName,
                      confirmedFlushLSN: confirmed,
                      lagBytes: server.rawValue > confirmed.rawValue ? server.rawValue - confirmed.rawValue : 0,
                      sinks: sinks.map(sinkStatus))
    }

    private func sinkStatus(_ entry: SinkEntry) -> SinkStatus {
        let counts = entry.dispatcher?.liveCounts()
        let failing = counts?.failing ?? ((try? ledger.parkedCount(sink: entry.config.name)) ?? 0)
        return SinkStatus(name: entry.config.name, topic: entry.config.destination.topic, inFlight: counts?.inFlight ?? 0,
                          waiting: counts?.waiting ?? 0, failing: failing, deliveredTotal: entry.metrics?.deliveredTotal ?? 0,
                          cancelledTotal: (try? ledger.cancelledCount(sink: entry.config.name)) ?? 0,
                          filteredTotal: entry.metrics?.filteredTotal ?? 0, messagesPerSecond: rate(entry),
                          delivery: entry.config.delivery.rawValue, transactions: entry.dispatcher?.transactionalProducer?.status)
    }

    /// Delivered per second over the last few seconds (sampled when asked, at most once a second).
    private func rate(_ entry: SinkEntry) -> Double {
        guard let metrics = entry.metrics else { return 0 }
        let now = Date().timeIntervalSince1970
        let total = Double(metrics.deliveredTotal)
        return rates.withLock { rates in
            var samples = rates[entry.config.name] ?? RateSamples()
            if let last = samples.items.last, now - last.0 < 1 {
                // keep the window as it is
            } else {
                samples.items.append((now, total))
            }
            samples.items.removeAll { now - $0.0 > 10 }
            rates[entry.config.name] = samples
            guard let first = samples.items.first, now - first.0 >= 0.5 else { return 0 }
            return max(0, (total - first.1) / (now - first.0))
        }
    }

    // MARK: - Messages

    public static let maxLimit = 1_000

    public func messages(sink name: String, state: MessageState, limit: Int = 100) throws(InspectionError) -> [InspectedMessage] {
        let entry = try sink(name)
        let limit = min(max(limit, 1), Self.maxLimit)
        do {
            switch state {
            case .inFlight, .waiting:
                guard let dispatcher = entry.dispatcher else {
                    throw InspectionError(.unavailable, "sluice is not running: \(state.rawValue) messages are only known to a running instance")
                }
                return dispatcher.liveMessages(state, limit: limit)
            case .failing:
                let busy = entry.dispatcher?.parkedInFlight() ?? []
                return try ledger.parked(sink: name, limit: limit + busy.count).filter { !busy.contains($0.position) }.prefix(limit)
                    .map { InspectedMessage(parked: $0, nextAttemptAt: entry.dispatcher?.nextAttempt(group: $0.group)) }
            case .delivered:
                var seen = Set<MessagePosition>()
                var result: [InspectedMessage] = []
                for message in entry.dispatcher?.deliveredInMemory(limit: limit) ?? [] where seen.insert(message.position).inserted {
                    result.append(InspectedMessage(delivered: message))
                }
                if result.count < limit {
                    for message in try ledger.recentlyDelivered(sink: name, limit: limit) where seen.insert(message.position).inserted {
                        result.append(InspectedMessage(delivered: message))
                        if result.count == limit { break }
                    }
                }
                return result
            case .cancelled:
                return try ledger.cancelled(sink: name, limit: limit).map { InspectedMessage(cancelled: $0) }
            }
        } catch let error as InspectionError {
            throw error
        } catch {
            throw InspectionError(.unavailable, "could not read the state file: \(error)")
        }
    }

    /// One message with its value and error history.
    public func message(sink name: String, id: String) throws(InspectionError) -> InspectedMessage {
        let entry = try sink(name)
        let position = try position(id)
        do {
            var found = try locate(entry, position)
            found.errors = try ledger.attemptErrors(sink: name, position: position)
            return found
        } catch let error as InspectionError {
            throw error
        } catch {
            throw InspectionError(.unavailable, "could not read the state file: \(error)")
        }
    }

    private func locate(_ entry: SinkEntry, _ position: MessagePosition) throws -> InspectedMessage {
        let name = entry.config.name
        if let live = entry.dispatcher?.liveMessage(at: position) { return live }
        if let parked = try ledger.parkedMessage(sink: name, position: position) {
            return InspectedMessage(parked: parked, nextAttemptAt: entry.dispatcher?.nextAttempt(group: parked.group))
        }
        if let delivered = entry.dispatcher?.deliveredInMemory(at: position) {
            return InspectedMessage(delivered: delivered)
        }
        if let delivered = try ledger.deliveredMessage(sink: name, position: position) {
            return InspectedMessage(delivered: delivered)
        }
        if let cancelled = try ledger.cancelledMessage(sink: name, position: position) {
            return InspectedMessage(cancelled: cancelled)
        }
        throw InspectionError(.notFound, "sink \(name) has no message \(InspectedMessage.id(of: position)) (or it is no longer kept)")
    }

    // MARK: - Actions

    /// A failing message is tried now (its group's backoff ends).
    public func retry(sink name: String, id: String) throws(InspectionError) -> InspectedMessage {
        let (entry, dispatcher, parked) = try failing(name, id, action: "retried")
        guard dispatcher.retryNow(group: parked.group) else {
            throw InspectionError(.conflict, "message \(id) is no longer failing")
        }
        var message = InspectedMessage(parked: parked, nextAttemptAt: Date())
        message.errors = try? ledger.attemptErrors(sink: entry.config.name, position: parked.position)
        return message
    }

    /// A failing message is given up: recorded as cancelled (reason `user`); its group moves on.
    public func cancel(sink name: String, id: String) throws(InspectionError) -> InspectedMessage {
        let (_, dispatcher, parked) = try failing(name, id, action: "cancelled")
        do {
            return InspectedMessage(cancelled: try dispatcher.cancelFailing(parked))
        } catch Dispatcher.CancelRefusal.beingDelivered {
            throw InspectionError(.conflict, "message \(id) is being delivered right now — wait for the attempt to end, then cancel it if it fails")
        } catch Dispatcher.CancelRefusal.notFailing {
            throw InspectionError(.conflict, "message \(id) is no longer failing")
        } catch {
            throw InspectionError(.unavailable, "could not write the state file: \(error)")
        }
    }

    private func failing(_ name: String, _ id: String, action: String) throws(InspectionError) -> (SinkEntry, Dispatcher, ParkedMessage) {
        let entry = try sink(name)
        let position = try position(id)
        guard let dispatcher = entry.dispatcher else {
            throw InspectionError(.unavailable, "sluice is not running: start it to retry or cancel messages")
        }
        let parked: ParkedMessage?
        do { parked = try ledger.parkedMessage(sink: name, position: position) } catch {
            throw InspectionError(.unavailable, "could not read the state file: \(error)")
        }
        guard let parked, !dispatcher.parkedInFlight().contains(position) else {
            let state: String
            do { state = try locate(entry, position).state.rawValue } catch let error as InspectionError { throw error } catch {
                throw InspectionError(.unavailable, "could not read the state file: \(error)")
            }
            throw InspectionError(.conflict, "message \(id) is \(state.replacingOccurrences(of: "_", with: " ")); only failing messages can be \(action)")
        }
        return (entry, dispatcher, parked)
    }

    // MARK: - Lookup

    private func sink(_ name: String) throws(InspectionError) -> SinkEntry {
        guard let entry = sinks.first(where: { $0.config.name == name }) else {
            throw InspectionError(.notFound, "no sink named \(name) — sinks: \(sinkNames.joined(separator: ", "))")
        }
        return entry
    }

    private func position(_ id: String) throws(InspectionError) -> MessagePosition {
        guard let position = InspectedMessage.position(fromID: id) else {
            throw InspectionError(.notFound, "no message \(id): ids look like 22277016-0")
        }
        return position
    }
}

/// Rate samples of one sink: (time, delivered total).
struct RateSamples {
    var items: [(Double, Double)] = []
}

/// Where the console finds the running pipeline's inspector once it exists.
public final class InspectorSlot: Sendable {
    private let slot = Mutex<MessageInspector?>(nil)
    /// Leader or standby (a standby has no inspector: it does not stream).
    public let ha = HAStatus()
    public init() {}
    public var inspector: MessageInspector? { slot.withLock { $0 } }
    public func set(_ inspector: MessageInspector?) { slot.withLock { $0 = inspector } }
}

extension MessageInspector {
    /// What keeps sluice from working as configured, one line each: a state file it cannot write (per
    /// sink), a table dropped or taken out of the publication. Empty when nothing is wrong.
    public func problems() -> [String] {
        let ledger = sinks.compactMap { entry in entry.dispatcher?.stateFileProblem.map { "sink \(entry.config.name): \($0)" } }
        return ledger + (replication?.problems ?? [])
    }

    /// True if every sink's brokers answer a metadata request (blocks up to `timeout` per sink).
    public func brokersAnswer(timeout: Double) -> Bool {
        sinks.allSatisfy { entry in
            guard let dispatcher = entry.dispatcher else { return false }
            do { try dispatcher.currentProducer.checkConnection(timeout: timeout); return true } catch { return false }
        }
    }
}
