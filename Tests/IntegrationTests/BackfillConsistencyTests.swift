import Foundation
import KafkaMock
import KafkaSink
import Testing

/// A backfill under concurrent writes, and across a crash: a consumer that applies the topic in
/// order per key ends with exactly the table's contents, and a restart sends at most a page again.
@Suite(.serialized)
struct BackfillConsistencyTests {
    struct Row: Equatable, CustomStringConvertible {
        var v: Int
        var note: String
        var description: String { "(\(v), \(note.debugDescription))" }
    }

    /// The table's current contents, id → (v, note).
    static func contents(of table: String, in database: TestDatabase) throws -> [Int: Row] {
        var rows: [Int: Row] = [:]
        for row in try database.execute("SELECT id, v, note FROM \(table)").rows {
            guard let id = row[0].flatMap({ Int($0) }), let v = row[1].flatMap({ Int($0) }) else { continue }
            rows[id] = Row(v: v, note: row[2] ?? "")
        }
        return rows
    }

    @Test func aConsumerApplyingTheTopicInOrderEndsWithTheTableWhileWritesContinueDuringTheBackfill() throws {
        let started = Date()
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("consistency"))
        // librdkafka's mock cluster keeps 5 MB per partition and drops older messages: 64 partitions hold it all.
        try cluster.createTopic(topic.name, partitions: 64)
        let total = 200_000
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL)")
        try db.execute("INSERT INTO public.t SELECT g, g * 7 % 1000, 'row ' || g FROM generate_series(1, \(total)) g")

        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic, tables: ["public.t"])],
                                    hosts: cluster.bootstrapServers)
        let (sluice, api) = try fixture.startSluiceWithBackfillAPI(config: config)

        // The writer runs from before the backfill starts until after it completed: rows ahead of the
        // cursor, behind it and inside the page being read change, and new ones appear.
        let writer = BackfillChurnWriter(url: db.url, table: "public.t", keys: 1...(total + total / 10), pause: 0)
        Thread.sleep(forTimeInterval: 1)
        let id = try #require(try api.startOne(sink: "s", table: "public.t").string("id"))
        let done = try api.waitUntilEnded(id, timeout: 150)
        let writes = try writer.stop()
        try #require(done.string("state") == "completed", "the backfill completed: \(done); log:\n\(sluice.log.suffix(4000))")
        #expect(writes.changes > 1_000, "the writer changed rows during the backfill: \(writes)")
        #expect(try fixture.waitUntilSlotPassesCurrentWAL(timeout: 60), "everything written was delivered; log:\n\(sluice.log.suffix(4000))")

        // Apply the topic in order per key (a partition keeps its keys' order).
        var applied: [Int: Row] = [:]
        var reads = 0, changes = 0, unreadable: [String] = []
        let consumed = try BackfillTopicReader(hosts: cluster.bootstrapServers, name: topic.name).forEach { message in
            let json = message.json
            guard let action = json["action"] as? String, let record = json["record"] as? [String: Any],
                  let id = record["id"] as? Int else {
                if unreadable.count < 5 { unreadable.append(message.payload) }
                return
            }
            switch action {
            case "delete":
                changes += 1
                applied[id] = nil
            case "read", "insert", "update":
                if action == "read" { reads += 1 } else { changes += 1 }
                applied[id] = Row(v: record["v"] as? Int ?? -1, note: record["note"] as? String ?? "")
            default:
                if unreadable.count < 5 { unreadable.append(message.payload) }
            }
        }
        let expected = try Self.contents(of: "public.t", in: db)
        print("""
            backfill consistency: \(total) rows at the start, \(writes.changes) concurrent changes \
            (\(writes.upserts) upserts, \(writes.updates) updates, \(writes.deletes) deletes); \(consumed) messages: \
            \(reads) reads (\(done.int("rows_processed_count") ?? -1) read, \(done.int("rows_ingested_count") ?? -1) sent), \
            \(changes) changes; \(expected.count) rows at the end; \(Int(Date().timeIntervalSince(started)))s
            """)
        #expect(unreadable.isEmpty, "every message has an action and a record id: \(unreadable)")
        #expect(reads == done.int("rows_ingested_count"), "the topic holds as many reads as the backfill says it sent")
        #expect(changes == writes.changes, "every change arrived once")

        let wrongKeys = Set(expected.keys).union(applied.keys).filter { expected[$0] != applied[$0] }.sorted()
        #expect(applied.count == expected.count, "rows after applying the topic vs SELECT * FROM t")
        #expect(wrongKeys.count == 0, """
            \(wrongKeys.count) keys differ from SELECT * FROM t, e.g. \
            \(wrongKeys.prefix(5).map { "\($0): table \(expected[$0].map(\.description) ?? "absent"), topic \(applied[$0].map(\.description) ?? "absent")" })
            """)
        if !wrongKeys.isEmpty {
            // What arrived for those keys, in order: which message made the result wrong.
            let shown = Set(wrongKeys.prefix(5))
            var history: [Int: [String]] = [:]
            try BackfillTopicReader(hosts: cluster.bootstrapServers, name: topic.name).forEach { message in
                let json = message.json
                guard let record = json["record"] as? [String: Any], let id = record["id"] as? Int, shown.contains(id) else { return }
                let metadata = json["metadata"] as? [String: Any] ?? [:]
                history[id, default: []].append("\(json["action"] ?? "?") v=\(record["v"] ?? "-") commit_lsn=\(metadata["commit_lsn"] ?? "?")")
            }
            Issue.record("messages per wrong key, in partition order: \(history)")
        }
        #expect(sluice.stop() == 0)
    }

    @Test func aBackfillKilledMidwayResumesFromItsCursorSendingAtMostAPageAgainAndNothingMissing() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("resume"))
        // librdkafka's mock cluster keeps 5 MB per partition and drops older messages: 32 partitions hold it all.
        try cluster.createTopic(topic.name, partitions: 32)
        let total = 100_000
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL)")
        try db.execute("INSERT INTO public.t SELECT g, g, 'row ' || g FROM generate_series(1, \(total)) g")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic, tables: ["public.t"])],
                                    hosts: cluster.bootstrapServers)
        let (first, api) = try fixture.startSluiceWithBackfillAPI(config: config)
        let id = try #require(try api.startOne(sink: "s", table: "public.t").string("id"))

        // Kill it once a few pages are safe, while it is still reading.
        let midway = try api.wait(for: id, timeout: 60, every: 0.02) {
            ($0.int("rows_processed_count") ?? 0) >= 10_000 || $0.string("state") != "active"
        }
        // The progress shows right after a cursor save: wait a little so the kill lands inside a page.
        Thread.sleep(forTimeInterval: Double.random(in: 0.05...0.4))
        first.kill(signal: SIGKILL)
        first.process.waitUntilExit()
        try #require(midway.string("state") == "active", "the kill landed before the backfill ended: \(midway)")
        let processedBeforeKill = midway.int("rows_processed_count") ?? 0
        try #require(processedBeforeKill < total)

        let second = try first.restart(fixture.environment)
        #expect(second.waitUntilStreaming(), "restarted; log:\n\(second.log)")
        try api.waitUntilServing(second)
        let resumed = try api.backfill(id)
        #expect(resumed.string("state") == "active" || resumed.string("state") == "completed")
        #expect((resumed.int("rows_processed_count") ?? 0) > 0, "the restart kept the saved progress: \(resumed)")
        let done = try api.waitUntilEnded(id, timeout: 120)
        try #require(done.string("state") == "completed", "\(done); log:\n\(second.log.suffix(4000))")
        #expect(done.int("rows_processed_count") == total, "rows read once each, counted from the saved cursor on: \(done)")
        #expect(try fixture.waitUntilSlotPassesCurrentWAL(), "everything was delivered")

        var sent: [String: Int] = [:]
        var pages: [Int: Int] = [:]
        var seenIDs = Set<Int>()
        var badKeys: [String] = []
        try BackfillTopicReader(hosts: cluster.bootstrapServers, name: topic.name).forEach { message in
            let json = message.json
            guard json["action"] as? String == "read", let record = json["record"] as? [String: Any], let row = record["id"] as? Int,
                  let metadata = json["metadata"] as? [String: Any], let lsn = metadata["commit_lsn"] as? Int else { return }
            let key = backfillDecodedKey(metadata) ?? ""
            if key != "\(id):\(row)", badKeys.count < 5 { badKeys.append(key) }
            sent[key, default: 0] += 1
            pages[lsn, default: 0] += 1  // a page's rows share its high watermark's position
            seenIDs.insert(row)
        }
        let reads = sent.values.reduce(0, +)
        let duplicates = reads - sent.count
        let largestPage = pages.values.max() ?? 0
        let missing = Set(1...total).subtracting(seenIDs)
        print("""
            backfill resume: killed after \(processedBeforeKill) (saved) of \(total) rows; \(reads) reads, \(sent.count) distinct, \
            \(duplicates) sent twice; \(pages.count) pages, the largest \(largestPage) rows
            """)
        #expect(badKeys.isEmpty, "idempotency_key is base64 of <backfill id>:<pk>, the same after the restart: \(badKeys)")
        #expect(missing.count == 0, "\(missing.count) rows never arrived, e.g. \(missing.sorted().prefix(10))")
        #expect(duplicates < 2 * largestPage, "at most a page or so is sent again (\(duplicates) duplicates)")
        #expect(duplicates < 20_000, "fewer duplicates than two of the largest pages (10,000 rows each)")
        #expect(second.stop() == 0)
    }
    /// The window between a commit's WAL record and its visibility, made long by synchronous
    /// replication (the committing session waits for a standby that never answers): the change is
    /// already in the stream before the low watermark, yet the page's SELECT does not see it.
    @Test func aChangeInTheStreamBeforeTheLowWatermarkButNotYetVisibleIsNotOverwrittenByTheRead() throws {
        let environment = try TestEnvironment.current()
        let postgres = try OwnPostgres()
        let admin = try PostgresSourceConnection(url: postgres.url)
        try admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        try admin.execute("ALTER SYSTEM SET synchronous_commit = 'local'")  // only the writer below waits
        try admin.execute("SELECT pg_reload_conf()")
        try admin.execute("SET synchronous_commit = 'local'")
        try admin.execute("CREATE TABLE public.t (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL)")
        try admin.execute("INSERT INTO public.t VALUES (1, 0, 'before')")
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("visibility"))
        try cluster.createTopic(topic.name, partitions: 1)
        let port = try freePort()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("state")).path
        let sluice = try SluiceProcess(environment, config: """
            database:
              url: \(postgres.url)
              slot: { name: \(TestEnvironment.uniqueName("slot")), create_if_not_exists: true }
              publication: { name: pub, create_if_not_exists: true, tables: [public.t] }
              heartbeat_interval: 1s
            state: { path: \(state)/state.sqlite }
            sinks:
              - name: s
                destination: { type: kafka, hosts: "\(cluster.bootstrapServers)", topic: \(topic.name) }
            console: { listen: "127.0.0.1:\(port)", token: "t" }
            """)
        try #require(sluice.waitUntilStreaming(), "log:\n\(sluice.log)")
        let api = BackfillAPI(port: port, token: "t")
        try api.waitUntilServing(sluice)

        // The update commits (its WAL record is flushed and decoded) but stays invisible while its
        // session waits for the standby.
        let updated = DispatchSemaphore(value: 0)
        let url = postgres.url
        Thread.detachNewThread {
            guard let writer = try? PostgresSourceConnection(url: url) else { return }
            _ = try? writer.execute("SET synchronous_commit = 'on'")
            _ = try? writer.execute("UPDATE public.t SET v = 1, note = 'after' WHERE id = 1")
            updated.signal()
        }
        let streamed = try topic.waitForMessages(1, timeout: 20)
        try #require(streamed.first?.action == "update", "the update is in the stream: \(streamed.map(\.payload))")
        #expect(try admin.execute("SELECT v FROM public.t WHERE id = 1").rows.first?[0] == "0", "not yet visible to others")

        let id = try #require(try api.startOne(sink: "s", table: "public.t").string("id"))
        // The page's read cannot see a change that already streamed: the backfill reads again and waits.
        Thread.sleep(forTimeInterval: 3)
        #expect(try api.backfill(id).string("state") == "active", "it must not send the stale row")
        // The commit becomes visible; the page is read again and the backfill completes.
        try admin.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
        #expect(updated.wait(timeout: .now() + 10) == .success)
        let done = try api.waitUntilEnded(id, timeout: 30)
        #expect(done.string("state") == "completed", "\(done)")
        try admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
        try admin.execute("SELECT pg_reload_conf()")
        #expect(try admin.execute("SELECT v FROM public.t WHERE id = 1").rows.first?[0] == "1")

        let messages = try topic.waitForMessages(2, timeout: 20)
        let history = messages.map { "\($0.action ?? "?") v=\($0.record["v"] ?? "-")" }
        let last = messages.last { $0.record["id"] as? Int == 1 }
        #expect(last?.record["v"] as? Int == 1, "a consumer applying the topic in order ends with the table's v = 1; topic: \(history)")
        #expect(sluice.stop() == 0)
    }
}
