import Foundation
import SluiceCore
import Testing

/// Row changes written to a real PostgreSQL arrive in a real broker as Sequin-shaped JSON.
@Suite(.serialized)
struct StreamingTests {
    @Test func insertUpdateDeleteWithDefaultReplicaIdentity() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("""
            CREATE TABLE public.users (id bigint PRIMARY KEY, name text NOT NULL, score numeric(14,4), active boolean,
              joined timestamptz, tags text[], profile jsonb)
            """)
        let topic = fixture.topic("users")
        let sluice = try fixture.startSluice(config: fixture.config(
            tables: ["public.users"], sinks: [.init(name: "users-to-kafka", topic: topic)]))

        try db.execute("""
            INSERT INTO public.users VALUES (7, 'Ada', 12345678.1234, true, '2026-11-29 10:00:00.123456+00',
              '{a,"b c"}', '{"x": 1, "y": [true, null]}')
            """)
        try db.execute("UPDATE public.users SET name = 'Ad' WHERE id = 7")
        try db.execute("DELETE FROM public.users WHERE id = 7")

        let messages = try topic.waitForMessages(3)
        try #require(messages.count == 3, "log:\n\(sluice.log)")
        #expect(messages.map(\.action) == ["insert", "update", "delete"])
        #expect(messages.allSatisfy { $0.key == "7" })

