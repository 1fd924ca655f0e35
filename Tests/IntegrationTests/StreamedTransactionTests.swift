import Foundation
import KafkaSink
import Logging
import SluiceCore
import Testing

/// Transactions larger than logical_decoding_work_mem arrive while in progress (protocol 2,
/// streaming) and wait on disk until they commit; aborted ones send nothing.
@Suite(.serialized)
struct StreamedTransactionTests {
    /// A fixture whose database makes the walsender stream any transaction over 64 kB.
    func streamingFixture() throws -> Fixture {
        let fixture = try Fixture()
        try fixture.database.execute("ALTER DATABASE \(fixture.database.name) SET logical_decoding_work_mem = '64kB'")
        try fixture.database.execute("CREATE TABLE public.big (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0)")
        return fixture
    }

    func count(_ topic: KafkaTopic, atLeast expected: Int64, timeout: Double) throws -> Int64 {
        var silent = Logger(label: "count")
        silent.logLevel = .critical
        let producer = try KafkaProducer(properties: [("bootstrap.servers", topic.hosts)], logger: silent) { _ in }
        var seen: Int64 = 0
        _ = eventually(timeout: timeout, every: 1) {
            seen = (try? producer.messageCount(topic: topic.name, timeout: 10)) ?? seen
            return seen >= expected
        }
        return seen
    }

    func peakRSSMegabytes(_ process: SluiceProcess) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(process.process.processIdentifier)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return kilobytes / 1024
    }

    /// The issue's case: one UPDATE of 2,000,000 rows, decoded with 64 kB of logical_decoding_work_mem.
    @Test func twoMillionRowUpdateIsStreamedSpilledAndDeliveredWhole() throws {
        let fixture = try streamingFixture()
        let db = fixture.database
        let rows = 2_000_000
        // Written before the slot exists, so only the UPDATE below is replicated.
        try db.execute("INSERT INTO public.big SELECT g, repeat('x', 40) FROM generate_series(1, \(rows)) g")
        let topic = fixture.topic("big")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.big"], sinks: [.init(name: "s", topic: topic)]))
        let started = Date()
        try db.execute("UPDATE public.big SET n = n + 1")
        let updated = Date()

        let arrived = try count(topic, atLeast: Int64(rows), timeout: 600)
        let delivered = Date()
        let streamed = try db.execute("SELECT stream_txns, stream_count, stream_bytes FROM pg_stat_replication_slots WHERE slot_name = $1",
                                      [fixture.slot])
        let peak = peakRSSMegabytes(sluice)
        print("""
            2,000,000-row UPDATE: \(arrived) messages; UPDATE took \(Int(updated.timeIntervalSince(started))) s, all delivered \
            \(Int(delivered.timeIntervalSince(updated))) s after commit; streamed in \(streamed.value("stream_count") ?? "?") chunks \
            (\(streamed.value("stream_bytes") ?? "?") bytes); sluice peak RSS \(peak ?? -1) MB
            """)
        #expect(arrived == Int64(rows), "log:\n\(sluice.log.suffix(3000))")
        // ≥ 1: autovacuum's ANALYZE of the 2,000,000 rows may be streamed as well (catalog changes, no output).
        #expect((Int(streamed.value("stream_txns") ?? "0") ?? 0) >= 1, "the server streamed the transaction")
        #expect((peak ?? 0) < 150, "memory stays bounded: peak RSS \(peak ?? -1) MB")
        #expect(!sluice.log.contains("replication interrupted"), "no walsender timeout or reconnect")
        #expect(sluice.stop() == 0)
    }

    @Test func abortedStreamedTransactionSendsNothing() throws {
        let fixture = try streamingFixture()
        let db = fixture.database
        let topic = fixture.topic("aborted")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.big"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("BEGIN")
        try db.execute("INSERT INTO public.big SELECT g, repeat('x', 80) FROM generate_series(1, 50000) g")
        try db.execute("ROLLBACK")
        try db.execute("INSERT INTO public.big VALUES (-1, 'committed')")

        let messages = try topic.waitForMessages(1)
        Thread.sleep(forTimeInterval: 2)
        #expect(try topic.messages().map(\.key) == ["-1"], "log:\n\(sluice.log.suffix(3000))")
        #expect(messages.first?.record["v"] as? String == "committed")
        #expect(sluice.stop() == 0)
    }

    @Test func rolledBackSubtransactionOfAStreamedTransactionIsLeftOut() throws {
        let fixture = try streamingFixture()
        let db = fixture.database
        let topic = fixture.topic("savepoint")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.big"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("BEGIN")
        try db.execute("INSERT INTO public.big SELECT g, repeat('a', 80) FROM generate_series(1, 10000) g")
        try db.execute("SAVEPOINT s")
        try db.execute("INSERT INTO public.big SELECT g, repeat('b', 80) FROM generate_series(10001, 20000) g")
        try db.execute("ROLLBACK TO SAVEPOINT s")
        try db.execute("INSERT INTO public.big VALUES (30000, 'after')")
        try db.execute("COMMIT")

        let messages = try topic.waitForMessages(10_001, timeout: 120)
        Thread.sleep(forTimeInterval: 1)
        let keys = try topic.messages().compactMap { $0.key.flatMap { Int($0) } }
        #expect(keys == Array(1...10_000) + [30_000], "log:\n\(sluice.log.suffix(2000))")
        #expect(Set(messages.compactMap { $0.metadata["commit_lsn"] as? Int }).count == 1, "one transaction")
        #expect(messages.map { $0.metadata["commit_idx"] as? Int ?? -1 } == Array(0...10_000))
        #expect(sluice.stop() == 0)
    }

    @Test func interleavedStreamedTransactionsArriveInCommitOrder() throws {
        let fixture = try streamingFixture()
        let db = fixture.database
        let topic = fixture.topic("interleaved")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.big"], sinks: [.init(name: "s", topic: topic)]))
        let other = try PostgresSourceConnection(url: db.url)
        try db.execute("BEGIN")
        try db.execute("INSERT INTO public.big SELECT g, 'first to start' FROM generate_series(1, 5000) g")
        try other.execute("BEGIN")
        try other.execute("INSERT INTO public.big SELECT g, 'first to commit' FROM generate_series(100001, 105000) g")
        try db.execute("INSERT INTO public.big SELECT g, 'first to start' FROM generate_series(5001, 10000) g")
        try other.execute("COMMIT")
        try db.execute("COMMIT")

        let messages = try topic.waitForMessages(15_000, timeout: 120)
        #expect(messages.count == 15_000, "log:\n\(sluice.log.suffix(2000))")
        let order = messages.map { $0.record["v"] as? String ?? "" }
        #expect(order == Array(repeating: "first to commit", count: 5000) + Array(repeating: "first to start", count: 10_000),
                "transactions arrive in commit order, each whole")
        #expect(sluice.stop() == 0)
    }
}
