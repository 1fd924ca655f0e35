import Foundation
import Ledger
import SluiceCore

/// Read-only views of a dispatcher's groups (taken under its lock, O(groups)), and the two user
/// actions on a failing message.
extension Dispatcher {
    struct LiveCounts {
        var inFlight = 0
        var waiting = 0
        /// Parked in the ledger and not being tried right now.
        var failing = 0
    }

    func liveCounts() -> LiveCounts {
        lock.lock()
        defer { lock.unlock() }
        var counts = LiveCounts()
        for group in state.groups.values {
            for inFlight in group.inFlight {
                counts.inFlight += 1
                if inFlight.isParked { counts.failing -= 1 }
            }
            counts.waiting += group.waiting.count
            counts.failing += group.parked
        }
        counts.failing = max(0, counts.failing)
        return counts
    }

    /// In-flight or waiting messages, oldest first.
    func liveMessages(_ state: MessageState, limit: Int) -> [InspectedMessage] {
        lock.lock()
        defer { lock.unlock() }
        var found: [OutgoingMessage] = []
        for group in self.state.groups.values {
            switch state {
            case .inFlight: found.append(contentsOf: group.inFlight)
            case .waiting: found.append(contentsOf: group.waiting)
            default: break
            }
        }
        found.sort { $0.position < $1.position }
        return found.prefix(limit).map { InspectedMessage(live: $0, state: state, nextAttemptAt: nil) }
    }

    /// A message in memory (in flight or waiting), if it is.
    func liveMessage(at position: MessagePosition) -> InspectedMessage? {
        lock.lock()
        defer { lock.unlock() }
        for group in state.groups.values {
            if let message = group.inFlight.first(where: { $0.position == position }) {
                return InspectedMessage(live: message, state: .inFlight, nextAttemptAt: nil)
            }
            if let message = group.waiting.first(where: { $0.position == position }) {
                return InspectedMessage(live: message, state: .waiting, nextAttemptAt: nil)
            }
        }
        return nil
    }

    /// Positions of parked messages being tried right now (they show as in flight).
    func parkedInFlight() -> Set<MessagePosition> {
        lock.lock()
        defer { lock.unlock() }
        return Set(state.groups.values.flatMap { $0.inFlight.filter(\.isParked).map(\.position) })
    }

    func nextAttempt(group: String) -> Date? {
        lock.lock()
        defer { lock.unlock() }
        guard let group = state.groups[group], group.parked > 0 else { return nil }
        return group.retryAt ?? Date()
    }

    /// The newest delivered messages this process holds, newest first.
    func deliveredInMemory(limit: Int) -> [DeliveredMessage] {
        lock.lock()
        defer { lock.unlock() }
        return state.recentlyDelivered.suffix(limit).reversed().map { $0.delivered(sink: sink.name) }
    }

    func deliveredInMemory(at position: MessagePosition) -> DeliveredMessage? {
        lock.lock()
        defer { lock.unlock() }
        return state.recentlyDelivered.last { $0.position == position }?.delivered(sink: sink.name)
    }

    // MARK: - Actions

    /// A failing message's group is tried now: its backoff ends (the group's oldest message goes first).
    func retryNow(group: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard state.retryNow(group: group, now: Date()) else { return false }
        workerSignalled = true
        lock.broadcast()
        return true
    }

    typealias CancelRefusal = DeliveryStateMachine.CancelRefusal

    /// Gives up a failing message: it is recorded as cancelled (reason `user`) and its group moves on.
    func cancelFailing(_ parked: ParkedMessage) throws -> CancelledMessage {
        if let refusal = lock.withLock({ state.cancelRequested(group: parked.group, position: parked.position) }) {
            throw refusal
        }
        let summary = MessageSummary(json: parked.value)
        guard let cancelled = try ledger.cancelParked(sink: sink.name, position: parked.position, reason: "user",
                                                     action: summary.action?.rawValue, recordPKs: summary.recordPKs)
        else { throw CancelRefusal.notFailing }
        lock.lock()
        let actions = state.cancelRecorded(group: parked.group)
        workerSignalled = true
        lock.broadcast()
        lock.unlock()
        metrics.record(actions.counts)
        logger.notice("a failing message was cancelled by a user; its group moves on", metadata: [
            "sink": "\(sink.name)", "table": "\(parked.table)", "key": "\(String(decoding: parked.key ?? [], as: UTF8.self))",
            "position": "\(parked.position)"])
        return cancelled
    }
}
