import Foundation
import SluiceCore
import Testing

/// What happens to a running stream: dropped connections, schema changes, TOAST, quiet periods.
@Suite(.serialized)
struct StreamLifeTests {
    @Test func reconnectsAfterTheServerDropsTheConnection() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
        let topic = fixture.topic()
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("INSERT INTO public.t VALUES (1)")
        _ = try topic.waitForMessages(1)

        let terminated = try db.execute(
            "SELECT pg_terminate_backend(active_pid) AS done FROM pg_replication_slots WHERE slot_name = $1", [fixture.slot])
        #expect(terminated.value("done") == "t")
        try db.execute("INSERT INTO public.t VALUES (2)")

        let messages = try topic.waitForMessages(2, timeout: 60)
        #expect(Set(messages.map(\.key)) == ["1", "2"], "log:\n\(sluice.log)")
        #expect(sluice.log.contains("replication interrupted; reconnecting"))
        #expect(sluice.process.isRunning)
        #expect(sluice.stop() == 0)
    }

    @Test func newColumnMidStreamAppearsInLaterMessages() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, a text)")
        let topic = fixture.topic()
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("INSERT INTO public.t VALUES (1, 'before')")
        try db.execute("ALTER TABLE public.t ADD COLUMN b int DEFAULT 5")
        try db.execute("INSERT INTO public.t VALUES (2, 'after', 6)")

        let messages = try topic.waitForMessages(2)
        try #require(messages.count == 2, "log:\n\(sluice.log)")
        #expect(NSDictionary(dictionary: messages[0].record) == NSDictionary(dictionary: ["id": 1, "a": "before"]))
        #expect(NSDictionary(dictionary: messages[1].record) == NSDictionary(dictionary: ["id": 2, "a": "after", "b": 6]))
        #expect(sluice.stop() == 0)
    }

    @Test func unchangedToastValueIsNotSentAsData() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.docs (id int PRIMARY KEY, title text, body text)")
        try db.execute("ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL") // stored out of line, uncompressed
        let topic = fixture.topic("docs")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.docs"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("INSERT INTO public.docs VALUES (1, 'first', repeat('0123456789', 1000))")
        try db.execute("UPDATE public.docs SET title = 'second' WHERE id = 1")

        let messages = try topic.waitForMessages(2)
        try #require(messages.count == 2, "log:\n\(sluice.log)")
        #expect((messages[0].record["body"] as? String)?.count == 10_000)
        let update = messages[1]
        #expect(update.record["title"] as? String == "second")
        #expect(update.record["body"] == nil, "an unchanged TOAST value is left out, not replaced by a placeholder")
        #expect(update.metadata["unchanged_toast_columns"] as? [String] == ["body"])
        #expect(sluice.stop() == 0)
    }

    @Test func quietSlotFollowsTheServer() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.watched (id int PRIMARY KEY)")
        try db.execute("CREATE TABLE public.other (id int PRIMARY KEY)")
        let topic = fixture.topic()
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.watched"], sinks: [.init(name: "s", topic: topic)]))
        // Writes only to a table nobody publishes: nothing is in flight, yet the slot must move.
        for id in 1...20 { try db.execute("INSERT INTO public.other VALUES ($1)", [String(id)]) }
        let written = try db.currentWAL()
        let advanced = try eventually(timeout: 30, every: 0.5) {
            (try db.confirmedFlush(slot: fixture.slot)).map { $0 >= written } ?? false
        }
        let confirmed = try db.confirmedFlush(slot: fixture.slot)
        #expect(advanced, "confirmed_flush_lsn stayed at \(String(describing: confirmed)), server at \(written)")
        #expect(sluice.stop() == 0)
    }

    @Test func truncateSendsOneMessagePerTableUnlessTurnedOff() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.a (id int PRIMARY KEY)")
        try db.execute("CREATE TABLE public.b (id int PRIMARY KEY)")
        let all = fixture.topic("all"), rows = fixture.topic("rows")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.a", "public.b"], sinks: [
            .init(name: "all", topic: all),
            .init(name: "rows", topic: rows, extra: "    actions: [insert, update, delete]\n"),
        ]))
        try db.execute("INSERT INTO public.a VALUES (1)")
        try db.execute("INSERT INTO public.b VALUES (1)")
        try db.execute("TRUNCATE public.a, public.b")
        try db.execute("INSERT INTO public.a VALUES (2)")

        let messages = try all.waitForMessages(5)
        #expect(messages.map(\.action) == ["insert", "insert", "truncate", "truncate", "insert"], "log:\n\(sluice.log)")
        let truncates = messages.filter { $0.action == "truncate" }
        #expect(Set(truncates.compactMap { $0.metadata["table_name"] as? String }) == ["a", "b"])
        #expect(truncates.allSatisfy { $0.record.isEmpty && $0.key == nil && ($0.metadata["record_pks"] as? [String]) == [] })
        #expect(try rows.waitForMessages(3).map(\.action) == ["insert", "insert", "insert"], "actions without truncate leave it out")
        #expect(sluice.stop() == 0)
    }

    @Test func partitionChangesArriveAsTheParentTable() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
        try db.execute("CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        try db.execute("CREATE TABLE public.events_2027 PARTITION OF public.events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
        let topic = fixture.topic("events")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.events"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("INSERT INTO public.events VALUES (1, '2026-05-01'), (2, '2027-05-01')")
        let messages = try topic.waitForMessages(2)
        #expect(messages.map { $0.metadata["table_name"] as? String } == ["events", "events"], "log:\n\(sluice.log)")
        #expect(messages.map(\.key) == ["1:2026-05-01", "2:2027-05-01"])
        #expect(sluice.stop() == 0)
    }

    @Test func schemaChangesWhileStreaming() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, a text, b int, c int)")
        try db.execute("CREATE TABLE public.later (id int PRIMARY KEY, v text)")
        let topic = fixture.topic()
        // A sink without a table list takes every published table, including one added later.
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("INSERT INTO public.t VALUES (1, 'one', 1, 1)")
        try db.execute("ALTER TABLE public.t DROP COLUMN c")
        try db.execute("INSERT INTO public.t VALUES (2, 'two', 2)")
        try db.execute("ALTER TABLE public.t RENAME COLUMN a TO name")
        try db.execute("INSERT INTO public.t VALUES (3, 'three', 3)")
        try db.execute("ALTER TABLE public.t ALTER COLUMN b TYPE numeric(10,2)")
        try db.execute("INSERT INTO public.t VALUES (4, 'four', 4.5)")
        try db.execute("ALTER PUBLICATION \(fixture.publication) ADD TABLE public.later")
        try db.execute("INSERT INTO public.later VALUES (1, 'new table')")

        let messages = try topic.waitForMessages(5)
        try #require(messages.count == 5, "log:\n\(sluice.log)")
        #expect(NSDictionary(dictionary: messages[0].record) == NSDictionary(dictionary: ["id": 1, "a": "one", "b": 1, "c": 1]))
        #expect(NSDictionary(dictionary: messages[1].record) == NSDictionary(dictionary: ["id": 2, "a": "two", "b": 2]))
        #expect(NSDictionary(dictionary: messages[2].record) == NSDictionary(dictionary: ["id": 3, "name": "three", "b": 3]))
        #expect(NSDictionary(dictionary: messages[3].record) == NSDictionary(dictionary: ["id": 4, "name": "four", "b": 4.5]))
        #expect(messages[3].payload.contains("\"b\":4.50"), "the new type's exact digits")
        #expect(messages[4].metadata["table_name"] as? String == "later")
        #expect(sluice.process.isRunning && !sluice.log.contains("replication interrupted"), "no restart needed")
        #expect(sluice.stop() == 0)
    }

    @Test func unchangedToastValueIsFilledFromTheOldRowUnderFullIdentity() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.docs (id int PRIMARY KEY, title text, body text)")
        try db.execute("ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL")
        try db.execute("ALTER TABLE public.docs REPLICA IDENTITY FULL")
        let topic = fixture.topic("docs")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.docs"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("INSERT INTO public.docs VALUES (1, 'first', repeat('0123456789', 1000))")
        try db.execute("UPDATE public.docs SET title = 'second' WHERE id = 1")

        let messages = try topic.waitForMessages(2)
        try #require(messages.count == 2, "log:\n\(sluice.log)")
        #expect((messages[1].record["body"] as? String)?.count == 10_000, "filled from the old row")
        #expect(messages[1].metadata["unchanged_toast_columns"] == nil)
        #expect(NSDictionary(dictionary: messages[1].json["changes"] as? [String: Any] ?? [:]) == NSDictionary(dictionary: ["title": "first"]))
        #expect(sluice.stop() == 0)
    }
}
