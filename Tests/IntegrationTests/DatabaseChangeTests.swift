import Foundation
import SluiceCore
import Testing

/// The database changing under a running sluice: its slot dropped or invalidated, its publication
/// dropped, a table renamed, dropped or taken out of the publication. Each says in one line what
/// happened and what to do; where sluice cannot go on it exits non-zero, and it never confirms a
/// change it did not deliver.
@Suite(.serialized)
struct DatabaseChangeTests {
    @Test func aDroppedSlotStopsSluiceNamingTheSlotAndTheBackfillThatRecovers() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
        let topic = fixture.topic("slot")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("INSERT INTO public.t VALUES (1)")
        _ = try topic.waitForMessages(1, timeout: 30)

        // End the walsender and drop the slot before sluice reconnects (it waits 0.5 s).
        let dropped = try eventually(timeout: 30, every: 0.1) {
            try db.execute("SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_name = $1 AND active",
                           [fixture.slot])
            return (try? db.execute("SELECT pg_drop_replication_slot($1)", [fixture.slot])) != nil
        }
        try #require(dropped, "log:\n\(sluice.log)")
        #expect(try db.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [fixture.slot]).rows.isEmpty, "the slot is gone")

        #expect(sluice.waitForExit(timeout: 60) == 1, "sluice cannot go on without its slot; log:\n\(sluice.log)")
        let line = sluice.stopLine ?? ""
        #expect(line.contains("replication slot \"\(fixture.slot)\" does not exist"), "\(line)")
        #expect(line.contains("start sluice again to create a new slot") && line.contains("sluice backfill start --sink"), "\(line)")
        #expect(sluice.log.components(separatedBy: "replication interrupted; reconnecting").count < 5, "it stops instead of retrying forever")
    }

    @Test func aDroppedPublicationStopsSluiceAndItsChangesAreNotConfirmed() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
        let topic = fixture.topic("publication")
        let port = try freePort()
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)])
            + "console: { listen: \"127.0.0.1:\(port)\", token: \"t\" }\n"
        var sluice = try fixture.startSluice(config: config)
        try db.execute("INSERT INTO public.t VALUES (1)")
        _ = try topic.waitForMessages(1, timeout: 30)

        try db.execute("DROP PUBLICATION \(fixture.publication)")
        try db.execute("INSERT INTO public.t VALUES (2)")
        #expect(try db.execute("SELECT 1 FROM pg_publication WHERE pubname = $1", [fixture.publication]).rows.isEmpty, "the publication is gone")

        #expect(sluice.waitForExit(timeout: 60) == 1, "log:\n\(sluice.log)")
        let line = sluice.stopLine ?? ""
        #expect(line.contains("publication \"\(fixture.publication)\" was dropped"), "\(line)")
        #expect(line.contains("drop the slot (SELECT pg_drop_replication_slot('\(fixture.slot)'))") && line.contains("backfill"), "\(line)")
        #expect(try topic.messages().compactMap(\.key) == ["1"])

        // Started again as it is, sluice re-creates the publication but stops at the same change: the slot
        // never confirmed it (had it, the stream would now go on past it).
        sluice = try SluiceProcess(fixture.environment, config: config)
        #expect(sluice.waitForExit(timeout: 60) == 1, "log:\n\(sluice.log)")
        #expect(sluice.stopLine?.contains("publication \"\(fixture.publication)\" was dropped") == true, "\(sluice.log)")

        // What the line says to do: drop the slot, start again, backfill.
        try db.execute("SELECT pg_drop_replication_slot($1)", [fixture.slot])
        sluice = try fixture.startSluice(config: config)
        let api = BackfillAPI(port: port, token: "t")
        try api.waitUntilServing(sluice)
        let id = try #require(try api.startOne(sink: "s", table: "public.t").string("id"))
        #expect(try api.waitUntilEnded(id, timeout: 60).string("state") == "completed")
        let recovered = try topic.waitForMessages(3, timeout: 30)
        #expect(recovered.filter { $0.action == "read" }.compactMap(\.key).sorted() == ["1", "2"], "\(recovered.map(\.payload))")
        #expect(sluice.stop() == 0)
    }

    @Test func aRenamedTableStopsSluiceBeforeItsChangesAreDroppedAndTheyArriveUnderTheNewName() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.a (id int PRIMARY KEY)")
        let topic = fixture.topic("renamed")
        let config = fixture.config(tables: ["public.a"], sinks: [.init(name: "s", topic: topic, tables: ["public.a"])])
        var sluice = try fixture.startSluice(config: config)
        try db.execute("INSERT INTO public.a VALUES (1)")
        _ = try topic.waitForMessages(1, timeout: 30)

        try db.execute("ALTER TABLE public.a RENAME TO a2")
        try db.execute("INSERT INTO public.a2 VALUES (2)")
        #expect(sluice.waitForExit(timeout: 60) == 1, "log:\n\(sluice.log)")
        let line = sluice.stopLine ?? ""
        #expect(line.contains("table public.a was renamed to public.a2, and sink \"s\" reads it as public.a"), "\(line)")
        #expect(line.contains("put public.a2 in sinks[0].tables"), "\(line)")
        #expect(try topic.messages().compactMap(\.key) == ["1"], "the change under the new name was not sent")

        // With the new name in the configuration, the change arrives: the slot had not passed it.
        sluice = try fixture.startSluice(config: config.replacingOccurrences(of: "public.a]", with: "public.a2]"))
        let messages = try topic.waitForMessages(2, timeout: 30)
        #expect(messages.last?.key == "2" && messages.last?.metadata["table_name"] as? String == "a2", "\(messages.map(\.payload))")
        #expect(sluice.stop() == 0)
    }

    @Test func aTableTakenOutOfThePublicationIsAddedBackAndTheLossIsNamed() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.a (id int PRIMARY KEY)")
        try db.execute("CREATE TABLE public.b (id int PRIMARY KEY)")
        let topic = fixture.topic("unpublished")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.a", "public.b"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("INSERT INTO public.b VALUES (1)")
        _ = try topic.waitForMessages(1, timeout: 30)

        // Out of the publication, with a change in the same transaction: PostgreSQL never publishes it.
        try db.execute("BEGIN")
        try db.execute("ALTER PUBLICATION \(fixture.publication) DROP TABLE public.b")
        try db.execute("INSERT INTO public.b VALUES (2)")
        try db.execute("COMMIT")

        let problem = "table public.b (database.publication.tables) was removed from publication \"\(fixture.publication)\" — sluice added it back"
        #expect(eventually(timeout: 30) { sluice.log.contains(problem) }, "log:\n\(sluice.log)")
        #expect(sluice.log.contains("backfill public.b (sluice backfill start --sink NAME --table public.b)"))
        #expect(try !db.execute("SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND tablename = 'b'", [fixture.publication]).rows.isEmpty)

        try db.execute("INSERT INTO public.b VALUES (3)")
        try db.execute("INSERT INTO public.a VALUES (4)")
        _ = try topic.waitForMessages(3, timeout: 30)
        Thread.sleep(forTimeInterval: 1)
        #expect(try topic.messages().compactMap(\.key) == ["1", "3", "4"], "the change made while unpublished is the one the line names as lost")
        #expect(sluice.process.isRunning)
        #expect(sluice.stop() == 0)
    }

    @Test func aDroppedTableIsNamedInTheLogAndReadyzWhileTheOtherTablesFlow() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.a (id int PRIMARY KEY)")
        try db.execute("CREATE TABLE public.b (id int PRIMARY KEY)")
        let topic = fixture.topic("dropped")
        let (sluice, console) = try fixture.startSluiceWithConsole(
            config: fixture.config(tables: ["public.a", "public.b"], sinks: [.init(name: "s", topic: topic, tables: ["public.a", "public.b"])]),
            token: "t")
        try db.execute("INSERT INTO public.b VALUES (1)")
        _ = try topic.waitForMessages(1, timeout: 30)

        try db.execute("DROP TABLE public.b")
        #expect(try db.execute("SELECT to_regclass('public.b') IS NULL AS gone").value("gone") == "t")
        let problem = "table public.b (database.publication.tables) does not exist (dropped or renamed?) — sluice sends nothing for it"
        #expect(eventually(timeout: 30) { sluice.log.contains(problem) }, "log:\n\(sluice.log)")
        var ready = try console.get("/readyz", auth: .none)
        #expect(try eventually(timeout: 15) {
            ready = try console.get("/readyz", auth: .none)
            return ready.status == 503
        })
        #expect(ready.body.contains(problem) && ready.body.contains("take it out of database.publication.tables, or put its new name there"), "\(ready)")

        try db.execute("INSERT INTO public.a VALUES (2)")
        #expect(try topic.waitForMessages(2, timeout: 30).last?.key == "2")
        #expect(sluice.process.isRunning)
        #expect(sluice.stop() == 0)
    }

    /// PostgreSQL removes WAL a slot still needs once it passes `max_slot_wal_keep_size` (set low on a
    /// cluster of the test's own), while sluice cannot confirm (its broker frozen).
    @Test func anInvalidatedSlotStopsSluiceSayingWhatWasLostAndTheBackfillRecoversIt() throws {
        let environment = try TestEnvironment.current()
        let postgres = try OwnPostgres()
        let broker = try OwnBroker()
        let admin = try PostgresSourceConnection(url: postgres.url)
        try admin.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        try admin.execute("SELECT pg_reload_conf()")
        try admin.execute("CREATE TABLE public.t (id int PRIMARY KEY, note text)")
        try admin.execute("CREATE TABLE public.filler (id int)")
        let slot = TestEnvironment.uniqueName("slot")
        let topic = KafkaTopic(hosts: broker.hosts, name: TestEnvironment.uniqueName("lost"))
        let state = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("state")).path
        let port = try freePort()
        let config = """
            database:
              url: \(postgres.url)
              slot: { name: \(slot), create_if_not_exists: true }
              publication: { name: pub, create_if_not_exists: true, tables: [public.t] }
              heartbeat_interval: 1s
            state: { path: \(state)/state.sqlite }
            sinks:
              - name: s
                destination: { type: kafka, hosts: "\(broker.hosts)", topic: \(topic.name) }
            console: { listen: "127.0.0.1:\(port)", token: "t" }
            """
        var sluice = try SluiceProcess(environment, config: config)
        try #require(sluice.waitUntilStreaming(), "log:\n\(sluice.log)")
        try admin.execute("INSERT INTO public.t VALUES (1, 'delivered')")
        _ = try topic.waitForMessages(1, timeout: 30)

        // The broker freezes: row 2 stays in flight, so the slot stays before it while WAL piles up.
        broker.freeze()
        try admin.execute("INSERT INTO public.t VALUES (2, 'in flight')")
        Thread.sleep(forTimeInterval: 1)
        for id in 1...4 {
            try admin.execute("INSERT INTO public.filler VALUES ($1)", [String(id)])
            try admin.execute("SELECT pg_switch_wal()")
        }
        try admin.execute("CHECKPOINT")
        let lost = try eventually(timeout: 30) {
            try admin.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", [slot]).value("wal_status") == "lost"
        }
        let slots = try admin.execute("SELECT slot_name, wal_status, restart_lsn, confirmed_flush_lsn FROM pg_replication_slots").rows
        try #require(lost, "the slot was invalidated: \(slots)")

        #expect(eventually(timeout: 30) { sluice.log.contains("replication slot \"\(slot)\" was invalidated") }, "log:\n\(sluice.log)")
        broker.thaw()
        #expect(sluice.waitForExit(timeout: 60) == 1, "log:\n\(sluice.log)")
        let line = sluice.stopLine ?? ""
        #expect(line.contains("replication slot \"\(slot)\" was invalidated: PostgreSQL removed WAL it still needed (max_slot_wal_keep_size)"), "\(line)")
        #expect(line.contains("drop the slot (SELECT pg_drop_replication_slot('\(slot)'))") && line.contains("sluice backfill start --sink"), "\(line)")

        // A change while sluice is down is in no slot; what the line says to do brings it back.
        try admin.execute("INSERT INTO public.t VALUES (3, 'while down')")
        try admin.execute("SELECT pg_drop_replication_slot($1)", [slot])
        try admin.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
        try admin.execute("SELECT pg_reload_conf()")
        sluice = try SluiceProcess(environment, config: config)
        try #require(sluice.waitUntilStreaming(), "log:\n\(sluice.log)")
        let api = BackfillAPI(port: port, token: "t")
        try api.waitUntilServing(sluice)
        let id = try #require(try api.startOne(sink: "s", table: "public.t").string("id"))
        #expect(try api.waitUntilEnded(id, timeout: 60).string("state") == "completed")
        let messages = try topic.waitForMessages(4, timeout: 30)
        #expect(Set(messages.filter { $0.action == "read" }.compactMap(\.key)) == ["1", "2", "3"], "\(messages.map(\.payload))")
        #expect(sluice.stop() == 0)
        withExtendedLifetime((postgres, broker)) {}
    }
}
