import Foundation
import KafkaMock
import KafkaSink
import Testing

/// Backfills as a user meets them: every row once as a `read` message whatever its key type,
/// partial backfills in their column's order, cancelling, refusals that name the field, the same
/// JSON as an insert's, and `sluice backfill start` following one to its end.
@Suite(.serialized)
struct BackfillTests {
    /// Reads of one backfill, keyed by their `record_pks`.
    static func reads(_ messages: [ConsumedMessage], table: String) -> [ConsumedMessage] {
        messages.filter { $0.action == "read" && "\($0.metadata["table_schema"] ?? "").\($0.metadata["table_name"] ?? "")" == table }
    }

    @Test func everyRowOfEveryKeyTypeArrivesOnceAsReadWithItsKeyAndRecordPKs() throws {
        let fixture = try Fixture()
        let db = fixture.database
        for sql in BackfillTables.keyKinds { try db.execute(sql) }
        let tables = ["public.by_pair", "public.by_text", "public.by_uuid", "public.by_mood"]
        let topic = fixture.topic("keys")
        // Sequin's list syntax: one entry per table.
        let initial = "    initial_backfill:\n" + tables.map { "      - table: \($0)\n" }.joined()
        let config = fixture.config(tables: tables, sinks: [.init(name: "s", topic: topic, extra: initial)])
        let (sluice, api) = try fixture.startSluiceWithBackfillAPI(config: config)

        var backfills: [[String: Any]] = []
        _ = try eventually(timeout: 60, every: 0.5) {
            backfills = try api.list()
            return backfills.count == tables.count && backfills.allSatisfy { $0.string("state") != "active" }
        }
        #expect(Set(backfills.compactMap { $0.string("table") }) == Set(tables), "one initial backfill per listed table: \(backfills)")
        let expectedCount = 1500 + 1500 + 1500 + 5
        let messages = try topic.waitForMessages(expectedCount, timeout: 60)
        #expect(messages.count == expectedCount, "log:\n\(sluice.log.suffix(3000))")

        for table in tables {
            let backfill = try #require(backfills.first { $0.string("table") == table })
            let id = try #require(backfill.string("id"))
            let columns = BackfillTables.keyColumns[table]!
            let select = "SELECT \(columns.map { "\($0)::text" }.joined(separator: ", ")) FROM \(table)"
            let expected = try db.execute(select).rows.map { $0.map { $0 ?? "" } }
            #expect(backfill.string("state") == "completed", "\(backfill)")
            #expect(backfill.int("rows_processed_count") == expected.count, "\(table): \(backfill)")
            #expect(backfill.int("rows_ingested_count") == expected.count, "\(table): \(backfill)")

            let reads = Self.reads(messages, table: table)
            let pks = reads.map { $0.metadata["record_pks"] as? [String] ?? [] }
            #expect(reads.count == expected.count, "\(table): one read per row")
            #expect(Set(pks) == Set(expected), "\(table): record_pks are the primary-key values as text")
            #expect(Set(pks).count == pks.count, "\(table): no row twice")
            for (message, pk) in zip(reads, pks) {
                #expect(message.key == pk.joined(separator: ":"), "\(table): the Kafka key is the pk text: \(message.payload)")
                #expect(backfillDecodedKey(message.metadata) == "\(id):\(pk.joined(separator: ":"))")
                #expect(message.json["changes"] is NSNull, "a read has changes: null")
                for (column, value) in zip(columns, pk) where column != "a" {
                    #expect(message.record[column] as? String == value, "\(table).\(column) in the record")
                }
            }
        }
        let pairs = Self.reads(messages, table: "public.by_pair")
        #expect(pairs.contains { ($0.metadata["record_pks"] as? [String]) == ["7", "k07 ü:x"] }, "a key part holding ':' stays one part")
        #expect(sluice.stop() == 0)
    }

