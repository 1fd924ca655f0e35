import Foundation
import PostgresSource

/// Writes a steady insert/update/delete load on its own thread, one change per transaction.
/// Every row carries `seq`, a counter that only grows, so a consumer can check order per key.
final class LoadWriter: @unchecked Sendable {
    struct Event: Hashable {
        var id: Int
        var seq: Int
        var action: String
    }

    let url: String
    let keys: Int
    private let lock = NSLock()
    private var events: [Event] = []
    private var stopRequested = false
    private var failure: String?
    private let done = DispatchSemaphore(value: 0)

    /// The table must exist: `(id int PRIMARY KEY, seq bigint NOT NULL)` with REPLICA IDENTITY FULL.
    init(url: String, table: String, keys: Int, pause: Double = 0.002) {
        self.url = url
        self.keys = keys
        let thread = Thread { [self] in
            defer { done.signal() }
            do {
                let connection = try PostgresConnection(parameters: [("dbname", url)])
                var exists = Set<Int>()
                var seq = 0
                while !isStopping {
                    let id = Int.random(in: 1...keys)
                    seq += 1
                    let action: String
                    if !exists.contains(id) {
                        try connection.query("INSERT INTO \(table) VALUES ($1, $2)", [String(id), String(seq)])
                        exists.insert(id)
                        action = "insert"
                    } else if Int.random(in: 0..<10) == 0 {
                        try connection.query("DELETE FROM \(table) WHERE id = $1", [String(id)])
                        exists.remove(id)
                        action = "delete"
                    } else {
                        try connection.query("UPDATE \(table) SET seq = $2 WHERE id = $1", [String(id), String(seq)])
                        action = "update"
                    }
                    // A delete carries the row's last seq; record what the message will show.
                    let shown = action == "delete" ? lastSeq(of: id) : seq
                    record(Event(id: id, seq: shown, action: action))
                    if pause > 0 { Thread.sleep(forTimeInterval: pause) }
                }
            } catch {
                lock.lock()
                failure = "\(error)"
                lock.unlock()
            }
        }
        thread.start()
    }

    private var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopRequested
    }

    private func record(_ event: Event) {
        lock.lock()
        events.append(event)
        lock.unlock()
    }

    private func lastSeq(of id: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return events.last { $0.id == id }?.seq ?? 0
    }

    /// Stops writing and returns every change committed, in commit order.
    func stop() throws -> [Event] {
        lock.lock()
        stopRequested = true
        lock.unlock()
        done.wait()
        if let failure { throw TestSetupError("the load writer failed: \(failure)") }
        return events
    }
}

/// Checks that every written change arrived and that, per key, changes arrived in commit order
/// (a re-sent duplicate may repeat an earlier change; a change never overtakes an earlier one).
struct OrderCheck {
    var missing: [LoadWriter.Event] = []
    var outOfOrder: [String] = []
    var duplicates = 0

    init(expected: [LoadWriter.Event], messages: [ConsumedMessage]) {
        var arrived = Set<LoadWriter.Event>()
        var firstSeen = [Int: [Int]]()
        for message in messages {
            guard let id = message.record["id"] as? Int, let seq = message.record["seq"] as? Int, let action = message.action else { continue }
            let event = LoadWriter.Event(id: id, seq: seq, action: action)
            if arrived.insert(event).inserted {
                firstSeen[id, default: []].append(seq)
            } else {
                duplicates += 1
            }
        }
        missing = expected.filter { !arrived.contains($0) }
        for (id, seqs) in firstSeen where zip(seqs, seqs.dropFirst()).contains(where: { $0 > $1 }) {
            outOfOrder.append("key \(id): \(seqs)")
        }
    }
}
