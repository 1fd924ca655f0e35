import Foundation

/// Whether a sink's writes to the state file succeed: the problem `/readyz` shows while they fail, and
/// when to say so in the log — at the first failure of each kind of write, then once a minute, not at
/// every retry.
final class LedgerHealth: @unchecked Sendable {
    /// The two kinds of writes the dispatcher's worker makes; one may fail while the other, smaller, fits.
    enum Write: Hashable { case parks, delivered }

    private let lock = NSLock()
    private var failing: [Write: Date] = [:]
    private var lastLogged: [Write: Date] = [:]
    private var current: String?
    let logInterval: TimeInterval

    init(logInterval: TimeInterval = 60) { self.logInterval = logInterval }

    /// The explanation of the failing writes, nil while they succeed.
    var problem: String? { lock.withLock { current } }

    /// Whether this kind of write failed last time (and should be tried again).
    func isFailing(_ write: Write) -> Bool { lock.withLock { failing[write] != nil } }

    /// A write failed: true when this failure is to be logged (the first of its kind, or a minute after
    /// the last one logged).
    func failed(_ write: Write, _ explanation: String, now: Date) -> Bool {
        lock.withLock {
            current = explanation
            if failing[write] == nil { failing[write] = now }
            guard now.timeIntervalSince(lastLogged[write] ?? .distantPast) >= logInterval else { return false }
            lastLogged[write] = now
            return true
        }
    }

    /// A write succeeded: once no kind of write fails any more, how long they had been failing (nil if
    /// they had not, or still do).
    func succeeded(_ write: Write, now: Date) -> TimeInterval? {
        lock.withLock {
            guard let since = failing.removeValue(forKey: write) else { return nil }
            lastLogged[write] = nil
            guard failing.isEmpty else { return nil }
            current = nil
            return now.timeIntervalSince(since)
        }
    }
}
