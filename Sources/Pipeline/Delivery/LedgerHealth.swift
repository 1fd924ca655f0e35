import Foundation

/// Whether a sink's writes to the state file succeed: the problem `/readyz` shows while they fail, and
/// when to say so in the log — at the first failure, then once a minute, not at every retry.
final class LedgerHealth: @unchecked Sendable {
    /// The two kinds of writes the dispatcher's worker makes; one may fail while the other, smaller, fits.
    enum Write: Hashable { case parks, delivered }

    private let lock = NSLock()
    private var failing: [Write: Date] = [:]
    private var lastLogged = Date.distantPast
    private var current: String?
    let logInterval: TimeInterval

    init(logInterval: TimeInterval = 60) { self.logInterval = logInterval }

    /// The explanation of the failing writes, nil while they succeed.
    var problem: String? { lock.withLock { current } }

    /// A write failed: true when this failure is to be logged (the first one, or a minute after the last logged).
    func failed(_ write: Write, _ explanation: String, now: Date) -> Bool {
        lock.withLock {
            current = explanation
            if failing[write] == nil { failing[write] = now }
            guard now.timeIntervalSince(lastLogged) >= logInterval else { return false }
            lastLogged = now
            return true
        }
    }

    /// A write succeeded: once no kind of write fails any more, how long they had been failing (nil if
    /// they had not, or still do).
    func succeeded(_ write: Write, now: Date) -> TimeInterval? {
        lock.withLock {
            guard let since = failing.removeValue(forKey: write) else { return nil }
            guard failing.isEmpty else { return nil }
            current = nil
            lastLogged = .distantPast
            return now.timeIntervalSince(since)
        }
    }
}
