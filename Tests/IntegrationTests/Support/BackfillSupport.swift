import Foundation
import PostgresSource

/// The backfill API of a running sluice, called with curl as a user's script would.
struct BackfillAPI {
    let port: Int
    let token: String

    struct Answer: CustomStringConvertible {
        var status: Int
        var body: String
        var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] }
        var error: String { json?["error"] as? String ?? "" }
        var description: String { "HTTP \(status): \(body.prefix(2000))" }
    }

    /// `method path` with an optional JSON body.
    func send(_ method: String, _ path: String, json: [String: Any]? = nil) throws -> Answer {
        var arguments = ["-sS", "--max-time", "30", "-X", method, "-H", "Authorization: Bearer \(token)", "-w", "\n%{http_code}"]
        if let json {
            let body = String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self)
            arguments += ["-H", "Content-Type: application/json", "--data-raw", body]
        }
        let result = try runCommand("/usr/bin/curl", arguments + ["http://127.0.0.1:\(port)\(path)"])
        guard result.status == 0 else { throw TestSetupError("curl \(method) \(path) failed (\(result.status)): \(result.stderr)") }
        var lines = result.stdout.components(separatedBy: "\n")
        let status = Int(lines.removeLast()) ?? 0
        return Answer(status: status, body: lines.joined(separator: "\n"))
    }

    /// `POST /api/sinks/{sink}/backfills`; the raw answer, for tests of refusals.
    func start(sink: String, tables: [String]? = nil, sortColumn: String? = nil, startPosition: String? = nil) throws -> Answer {
        var body: [String: Any] = [:]
        if let tables { body["tables"] = tables }
        if let sortColumn { body["sort_column"] = sortColumn }
        if let startPosition { body["start_position"] = startPosition }
        return try send("POST", "/api/sinks/\(sink)/backfills", json: body)
    }

    /// Starts one backfill of one table and returns it (a 201 or a thrown error naming the answer).
    func startOne(sink: String, table: String, sortColumn: String? = nil, startPosition: String? = nil) throws -> [String: Any] {
        let answer = try start(sink: sink, tables: [table], sortColumn: sortColumn, startPosition: startPosition)
        guard answer.status == 201, let json = answer.json, json["id"] is String else {
            throw TestSetupError("POST /api/sinks/\(sink)/backfills: \(answer)")
        }
        return json
    }

    func backfill(_ id: String) throws -> [String: Any] {
        let answer = try send("GET", "/api/backfills/\(id)")
        guard answer.status == 200, let json = answer.json else { throw TestSetupError("GET /api/backfills/\(id): \(answer)") }
        return json
    }

    func list() throws -> [[String: Any]] {
        let answer = try send("GET", "/api/backfills")
        guard answer.status == 200, let list = answer.json?["backfills"] as? [[String: Any]] else {
            throw TestSetupError("GET /api/backfills: \(answer)")
        }
        return list
    }

    /// Polls the backfill until `condition` holds; returns the last state seen (check it).
    @discardableResult
    func wait(for id: String, timeout: Double, every interval: Double = 0.2,
              until condition: ([String: Any]) -> Bool) throws -> [String: Any] {
        var last: [String: Any] = [:]
        _ = try eventually(timeout: timeout, every: interval) {
            last = try backfill(id)
            return condition(last)
        }
        return last
    }

    /// Waits until the backfill is no longer active.
    @discardableResult
    func waitUntilEnded(_ id: String, timeout: Double) throws -> [String: Any] {
        try wait(for: id, timeout: timeout) { ($0["state"] as? String) != "active" }
    }
}

extension Fixture {
    /// Starts sluice with its console (and so the backfill API) on a free port of 127.0.0.1.
    func startSluiceWithBackfillAPI(config: String, token: String = "backfill-test-token") throws -> (SluiceProcess, BackfillAPI) {
        let port = try freePort()
        let sluice = try startSluice(config: config + "console: { listen: \"127.0.0.1:\(port)\", token: \"\(token)\" }\n")
        let api = BackfillAPI(port: port, token: token)
        try api.waitUntilServing(sluice)
        return (sluice, api)
    }

    /// Waits until nothing is left to deliver: the slot confirmed everything written so far.
    func waitUntilSlotPassesCurrentWAL(timeout: Double = 60) throws -> Bool {
        let target = try database.currentWAL()
        return try eventually(timeout: timeout, every: 0.25) { (try database.confirmedFlush(slot: slot) ?? .zero) >= target }
    }
}

extension BackfillAPI {
    /// Waits until the API answers (it says 503 while the pipeline starts).
    func waitUntilServing(_ sluice: SluiceProcess, timeout: Double = 30) throws {
        let serving = eventually(timeout: timeout, every: 0.2) { (try? send("GET", "/api/backfills").status) == 200 }
        if !serving { throw TestSetupError("the backfill API did not answer on port \(port):\n\(sluice.log)") }
    }
}