        let insert = messages[0]
        #expect(NSDictionary(dictionary: insert.record) == NSDictionary(dictionary: [
            "id": 7, "name": "Ada", "score": 12345678.1234, "active": true,
            "joined": "2026-11-29T10:00:00.123456Z", "tags": ["a", "b c"], "profile": ["x": 1, "y": [true, NSNull()]],
        ]))
        #expect(insert.payload.contains("\"score\":12345678.1234"), "numeric keeps its exact digits")
        #expect(insert.json["changes"] is NSNull)
        try expectMetadata(insert, table: "users", database: db.name, sink: "users-to-kafka", pks: ["7"])

        let update = messages[1]
        #expect(update.record["name"] as? String == "Ad")
        // Without REPLICA IDENTITY FULL the server sends no old row: changes is empty, not invented.
        #expect(NSDictionary(dictionary: update.json["changes"] as? [String: Any] ?? ["missing": true]) == NSDictionary())

        let delete = messages[2]
        #expect(NSDictionary(dictionary: delete.record) == NSDictionary(dictionary: ["id": 7]))
        #expect(delete.json["changes"] is NSNull)
        #expect(sluice.stop() == 0)
    }

    @Test func updateWithFullReplicaIdentityCarriesOldValuesOfChangedColumns() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, status text, amount numeric(10,2), note text)")
        try db.execute("ALTER TABLE public.orders REPLICA IDENTITY FULL")
        let topic = fixture.topic("orders")
        let sluice = try fixture.startSluice(config: fixture.config(
            tables: ["public.orders"], sinks: [.init(name: "orders", topic: topic)]))

        try db.execute("INSERT INTO public.orders VALUES (1, 'new', 19.99, 'keep')")
        try db.execute("UPDATE public.orders SET status = 'paid', amount = 24.99 WHERE id = 1")
        try db.execute("DELETE FROM public.orders WHERE id = 1")

        let messages = try topic.waitForMessages(3)
        try #require(messages.count == 3, "log:\n\(sluice.log)")
        let update = messages[1]
        #expect(NSDictionary(dictionary: update.record) == NSDictionary(dictionary: [
            "id": 1, "status": "paid", "amount": 24.99, "note": "keep"]))
        #expect(NSDictionary(dictionary: update.json["changes"] as? [String: Any] ?? [:]) == NSDictionary(dictionary: [
            "status": "new", "amount": 19.99]))
        // With FULL identity a delete carries the whole old row.
        #expect(NSDictionary(dictionary: messages[2].record) == NSDictionary(dictionary: [
            "id": 1, "status": "paid", "amount": 24.99, "note": "keep"]))
        #expect(sluice.stop() == 0)
    }

    @Test func compositePrimaryKeyIsJoinedInColumnOrder() throws {
        let fixture = try Fixture()
        let db = fixture.database
        // Key declared (tenant, id) but columns are (id, tenant): the key follows column order.
        try db.execute("CREATE TABLE public.items (id int, tenant text, qty int, PRIMARY KEY (tenant, id))")
        let topic = fixture.topic("items")
        let sluice = try fixture.startSluice(config: fixture.config(
            tables: ["public.items"], sinks: [.init(name: "items", topic: topic)]))

        try db.execute("INSERT INTO public.items VALUES (42, 'acme', 1)")
        try db.execute("UPDATE public.items SET qty = 2 WHERE tenant = 'acme' AND id = 42")

        let messages = try topic.waitForMessages(2)
        try #require(messages.count == 2, "log:\n\(sluice.log)")
        #expect(messages.map(\.key) == ["42:acme", "42:acme"])
        #expect(messages[0].metadata["record_pks"] as? [String] == ["42", "acme"])
        #expect(sluice.stop() == 0)
    }

    @Test func tenThousandRowTransaction() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.bulk (id int PRIMARY KEY, payload text)")
        let topic = fixture.topic("bulk")
        let sluice = try fixture.startSluice(config: fixture.config(
            tables: ["public.bulk"], sinks: [.init(name: "bulk", topic: topic)]))

        try db.execute("INSERT INTO public.bulk SELECT g, repeat('x', 100) || g FROM generate_series(1, 10000) g")

        let messages = try topic.waitForMessages(10_000, timeout: 120)
        try #require(messages.count == 10_000, "log:\n\(sluice.log)")
        let lsns = Set(messages.compactMap { ($0.metadata["commit_lsn"] as? NSNumber)?.uint64Value })
        #expect(lsns.count == 1, "one transaction, one commit_lsn")
        #expect(messages.map { $0.metadata["commit_idx"] as? Int ?? -1 } == Array(0..<10_000))
        #expect(messages.map(\.key) == (1...10_000).map { String($0) })
        #expect(sluice.stop() == 0)
    }

    @Test func twoTablesToTwoTopics() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.a (id int PRIMARY KEY, v text)")
        try db.execute("CREATE TABLE public.b (id int PRIMARY KEY, v text)")
        let topicA = fixture.topic("a"), topicB = fixture.topic("b")
        let sluice = try fixture.startSluice(config: fixture.config(
            tables: ["public.a", "public.b"],
            sinks: [.init(name: "a-sink", topic: topicA, tables: ["public.a"]),
                    .init(name: "b-sink", topic: topicB, tables: ["public.b"])]))

        for statement in ["BEGIN", "INSERT INTO public.a VALUES (1, 'a1')", "INSERT INTO public.b VALUES (1, 'b1')",
                          "INSERT INTO public.a VALUES (2, 'a2')", "COMMIT"] {
            try db.execute(statement)
        }
        let a = try topicA.waitForMessages(2)
        let b = try topicB.waitForMessages(1)
        #expect(a.map { $0.record["v"] as? String } == ["a1", "a2"])
        #expect(b.map { $0.record["v"] as? String } == ["b1"])
        #expect(a.allSatisfy { $0.metadata["table_name"] as? String == "a" && ($0.metadata["consumer"] as? [String: Any])?["name"] as? String == "a-sink" })
        #expect(b.allSatisfy { $0.metadata["table_name"] as? String == "b" })
        // commit_idx counts the transaction's changes, across tables.
        #expect(a.map { $0.metadata["commit_idx"] as? Int } == [0, 2])
        #expect(b.map { $0.metadata["commit_idx"] as? Int } == [1])
        #expect(sluice.stop() == 0)
    }

    @Test func gracefulStopConfirmsEverythingDelivered() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
        let topic = fixture.topic()
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)]))

        var beforeCommit = LSN.zero
        for id in 1...50 {
            try db.execute("BEGIN")
            try db.execute("INSERT INTO public.t VALUES ($1)", [String(id)])
            beforeCommit = try db.currentWAL()
            try db.execute("COMMIT")
        }
        _ = try topic.waitForMessages(50)
        #expect(sluice.stop() == 0, "SIGTERM is a clean exit; log:\n\(sluice.log)")
        let confirmed = try #require(try db.confirmedFlush(slot: fixture.slot))
        #expect(confirmed > beforeCommit, "the final status update passed the last commit")
    }

    @Test func secondSluiceOnTheSameStateFileIsRefused() throws {
        let fixture = try Fixture()
        try fixture.database.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: fixture.topic())])
        let first = try fixture.startSluice(config: config)
        let second = try SluiceProcess(fixture.environment, config: config)
        #expect(eventually(timeout: 30) { !second.process.isRunning }, "the second one stops")
        second.process.waitUntilExit()
        #expect(second.process.terminationStatus == 1)
        #expect(second.log.contains("state.path: \(fixture.statePath) is in use by another running sluice"), "log:\n\(second.log)")
        #expect(first.process.isRunning)
        #expect(first.stop() == 0)
    }

    func expectMetadata(_ message: ConsumedMessage, table: String, database: String, sink: String, pks: [String]) throws {
        let metadata = message.metadata
        #expect(metadata["table_schema"] as? String == "public")
        #expect(metadata["table_name"] as? String == table)
        #expect(metadata["database_name"] as? String == database)
        #expect(metadata["record_pks"] as? [String] == pks)
        #expect(metadata["commit_idx"] as? Int == 0)
        #expect(metadata["transaction_annotations"] is NSNull)
        let lsn = try #require((metadata["commit_lsn"] as? NSNumber)?.uint64Value)
        #expect(lsn > 0)
        let key = try #require(metadata["idempotency_key"] as? String)
        #expect(Data(base64Encoded: key).map { String(decoding: $0, as: UTF8.self) } == "\(lsn):0")
        let timestamp = try #require(metadata["commit_timestamp"] as? String)
        #expect(timestamp.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z/) != nil, "got \(timestamp)")
        let consumer = try #require(metadata["consumer"] as? [String: Any])
        #expect(consumer["name"] as? String == sink)
        #expect((consumer["id"] as? String).flatMap(UUID.init(uuidString:)) != nil)
        #expect(NSDictionary(dictionary: consumer["annotations"] as? [String: Any] ?? ["missing": 1]) == NSDictionary())
    }
}
