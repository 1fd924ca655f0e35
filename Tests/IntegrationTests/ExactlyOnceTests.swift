import Foundation
import KafkaSink
import Ledger
import Logging
import SluiceCore
import Synchronization
import Testing

/// `delivery: exactly_once` against the real broker: a `read_committed` consumer sees every change once
/// and each PostgreSQL transaction whole — also across SIGKILLs and a frozen broker — a too-large message
/// leaves its transaction, and a second producer with the sink's transactional id fences sluice.
@Suite(.serialized)
struct ExactlyOnceTests {
    /// The sink's exactly-once settings, appended after its destination's fields.
    static func exactlyOnce(offsetsTopic: String, transactionalID: String, destination: String = "") -> String {
        "      transactional_id: \(transactionalID)\n      offsets_topic: \(offsetsTopic)\n      transaction_timeout: 20s\n"
            + destination + "    delivery: exactly_once\n"
    }

    /// One test's exactly-once sink: a table `public.eo (id, txn)`, a one-partition topic, its own offsets topic
    /// and transactional id.
    struct World {
        let fixture: Fixture
        let topic: KafkaTopic
        let offsets: KafkaTopic
        let transactionalID = TestEnvironment.uniqueName("txid")
        var db: TestDatabase { fixture.database }

        init(_ prefix: String, hosts: String? = nil) throws {
            fixture = try Fixture()
            let hosts = hosts ?? fixture.environment.kafkaHosts
            try fixture.database.execute("CREATE TABLE public.eo (id int PRIMARY KEY, txn int NOT NULL)")
            topic = try ExactlyOnceTests.onePartitionTopic(hosts: hosts, prefix: prefix)
            offsets = KafkaTopic(hosts: hosts, name: TestEnvironment.uniqueName("offsets"))
        }

        /// sluice.yml with the sink; `sink`: more of the sink's fields, `hosts`: another broker.
        func config(sink: String = "", hosts: String? = nil) -> String {
            fixture.config(tables: ["public.eo"], sinks: [.init(name: "s", topic: topic, extra: ExactlyOnceTests.exactlyOnce(
                offsetsTopic: offsets.name, transactionalID: transactionalID) + sink)], hosts: hosts)
        }
    }

    /// A topic with one partition, so that one read sees one order of commits.
    static func onePartitionTopic(hosts: String, prefix: String) throws -> KafkaTopic {
        let topic = KafkaTopic(hosts: hosts, name: TestEnvironment.uniqueName(prefix))
        let producer = try KafkaProducer(properties: [("bootstrap.servers", hosts)], logger: Logger(label: "eo-test")) { _ in }
        try producer.createTopic(topic.name, partitions: 1, timeout: 20)
        return topic
    }

    /// Rows of transaction `txn`, as the consumer sees them: (txn, id).
    static func rows(_ messages: [ConsumedMessage]) -> [(txn: Int, id: Int)] {
        messages.compactMap { message in
            guard let txn = message.record["txn"] as? Int, let id = message.record["id"] as? Int else { return nil }
            return (txn, id)
        }
    }

    /// The transactions of which a consumer sees some rows but not all (`sizes`: rows per transaction).
    static func partial(_ messages: [ConsumedMessage], sizes: [Int: Int]) -> [Int] {
        var seen: [Int: Int] = [:]
        for row in rows(messages) { seen[row.txn, default: 0] += 1 }
        return seen.filter { txn, count in sizes[txn].map { count % $0 != 0 } ?? false }.map(\.key).sorted()
    }