/// One message of a topic read in full by `BackfillTopicReader`: where it is, its key and raw value.
struct BackfillDeliveredMessage {
    var partition: Int
    var offset: Int
    var key: String
    var payload: String

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(payload.utf8))) as? [String: Any] ?? [:] }
}

/// Reads a whole topic with kcat (from the beginning to its end), for topics too large for
/// `KafkaTopic.messages()`'s 10 s: hundreds of thousands of messages, handed over one at a time.
struct BackfillTopicReader {
    let hosts: String
    let name: String

    /// Calls `body` for each message, in partition, then offset order; returns how many there were.
    @discardableResult
    func forEach(timeout: Int = 120, _ body: (BackfillDeliveredMessage) throws -> Void) throws -> Int {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString + ".kcat")
        defer { try? FileManager.default.removeItem(at: output) }
        // Tab-separated: partition, offset, key, value (a JSON value never holds a raw tab or newline).
        let command = "exec /usr/bin/timeout -k 2 \(timeout) /usr/bin/kcat -C -b '\(hosts)' -t '\(name)' -o beginning -e -q "
            + "-X topic.metadata.refresh.interval.ms=1000 -f '%p\\t%o\\t%k\\t%s\\n' > '\(output.path)'"
        let result = try runCommand("/bin/sh", ["-c", command])
        guard result.status == 0 else { throw TestSetupError("kcat on \(name) failed (\(result.status)): \(result.stderr)") }
        let data = try Data(contentsOf: output)
        var messages: [BackfillDeliveredMessage] = []
        for line in data.split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: "\t"), maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count == 4, let partition = Int(String(decoding: fields[0], as: UTF8.self)),
                  let offset = Int(String(decoding: fields[1], as: UTF8.self)) else { continue }
            messages.append(BackfillDeliveredMessage(partition: partition, offset: offset, key: String(decoding: fields[2], as: UTF8.self),
                                                     payload: String(decoding: fields[3], as: UTF8.self)))
        }
        messages.sort { ($0.partition, $0.offset) < ($1.partition, $1.offset) }
        for message in messages { try body(message) }
        return messages.count
    }
}

/// Inserts, updates and deletes random rows of `(id int PRIMARY KEY, v int, note text)` on a
/// thread of its own, one row per transaction, until stopped.
final class BackfillChurnWriter: @unchecked Sendable {
    struct Counts {
        var upserts = 0
        var updates = 0
        var deletes = 0
        /// Statements that changed a row (and so put a change into the stream).
        var changes: Int { upserts + updates + deletes }
    }

    private let lock = NSLock()
    private var counts = Counts()
    private var stopRequested = false
    private var failure: String?
    private let done = DispatchSemaphore(value: 0)

    init(url: String, table: String, keys: ClosedRange<Int>, pause: Double = 0.002) {
        let thread = Thread { [self] in
            defer { done.signal() }
            do {
                let connection = try PostgresConnection(parameters: [("dbname", url)])
                var step = 0
                while !isStopping {
                    step += 1
                    let id = String(Int.random(in: keys))
                    let v = String(Int.random(in: 0..<1_000_000))
                    let note = "churn \(step) ü \(Int.random(in: 0..<1000))"
                    switch Int.random(in: 0..<10) {
                    case 0..<3:
                        try connection.query("""
                            INSERT INTO \(table) (id, v, note) VALUES ($1, $2, $3)
                            ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note
                            """, [id, v, note])
                        count { $0.upserts += 1 }
                    case 3..<7:
                        let changed = try connection.query("UPDATE \(table) SET v = $2, note = $3 WHERE id = $1 RETURNING id", [id, v, note])
                        count { $0.updates += changed.rows.count }
                    default:
                        let changed = try connection.query("DELETE FROM \(table) WHERE id = $1 RETURNING id", [id])
                        count { $0.deletes += changed.rows.count }
                    }
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

    private func count(_ change: (inout Counts) -> Void) {
        lock.lock()
        change(&counts)
        lock.unlock()
    }

    var current: Counts {
        lock.lock()
        defer { lock.unlock() }
        return counts
    }

    /// Stops writing (after the statement in progress) and returns what was written.
    func stop() throws -> Counts {
        lock.lock()
        stopRequested = true
        lock.unlock()
        done.wait()
        if let failure { throw TestSetupError("the churn writer failed: \(failure)") }
        return counts
    }
}

/// Decodes a message's `metadata.idempotency_key` (base64 text).
func backfillDecodedKey(_ metadata: [String: Any]) -> String? {
    guard let text = metadata["idempotency_key"] as? String, let data = Data(base64Encoded: text) else { return nil }
    return String(data: data, encoding: .utf8)
}
