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
}