    @Test func transactionsArriveWholeOnceAndThePositionIsCommittedWithThem() throws {
        let world = try World("eo")
        let (fixture, db, topic, offsets) = (world.fixture, world.db, world.topic, world.offsets)
        let port = try freePort()
        let sluice = try fixture.startSluice(config: world.config() + "console: { listen: \"127.0.0.1:\(port)\", token: \"t\" }\n")
        for txn in 1...3 {
            try db.execute("INSERT INTO public.eo SELECT \(txn) * 10 + n, \(txn) FROM generate_series(1, 3) n")
        }
        let messages = try topic.waitForMessages(9, timeout: 60)
        #expect(Self.rows(messages).map(\.id) == [11, 12, 13, 21, 22, 23, 31, 32, 33], "log:\n\(sluice.log.suffix(3000))")
        let lastLSN = try #require(messages.last?.metadata["commit_lsn"] as? Int)

        // The position is in offsets_topic, keyed by slot and sink, committed like the messages.
        let recorded = try eventually(timeout: 20) {
            let records = try offsets.messages()
            guard let last = records.last(where: { $0.key == "\(fixture.slot)/s" }),
                  let lsn = (last.json["commit_lsn"] as? String).flatMap({ LSN($0) }) else { return false }
            return lsn.rawValue == UInt64(lastLSN) && last.json["commit_idx"] as? Int == 2
        }
        let records = try offsets.messages().map(\.payload)
        #expect(recorded, "offsets: \(records)")

        // The console says how the sink delivers and how far it committed.
        let console = ConsoleClient(port: port, token: "t")
        #expect(console.waitUntilServing())
        let status = try console.sinkStatus("s")
        #expect(status["delivery"] as? String == "exactly_once")
        let transactions = try #require(status["transactions"] as? [String: Any], "\(status)")
        let committed = transactions["committed"] as? [String: Any]
        #expect((committed?["commit_lsn"] as? String).flatMap { LSN($0) }?.rawValue == UInt64(lastLSN))
        #expect(transactions["state"] as? String == "idle" && transactions["offsets_topic"] as? String == offsets.name)
        let metrics = try console.get("/metrics").body
        #expect(metrics.contains("sluice_transactions_committed_total{sink=\"s\"}"), "\(metrics.prefix(3000))")
        #expect(sluice.stop() == 0)
    }

    @Test func withEnrichmentTransactionsStillArriveWholeAndEnriched() throws {
        let world = try World("eo-enriched")
        let (fixture, db, topic) = (world.fixture, world.db, world.topic)
        let functions = FunctionDeclaration.yaml([FunctionDeclaration(name: "with-double", type: "enrichment", code: """
            SELECT id, txn * 2 AS double FROM eo WHERE id = ANY($1)
            """)])
        let sluice = try fixture.startSluice(config: world.config(sink: "    enrichment: with-double\n") + functions)
        for txn in 1...20 {
            try db.execute("INSERT INTO public.eo SELECT \(txn) * 10 + n, \(txn) FROM generate_series(1, \(txn % 4 + 1)) n")
        }
        let expected = (1...20).reduce(0) { $0 + $1 % 4 + 1 }
        let messages = try topic.waitForMessages(expected, timeout: 60)
        Thread.sleep(forTimeInterval: 1)
        let rows = Self.rows(try topic.messages())
        #expect(rows.count == expected && Set(rows.map(\.id)).count == expected, "log:\n\(sluice.log.suffix(3000))")
        #expect(rows.map(\.txn) == rows.map(\.txn).sorted(), "transactions in commit order, none interleaved")
        #expect(Self.partial(messages, sizes: Dictionary(uniqueKeysWithValues: (1...20).map { ($0, $0 % 4 + 1) })).isEmpty)
        let enrichment = messages.first?.metadata["enrichment"] as? [String: Any]
        #expect(enrichment?["double"] as? Int == 2, "\(messages.first?.payload ?? "")")
        #expect(sluice.stop() == 0)
    }

