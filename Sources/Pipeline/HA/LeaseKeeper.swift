import Foundation
import Logging
import Synchronization

/// The leader's side of its lease: renews it every lease/3 on its own thread, and says whether this
/// instance may still act as leader — not once a renewal found the leadership gone, nor once the lease
/// would have run out since the last renewal that succeeded (less a margin, so that this instance has
/// stopped before a standby may take the slot). The clock is monotonic: a frozen process wakes up expired.
final class LeaseKeeper: Sendable {
    private let validUntil: Mutex<Double>
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private let margin: Double

    /// `claimedAt`: when the claim that won the lease was sent (`LeaseKeeper.now()`): the lease runs from then.
    init(election: LeaderElection, claimedAt: Double, status: HAStatus, logger: Logger) {
        let lease = election.lease
        margin = min(1, lease / 10)
        validUntil = Mutex(claimedAt + lease)
        let thread = Thread { [self] in
            defer { done.signal() }
            var lastFailure = ""
            while !stopping.load(ordering: .relaxed) {
                let started = Self.now()
                switch election.renew() {
                case .renewed(let expiresAt):
                    validUntil.withLock { $0 = started + lease }
                    status.renewed(expiresAt: expiresAt)
                    lastFailure = ""
                case .lost:
                    validUntil.withLock { $0 = 0 }
                    return
                case .failed(let error):
                    if error != lastFailure {
                        logger.warning("could not renew the lease; still leading until it runs out", metadata: [
                            "error": "\(error)", "lease_s": "\(lease)"])
                    }
                    lastFailure = error
                }
                let next = started + lease / 3
                while !stopping.load(ordering: .relaxed), Self.now() < next, isValid { Thread.sleep(forTimeInterval: 0.05) }
            }
        }
        thread.name = "sluice-lease"
        thread.start()
    }

    static func now() -> Double { ProcessInfo.processInfo.systemUptime }

    /// True while this instance may still act as leader.
    var isValid: Bool { Self.now() < validUntil.withLock { $0 } - margin }

    /// Ends the renewals (before the election resigns or forgets).
    func stop() {
        stopping.store(true, ordering: .relaxed)
        done.wait()
    }
}
