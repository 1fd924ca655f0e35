import Foundation
import Metrics
import Synchronization

/// This instance's place among the instances of its slot, for `/api/status`, the console's header
/// and the metrics `sluice_leader{instance}` and `sluice_takeovers_total`.
public final class HAStatus: Sendable {
    public enum Role: String, Sendable { case leader, standby }

    public struct Snapshot: Sendable, Equatable {
        public var role: Role
        /// This instance: `ha.instance`, else host:pid.
        public var instance: String
        /// The slot's holder as the lease row last said (with `state.store: postgres`); nil when no
        /// instance holds it yet, or without high availability.
        public var leader: LeaseHolder?
        /// True with `state.store: postgres`: instances elect a leader.
        public var electing: Bool

        public init(role: Role, instance: String, leader: LeaseHolder?, electing: Bool) {
            self.role = role
            self.instance = instance
            self.leader = leader
            self.electing = electing
        }
    }

    private let state: Mutex<Snapshot>
    private let takeovers = Counter(label: "sluice_takeovers_total")

    public init(instance: String = HAStatus.defaultInstance) {
        state = Mutex(Snapshot(role: .leader, instance: instance, leader: nil, electing: false))
    }

    /// host:pid.
    public static var defaultInstance: String { "\(ProcessInfo.processInfo.hostName):\(getpid())" }

    public var snapshot: Snapshot { state.withLock { $0 } }

    /// Without high availability the one instance leads.
    public func single(instance: String) {
        state.withLock { $0 = Snapshot(role: .leader, instance: instance, leader: nil, electing: false) }
        record(.leader, instance: instance)
    }

    public func standby(instance: String, leader: LeaseHolder?) {
        state.withLock { $0 = Snapshot(role: .standby, instance: instance, leader: leader, electing: true) }
        record(.standby, instance: instance)
    }

    /// This instance took the slot; `previous` held it before (a takeover), nil on a first election.
    func leading(instance: String, term: Int64, expiresAt: Date, previous: String?) {
        state.withLock {
            $0 = Snapshot(role: .leader, instance: instance, leader: LeaseHolder(instance: instance, term: term, expiresAt: expiresAt),
                          electing: true)
        }
        if previous != nil { takeovers.increment() }
        record(.leader, instance: instance)
    }

    func renewed(expiresAt: Date) {
        state.withLock { $0.leader?.expiresAt = expiresAt }
    }

    private func record(_ role: Role, instance: String) {
        Gauge(label: "sluice_leader", dimensions: [("instance", instance)]).record(role == .leader ? 1 : 0)
    }
}