    @Test func aRestartSkipsWhatTheDatabaseSendsAgainFromAnOlderSlotPosition() throws {
        let world = try World("eo-restart")
        let (fixture, db, topic) = (world.fixture, world.db, world.topic)
        var sluice = try fixture.startSluice(config: world.config())
        // A copy of the slot from before the transaction: put back later, it makes the database send it again,
        // as after a crash between Kafka's commit and the slot's confirmation.
        let backup = fixture.slot + "_old"
        try db.execute("SELECT pg_copy_logical_replication_slot($1, $2)", [fixture.slot, backup])
        try db.execute("INSERT INTO public.eo SELECT n, 1 FROM generate_series(1, 5) n")
        let end = try db.currentWAL()
        _ = try topic.waitForMessages(5, timeout: 60)
        #expect(try eventually(timeout: 30) { (try db.confirmedFlush(slot: fixture.slot) ?? .zero) >= end }, "the slot moved past it")
        #expect(sluice.stop() == 0)
        try db.execute("SELECT pg_drop_replication_slot($1)", [fixture.slot])
        try db.execute("SELECT pg_copy_logical_replication_slot($1, $2)", [backup, fixture.slot])
        try db.execute("SELECT pg_drop_replication_slot($1)", [backup])
        let rewound = try #require(try db.confirmedFlush(slot: fixture.slot))
        #expect(rewound < end, "the fault: the slot is back before the delivered transaction (\(rewound) < \(end))")

        sluice = try sluice.restart(fixture.environment)
        #expect(sluice.waitUntilStreaming())
        try db.execute("INSERT INTO public.eo SELECT n, 2 FROM generate_series(6, 8) n")
        _ = try topic.waitForMessages(8, timeout: 60)
        Thread.sleep(forTimeInterval: 2)
        #expect(Self.rows(try topic.messages()).map(\.id) == Array(1...8), "once each:\n\(sluice.log.suffix(3000))")
        let skipped = sluice.log.split(separator: "\n").first { $0.contains("changes sent again by the database were skipped") }
        #expect(skipped?.contains("skipped=5") == true, "\(skipped ?? "no line")")
        #expect(sluice.stop() == 0)
    }