    @Test func aPartialBackfillSendsExactlyTheRowsFromItsStartPositionInColumnOrder() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("partial"))
        try cluster.createTopic(topic.name, partitions: 1)
        try db.execute("CREATE TABLE public.events (id int PRIMARY KEY, ts timestamptz, v text NOT NULL)")
        // 500 minutes around the start; odd ids share their minute with others (ties across page
        // boundaries), even ids add microseconds; a few rows have no ts at all.
        try db.execute("""
            INSERT INTO public.events SELECT g, timestamptz '2025-12-31 20:00:00+00' + (g * 7919 % 500) * interval '1 minute'
              + CASE WHEN g % 2 = 0 THEN (g % 997) * interval '1 microsecond' ELSE interval '0' END, 'e' || g
            FROM generate_series(1, 3000) g
            """)
        try db.execute("INSERT INTO public.events SELECT g, NULL, 'no ts' FROM generate_series(3001, 3010) g")
        let start = "2026-01-01T00:00:00Z"
        let expected = try db.execute("SELECT id FROM public.events WHERE ts >= $1 ORDER BY ts, id", [start]).rows.map { Int($0[0]!)! }
        let config = fixture.config(tables: ["public.events"], sinks: [.init(name: "s", topic: topic)], hosts: cluster.bootstrapServers)
        let (sluice, api) = try fixture.startSluiceWithBackfillAPI(config: config)

        let started = try api.startOne(sink: "s", table: "public.events", sortColumn: "ts", startPosition: start)
        #expect(started.string("sort_column") == "ts")
        #expect(started.string("start_position") == start)
        #expect(started.int("rows_initial_count") == expected.count, "the estimate counts the rows from start_position on")
        let id = try #require(started.string("id"))
        let done = try api.waitUntilEnded(id, timeout: 60)
        #expect(done.string("state") == "completed", "\(done); log:\n\(sluice.log.suffix(3000))")
        #expect(done.int("rows_processed_count") == expected.count)

        let messages = try topic.waitForMessages(expected.count, timeout: 30)
        let sent = messages.filter { $0.action == "read" }.map { $0.record["id"] as? Int ?? -1 }
        #expect(sent.count == expected.count, "exactly the rows with ts >= start_position (\(expected.count) of 3,010)")
        #expect(sent == expected, "in (ts, id) order; first difference at \(zip(sent, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1)")
        #expect(sluice.stop() == 0)
    }

    @Test func cancellingARunningBackfillStopsItAfterItsCurrentPage() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("cancel"))
        // librdkafka's mock cluster keeps 5 MB per partition and drops older messages: 32 partitions hold what is sent.
        try cluster.createTopic(topic.name, partitions: 32)
        let total = 300_000
        try db.execute("CREATE TABLE public.big (id int PRIMARY KEY, v text NOT NULL)")
        try db.execute("INSERT INTO public.big SELECT g, repeat('v', 100) FROM generate_series(1, \(total)) g")
        // initial_backfill: true, and small pages (each query kept under 10 ms): it runs for a while.
        let config = fixture.config(tables: ["public.big"], sinks: [
            .init(name: "s", topic: topic, extra: "    initial_backfill: true\n    backfill: { max_query_ms: 10 }\n"),
        ], hosts: cluster.bootstrapServers)
        let (sluice, api) = try fixture.startSluiceWithBackfillAPI(config: config)

        var id = ""
        _ = try eventually(timeout: 20) {
            id = try api.list().first?.string("id") ?? ""
            return !id.isEmpty
        }
        try #require(!id.isEmpty, "the initial backfill started; log:\n\(sluice.log)")
        let running = try api.wait(for: id, timeout: 30) { ($0.int("rows_processed_count") ?? 0) > 0 }
        try #require(running.string("state") == "active", "still running when cancelled: \(running)")
        let cancel = try api.send("DELETE", "/api/backfills/\(id)")
        #expect(cancel.status == 202, "\(cancel)")
        #expect(cancel.json?["id"] as? String == id)

        let ended = try api.waitUntilEnded(id, timeout: 30)
        #expect(ended.string("state") == "cancelled", "\(ended)")
        #expect(ended.string("canceled_at") != nil, "canceled_at is set: \(ended)")
        #expect(ended.isNull("completed_at"), "\(ended)")
        let processed = ended.int("rows_processed_count") ?? -1
        #expect(processed > 0 && processed < total, "stopped part-way: \(processed) of \(total)")
        #expect(ended.int("rows_initial_count") == total)

        // Nothing more is read after the cancel; what was sent stays sent and matches the count.
        Thread.sleep(forTimeInterval: 2)
        #expect(try api.backfill(id).int("rows_processed_count") == processed, "no page after the cancel")
        #expect(try fixture.waitUntilSlotPassesCurrentWAL())
        var reads = 0
        try BackfillTopicReader(hosts: cluster.bootstrapServers, name: topic.name).forEach { message in
            if message.payload.contains("\"action\":\"read\"") { reads += 1 }
        }
        #expect(reads == ended.int("rows_ingested_count"), "the topic has the reads the backfill reports as sent")

        let again = try api.send("DELETE", "/api/backfills/\(id)")
        #expect(again.status == 409, "cancelling a cancelled backfill: \(again)")
        #expect(again.error.contains("cancelled"), "the answer says the backfill's state: \(again)")
        #expect(sluice.stop() == 0)
    }

    @Test func refusalsNameTheFieldThatIsWrong() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.events (id int PRIMARY KEY, ts timestamptz NOT NULL)")
        try db.execute("CREATE TABLE public.loose (a int, b text)")
        try db.execute("CREATE TABLE public.elsewhere (id int PRIMARY KEY)")
        let topic = fixture.topic("refusals")
        let config = fixture.config(tables: ["public.events", "public.loose", "public.elsewhere"],
                                    sinks: [.init(name: "s", topic: topic, tables: ["public.events", "public.loose"])])
        let (sluice, api) = try fixture.startSluiceWithBackfillAPI(config: config)

        let noKey = try api.start(sink: "s", tables: ["public.loose"])
        #expect(noKey.status == 400, "\(noKey)")
        #expect(noKey.error.hasPrefix("tables"), "\(noKey)")
        #expect(noKey.error.contains("primary key"), "\(noKey)")

        let badColumn = try api.start(sink: "s", tables: ["public.events"], sortColumn: "nope", startPosition: "2026-01-01")
        #expect(badColumn.status == 400, "\(badColumn)")
        #expect(badColumn.error.hasPrefix("sort_column"), "\(badColumn)")
        #expect(badColumn.error.contains("nope"), "\(badColumn)")

        let badStart = try api.start(sink: "s", tables: ["public.events"], sortColumn: "ts", startPosition: "not a time")
        #expect(badStart.status == 400, "\(badStart)")
        #expect(badStart.error.hasPrefix("start_position"), "\(badStart)")
        #expect(badStart.error.contains("not a time"), "\(badStart)")

        let startWithoutColumn = try api.start(sink: "s", tables: ["public.events"], startPosition: "2026-01-01")
        #expect(startWithoutColumn.status == 400 && startWithoutColumn.error.contains("sort_column"), "\(startWithoutColumn)")

        let notTheSinks = try api.start(sink: "s", tables: ["public.elsewhere"])
        #expect(notTheSinks.status == 400 && notTheSinks.error.hasPrefix("tables"), "\(notTheSinks)")
        let badName = try api.start(sink: "s", tables: ["public.events.extra"])
        #expect(badName.status == 400 && badName.error.hasPrefix("tables"), "\(badName)")

        let unknownSink = try api.start(sink: "nosuchsink", tables: ["public.events"])
        #expect(unknownSink.status == 404, "\(unknownSink)")
        #expect(unknownSink.error.contains("nosuchsink"), "\(unknownSink)")
        let unknownBackfill = try api.send("GET", "/api/backfills/00000000-0000-0000-0000-000000000000")
        #expect(unknownBackfill.status == 404, "\(unknownBackfill)")
        let cancelUnknown = try api.send("DELETE", "/api/backfills/00000000-0000-0000-0000-000000000000")
        #expect(cancelUnknown.status == 404, "\(cancelUnknown)")

        #expect(try api.list().isEmpty, "nothing was started by a refused request")
        #expect(sluice.stop() == 0)
    }

    @Test func aRowsJSONFromABackfillIsByteForByteItsJSONFromAnInsert() throws {
        let fixture = try Fixture()
        let db = fixture.database
        for sql in BackfillTables.manyTypes { try db.execute(sql) }
        let topic = fixture.topic("samejson")
        let config = fixture.config(tables: ["public.kinds"], sinks: [.init(name: "s", topic: topic)])
        let (sluice, api) = try fixture.startSluiceWithBackfillAPI(config: config)
        for sql in BackfillTables.manyTypeRows { try db.execute(sql) }
        let inserts = try topic.waitForMessages(BackfillTables.manyTypeRows.count, timeout: 30)
        try #require(inserts.count == BackfillTables.manyTypeRows.count, "the inserts streamed; log:\n\(sluice.log.suffix(3000))")

        let id = try #require(try api.startOne(sink: "s", table: "public.kinds").string("id"))
        let done = try api.waitUntilEnded(id, timeout: 30)
        #expect(done.string("state") == "completed", "\(done)")
        let messages = try topic.waitForMessages(2 * BackfillTables.manyTypeRows.count, timeout: 30)

        /// The `record` object's text exactly as sent: between `{"record":` and the `,"changes":` that follows it.
        func record(_ message: ConsumedMessage) -> String? {
            guard message.payload.hasPrefix("{\"record\":"),
                  let end = message.payload.range(of: ",\"changes\":", options: .backwards) else { return nil }
            return String(message.payload[message.payload.index(message.payload.startIndex, offsetBy: 10)..<end.lowerBound])
        }
        for row in 1...BackfillTables.manyTypeRows.count {
            let insert = messages.first { $0.action == "insert" && $0.record["id"] as? Int == row }
            let read = messages.first { $0.action == "read" && $0.record["id"] as? Int == row }
            let inserted = try #require(insert.flatMap(record), "row \(row) as an insert")
            let backfilled = try #require(read.flatMap(record), "row \(row) as a read")
            #expect(backfilled == inserted, "row \(row):\ninsert \(inserted)\nread   \(backfilled)")
            #expect(read?.key == insert?.key, "row \(row): the same Kafka key")
        }
        #expect(sluice.stop() == 0)
    }

    @Test func backfillStartFollowsProgressUntilTheBackfillCompletes() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL)")
        try db.execute("INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 5000) g")
        let topic = fixture.topic("cli")
        let config = fixture.config(tables: ["public.items"], sinks: [.init(name: "orders", topic: topic)])
        let (sluice, _) = try fixture.startSluiceWithBackfillAPI(config: config)
        let binary = fixture.environment.sluiceBinary
        let path = sluice.configURL.path

        let started = Date()
        let result = try runCommand("/usr/bin/timeout", ["120", binary, "backfill", "start", "--config", path,
                                                         "--sink", "orders", "--table", "public.items"])
        print("sluice backfill start (\(String(format: "%.1f", Date().timeIntervalSince(started)))s):\n\(result.stdout)\(result.stderr)")
        #expect(result.status == 0, "exit status; stderr: \(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let first = try #require(lines.first)
        #expect(first.hasPrefix("started backfill "), "\(first)")
        #expect(first.hasSuffix(" of public.items (about 5,000 rows)"), "\(first)")
        let last = try #require(lines.last)
        #expect(last.hasPrefix("public.items  [########################]  5,000 / 5,000 rows"), "\(last)")
        #expect(last.contains("completed — 5,000 sent in "), "\(last)")
        #expect(lines.dropFirst().allSatisfy { $0.hasPrefix("public.items  [") && $0.contains(" rows") }, "one progress line per change")

        let list = try runCommand(binary, ["backfill", "list", "--config", path])
        #expect(list.status == 0, "\(list.stderr)")
        let id = first.split(separator: " ")[2]
        #expect(list.stdout.split(separator: "\n").contains { $0.hasPrefix(id) && $0.contains("completed") && $0.contains("5,000/5,000") },
                "the list shows it completed:\n\(list.stdout)")

        let reads = Set(try topic.waitForMessages(5000, timeout: 30).filter { $0.action == "read" }.compactMap { $0.record["id"] as? Int })
        #expect(reads == Set(1...5000), "every item arrived as a read")
        #expect(sluice.stop() == 0)
    }
}