    @Test func killsAndAFrozenBrokerNeitherLoseNorRepeatNorSplitATransaction() throws {
        let environment = try TestEnvironment.current()
        let broker = try OwnBroker()
        let world = try World("eo-soak", hosts: broker.hosts)
        let (fixture, db, topic) = (world.fixture, world.db, world.topic)
        var sluice = try fixture.startSluice(config: world.config(hosts: broker.hosts))

        // A writer commits transactions of 1 to 6 new rows plus an update of one hot row (id 1, whose txn column
        // counts up: its updates must arrive once each, in order); their sizes are known before they commit.
        try db.execute("INSERT INTO public.eo VALUES (1, 0)")
        let sizes = Mutex<[Int: Int]>([0: 1])
        let stop = Atomic<Bool>(false)
        let writerDone = DispatchSemaphore(value: 0)
        let url = db.url
        let writer = Thread {
            defer { writerDone.signal() }
            guard let connection = try? PostgresSourceConnection(url: url) else { return }
            var txn = 0
            while !stop.load(ordering: .relaxed) {
                txn += 1
                let size = txn % 6 + 1
                sizes.withLock { $0[txn] = size + 1 }
                _ = try? connection.execute("""
                    WITH hot AS (UPDATE public.eo SET txn = \(txn) WHERE id = 1 RETURNING id)
                    INSERT INTO public.eo SELECT \(txn) * 10 + n, \(txn) FROM generate_series(1, \(size)) n
                    """)
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
        writer.start()

        // A reader of the one partition checks, again and again, that no transaction is ever seen in part.
        let partialSeen = Mutex<[Int]>([])
        let reads = Atomic<Int>(0)
        let readerDone = DispatchSemaphore(value: 0)
        let reader = Thread {
            defer { readerDone.signal() }
            while !stop.load(ordering: .relaxed) {
                guard let messages = try? topic.messages() else { continue }
                let known = sizes.withLock { $0 }
                let partial = Self.partial(messages, sizes: known)
                if !partial.isEmpty { partialSeen.withLock { $0 += partial } }
                reads.add(1, ordering: .relaxed)
            }
        }
        reader.start()

        var kills = 0
        for round in 1...20 {
            Thread.sleep(forTimeInterval: Double.random(in: 0.2...1.5))
            if round == 10 {
                // The broker stops answering for a while: transactions fail and run again.
                broker.freeze()
                let answered = (try? runCommand("/usr/bin/timeout", ["3", "/usr/bin/kcat", "-L", "-b", broker.hosts, "-m", "2"]))?.status == 0
                #expect(!answered, "the frozen broker still answered")
                Thread.sleep(forTimeInterval: 4)
                broker.thaw()
            }
            sluice.kill(signal: SIGKILL)
            sluice.process.waitUntilExit()
            if sluice.process.terminationReason == .uncaughtSignal && sluice.process.terminationStatus == SIGKILL { kills += 1 }
            sluice = try sluice.restart(environment)
            #expect(sluice.waitUntilStreaming(timeout: 60), "round \(round):\n\(sluice.log.suffix(3000))")
        }
        stop.store(true, ordering: .relaxed)
        writerDone.wait()
        readerDone.wait()
        #expect(kills == 20, "every kill killed a running sluice")

        let expected = sizes.withLock { $0 }.reduce(0) { $0 + $1.value }
        _ = try? topic.waitForMessages(expected, timeout: 120)
        Thread.sleep(forTimeInterval: 2)
        let messages = try topic.messages()
        let rows = Self.rows(messages)
        let keys = messages.compactMap { $0.metadata["idempotency_key"] as? String }
        #expect(rows.count == expected, "every committed row once: \(rows.count) of \(expected)")
        #expect(Set(keys).count == keys.count, "\(keys.count - Set(keys).count) duplicates")
        let hot = rows.filter { $0.id == 1 }.map(\.txn)
        #expect(hot == Array(0...(sizes.withLock { $0.keys.max() } ?? 0)), "the hot row's changes once each, in commit order")
        #expect(Self.partial(messages, sizes: sizes.withLock { $0 }).isEmpty)
        #expect(partialSeen.withLock { $0 }.isEmpty, "a reader saw part of a transaction: \(partialSeen.withLock { $0 }.prefix(10))")
        #expect(reads.load(ordering: .relaxed) > 10, "the reader read often")
        print("exactly once: \(expected) rows in \(sizes.withLock { $0.count }) transactions, \(kills) SIGKILLs and a 4 s freeze, "
              + "\(reads.load(ordering: .relaxed)) reads of the topic during the run; duplicates: \(keys.count - Set(keys).count)")
        #expect(sluice.stop() == 0)
    }

    @Test func aBackfillKilledBetweenAPagesCommitAndItsCursorSaveSendsNoRowTwice() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let total = 30_000
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, note text NOT NULL)")
        try db.execute("INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, \(total)) g")
        let topic = fixture.topic("eo-backfill")
        let offsets = KafkaTopic(hosts: fixture.environment.kafkaHosts, name: TestEnvironment.uniqueName("offsets"))
        // max_ack_pending 2000: pages of 1,000 rows, so a kill lands between many pages.
        let extra = Self.exactlyOnce(offsetsTopic: offsets.name, transactionalID: TestEnvironment.uniqueName("txid"),
                                     destination: "      max_ack_pending: 2000\n")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic, tables: ["public.t"], extra: extra)])
        var (sluice, api) = try fixture.startSluiceWithBackfillAPI(config: config)
        let id = try #require(try api.startOne(sink: "s", table: "public.t").string("id"))

        // The fault: sluice dies after a page's Kafka commit and before the state file saved the page's cursor.
        // Made exact instead of waited for (that window lasts milliseconds): sluice is frozen where the state
        // file and offsets_topic agree on the cursor, the state file is put back one page — as the crash would
        // have left it — and sluice is killed.
        _ = try api.wait(for: id, timeout: 60, every: 0.02) { ($0.int("rows_processed_count") ?? 0) >= 5_000 }
        var caught: (committed: [String], saved: [String])?
        for _ in 1...40 where caught == nil {
            Thread.sleep(forTimeInterval: Double.random(in: 0.01...0.1))
            sluice.kill(signal: SIGSTOP)
            let ledger = try SQLiteStateStore(path: fixture.statePath)
            let record = try offsets.messages().last { $0.key == "\(fixture.slot)/s" }
            let committed = (record?.json["backfills"] as? [String: [String]])?[id]
            if var saved = try ledger.backfills().first(where: { $0.id == id }), saved.state == .active,
               let committed, saved.cursor == committed, let last = committed.first.flatMap({ Int($0) }), last > 1_000 {
                saved.cursor = [String(last - 1_000)]
                saved.rowsProcessedCount -= 1_000
                if (try? ledger.save(saved)) != nil {
                    caught = (committed, saved.cursor ?? [])
                    sluice.kill(signal: SIGKILL)
                }
            }
            sluice.kill(signal: SIGCONT)
        }
        let found = try #require(caught, "sluice was never frozen with the state file and offsets_topic agreeing")
        sluice.process.waitUntilExit()
        #expect(sluice.process.terminationReason == .uncaughtSignal)
        sluice = try sluice.restart(fixture.environment)
        #expect(sluice.waitUntilStreaming(), "log:\n\(sluice.log)")
        try api.waitUntilServing(sluice)
        #expect(sluice.log.contains("backfill resumes from the cursor committed in Kafka"))
        let done = try api.waitUntilEnded(id, timeout: 120)
        #expect(done.string("state") == "completed", "\(done)")
        #expect(try fixture.waitUntilSlotPassesCurrentWAL(), "everything was delivered")
        Thread.sleep(forTimeInterval: 1)
        var seen: [Int: Int] = [:]
        for message in try topic.messages() where message.action == "read" {
            if let row = message.record["id"] as? Int { seen[row, default: 0] += 1 }
        }
        let twice = seen.filter { $0.value > 1 }.count
        print("exactly-once backfill: \(total) rows; killed with cursor \(found.committed) committed in Kafka and "
              + "\(found.saved) in the state file; \(seen.count) distinct rows arrived, \(twice) of them more than once")
        #expect(seen.count == total, "\(total - seen.count) rows missing")
        #expect(twice == 0, "\(twice) rows arrived more than once")
        #expect(sluice.stop() == 0)
    }

    @Test func aParkedMessageRetriedAndKilledBeforeTheLedgerLetItGoIsDeliveredOnce() throws {
        let world = try World("eo-parked")
        let (fixture, db, topic, offsets) = (world.fixture, world.db, world.topic, world.offsets)
        func config(_ body: String) -> String {
            world.config(sink: "    transform: pick\n")
                + FunctionDeclaration.yaml([FunctionDeclaration(name: "pick", type: "transform", code: """
                    function transform(action, record, changes, metadata)
                    \(body)
                      return { id = record.id, txn = record.txn, idempotency_key = metadata.idempotency_key }
                    end
                    """)])
        }
        var sluice = try fixture.startSluice(config: config("  if record.id == 2 then error(\"row 2 is not welcome\") end"))
        for id in 1...3 { try db.execute("INSERT INTO public.eo VALUES ($1, $1)", [String(id)]) }
        _ = try topic.waitForMessages(2, timeout: 60)
        let ledger = try SQLiteStateStore(path: fixture.statePath)
        #expect(try eventually(timeout: 20) { try ledger.parkedCount(sink: "s") == 1 })
        let parked = try #require(try ledger.parked(sink: "s").first)
        #expect(sluice.stop() == 0)

        // The fixed function: the parked row is retried and committed in a Kafka transaction of its own.
        sluice = try fixture.startSluice(config: config(""))
        _ = try topic.waitForMessages(3, timeout: 60)
        #expect(try eventually(timeout: 20) { try ledger.parkedCount(sink: "s") == 0 })
        let record = try offsets.messages().last { $0.key == "\(fixture.slot)/s" }
        #expect(record?.json["retried"] as? [String] == ["\(parked.position.commitLSN):\(parked.position.commitIndex)"],
                "the commit names the retried message: \(record?.payload ?? "none")")

        // The fault: killed after that commit and before the ledger let the message go — the state file
        // is put back as the crash would have left it, with sluice frozen, then sluice is killed.
        sluice.kill(signal: SIGSTOP)
        try ledger.park([parked])
        #expect(try ledger.parkedCount(sink: "s") == 1)
        sluice.kill(signal: SIGKILL)
        sluice.kill(signal: SIGCONT)
        sluice.process.waitUntilExit()

        sluice = try sluice.restart(fixture.environment)
        #expect(sluice.waitUntilStreaming(), "log:\n\(sluice.log)")
        #expect(sluice.log.contains("parked messages already committed in Kafka removed from the ledger"))
        try db.execute("INSERT INTO public.eo VALUES (4, 4)")
        _ = try topic.waitForMessages(4, timeout: 60)
        Thread.sleep(forTimeInterval: 2)
        let ids = try topic.messages().compactMap { $0.json["id"] as? Int }
        #expect(ids.sorted() == [1, 2, 3, 4], "row 2 once: \(ids)")
        #expect(try ledger.parkedCount(sink: "s") == 0)
        #expect(sluice.stop() == 0)
    }

    @Test func aTooLargeMessageLeavesItsTransactionAndTheRestCommits() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.eo (id int PRIMARY KEY, txn int NOT NULL, body text)")
        let topic = try Self.onePartitionTopic(hosts: fixture.environment.kafkaHosts, prefix: "eo-large")
        // The sink lets 5 MB through; the broker takes about 1 MB: it is the broker that refuses.
        let extra = Self.exactlyOnce(offsetsTopic: TestEnvironment.uniqueName("offsets"), transactionalID: TestEnvironment.uniqueName("txid"),
                                     destination: "      max_message_bytes: 5000000\n")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.eo"], sinks: [.init(name: "s", topic: topic, extra: extra)]))
        try db.execute("""
            INSERT INTO public.eo VALUES (1, 1, 'small'), (2, 1, repeat(md5(random()::text), 65536)), (3, 1, 'small too')
            """)
        try db.execute("INSERT INTO public.eo VALUES (4, 2, 'next')")
        let messages = try topic.waitForMessages(3, timeout: 60)
        #expect(Self.rows(messages).map(\.id) == [1, 3, 4], "log:\n\(sluice.log.suffix(3000))")
        let cancelled = try SQLiteStateStore(path: fixture.statePath).cancelled(sink: "s")
        #expect(cancelled.map(\.key) == ["2"] && cancelled.first?.reason == "too_large")
        #expect(sluice.log.contains("Kafka transaction aborted; running it again"), "the broker refused it inside the transaction")
        #expect(sluice.stop() == 0)
    }

    @Test func aSecondProducerWithTheTransactionalIDFencesSluice() throws {
        let world = try World("eo-fence")
        let (fixture, db, topic, transactionalID) = (world.fixture, world.db, world.topic, world.transactionalID)
        let sluice = try fixture.startSluice(config: world.config())
        try db.execute("INSERT INTO public.eo VALUES (1, 1)")
        _ = try topic.waitForMessages(1, timeout: 60)

        // Another instance takes the transactional id.
        let other = try KafkaProducer(properties: [("bootstrap.servers", fixture.environment.kafkaHosts), ("transactional.id", transactionalID)],
                                      logger: Logger(label: "other")) { _ in }
        try other.initTransactions(timeout: 30)
        try db.execute("INSERT INTO public.eo VALUES (2, 2)")
        let afterRow2 = try db.currentWAL()
        #expect(eventually(timeout: 60) { sluice.log.contains("another producer took this sink's transactional_id") },
                "log:\n\(sluice.log.suffix(3000))")
        Thread.sleep(forTimeInterval: 2)
        #expect(Self.rows(try topic.messages()).map(\.id) == [1], "a fenced sluice commits nothing more")
        let confirmed = try db.confirmedFlush(slot: fixture.slot) ?? .zero
        #expect(confirmed < afterRow2, "the slot holds row 2 back: confirmed \(confirmed), row 2 before \(afterRow2)")
        let status = try #require(sluice.log.split(separator: "\n").last { $0.contains("another producer took") })
        #expect(status.contains(transactionalID))
        sluice.kill(signal: SIGKILL)
    }
}
