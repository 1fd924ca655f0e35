import Foundation
import Ledger
import SluiceCore
import Testing

/// Two sluice processes on one slot with `state.store: postgres`: one leads, the other takes over when
/// the leader dies, freezes or loses PostgreSQL — and nothing is lost, per key nothing is reordered.
@Suite(.serialized)
struct HighAvailabilityTests {
    static let leaseSeconds = 3.0

    func sinkYAML(_ topic: KafkaTopic, extra: String = "") -> String {
        """
          - name: s
            destination: { type: kafka, hosts: "\(topic.hosts)", topic: \(topic.name) }
        \(extra)
        """
    }

    /// Each value at its first arrival: later copies are re-sent duplicates.
    static func firstArrivals(_ values: [Int]) -> [Int] {
        var seen = Set<Int>()
        return values.filter { seen.insert($0).inserted }
    }

    /// The instance that leads, once one of `instances` says so.
    func leader(of instances: [HACluster.Instance], timeout: Double = 20) -> HACluster.Instance? {
        var found: HACluster.Instance?
        _ = eventually(timeout: timeout, every: 0.1) {
            found = instances.first { $0.process.process.isRunning && $0.role == "leader" }
            return found != nil
        }
        return found
    }

    @Test func theLeaderKilledRepeatedlyUnderLoadIsReplacedWithinTheLeaseAndNothingIsLostOrReordered() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq bigint NOT NULL)")
        try db.execute("ALTER TABLE public.t REPLICA IDENTITY FULL")
        let topic = fixture.topic("ha")
        let cluster = HACluster(fixture: fixture, tables: ["public.t"], sinks: sinkYAML(topic))
        var instances = [try cluster.start(), try cluster.start()]
        defer { for instance in instances { instance.process.stop() } }
        try #require(leader(of: instances) != nil, "one instance leads; logs:\n\(instances.map(\.log).joined(separator: "\n---\n"))")

        let writer = LoadWriter(url: db.url, table: "public.t", keys: 40, pause: 0.003)
        var takeovers: [Double] = []
        for round in 1...5 {
            Thread.sleep(forTimeInterval: 1.5)
            let dead = try #require(leader(of: instances), "round \(round): a leader")
            let survivor = try #require(instances.first { $0 !== dead && $0.process.process.isRunning })
            #expect(survivor.role == "standby")
            dead.process.kill(signal: SIGKILL)
            let killedAt = Date()
            #expect(dead.process.waitForExit(timeout: 5) == SIGKILL, "the leader died of SIGKILL")
            let tookOver = survivor.waitForRole("leader", timeout: Self.leaseSeconds + 5)
            takeovers.append(Date().timeIntervalSince(killedAt))
            #expect(tookOver, "round \(round): \(survivor.name) took over within lease + 5 s; log:\n\(survivor.log)")
            // The dead one comes back in a new, empty folder, and stands by.
            instances.removeAll { $0 === dead }
            let fresh = try cluster.start()
            instances.append(fresh)
            #expect(fresh.waitForRole("standby", timeout: 10), "a restarted instance stands by; log:\n\(fresh.log)")
        }
        // Each takeover counts on the instance that took over; the leader gauge is 1 there, 0 on the standby.
        let last = try #require(leader(of: instances))
        let standby = try #require(instances.first { $0 !== last })
        let metrics = try last.console.metrics()
        #expect(metrics.value("sluice_takeovers_total", [:]) ?? 0 >= 1, "\(metrics)")
        #expect(metrics.value("sluice_leader", ["instance": last.name]) == 1)
        #expect(try standby.console.metrics().value("sluice_leader", ["instance": standby.name]) == 0)

        let events = try writer.stop()
        let expected = events.count
        _ = try? topic.waitForMessages(expected, timeout: 90)
        let check = OrderCheck(expected: events, messages: try topic.messages())
        #expect(check.missing.isEmpty, "\(check.missing.count) of \(expected) changes missing, e.g. \(check.missing.prefix(5))")
        #expect(check.outOfOrder.isEmpty, "out of order: \(check.outOfOrder.prefix(5))")
        #expect(takeovers.allSatisfy { $0 <= Self.leaseSeconds + 5 }, "takeover times: \(takeovers)")
        print("HA kill rounds: \(expected) changes, takeovers after \(takeovers.map { String(format: "%.2f s", $0) }), \(check.duplicates) duplicates")
    }

    @Test func whatTheDeadLeaderParkedIsDeliveredByTheNewLeader() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let broker = try OwnBroker()
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq int NOT NULL)")
        let topic = KafkaTopic(hosts: broker.hosts, name: TestEnvironment.uniqueName("parked"))
        let cluster = HACluster(fixture: fixture, tables: ["public.t"], sinks: sinkYAML(topic, extra: "    park_after: 2s"),
                                hosts: broker.hosts)
        let a = try cluster.start("a")
        try #require(a.waitForRole("leader", timeout: 20), "a leads; log:\n\(a.log)")
        let b = try cluster.start("b")
        defer { a.process.stop(); b.process.stop() }
        try #require(b.waitForRole("standby", timeout: 10))
        try db.execute("INSERT INTO public.t VALUES (1, 0)")
        _ = try topic.waitForMessages(1, timeout: 30)

        // The broker freezes: a parks the next changes in the shared state and the slot moves past them.
        broker.freeze()
        try db.execute("UPDATE public.t SET seq = 1 WHERE id = 1")
        try db.execute("INSERT INTO public.t VALUES (2, 1)")
        try db.execute("UPDATE public.t SET seq = 2 WHERE id = 1")
        let afterWrites = try db.currentWAL()
        let store = try cluster.store()
        #expect(try eventually(timeout: 30, every: 0.5) { try store.parkedCount(sink: "s") == 3 },
                "three changes parked in PostgreSQL; log:\n\(a.log)")
        #expect(try eventually(timeout: 30, every: 0.5) { (try db.confirmedFlush(slot: fixture.slot) ?? .zero) >= afterWrites },
                "the slot moved past the parked changes")

        // a dies with them parked; b takes over, and delivers them once the broker is back.
        a.process.kill(signal: SIGKILL)
        #expect(a.process.waitForExit(timeout: 5) == SIGKILL)
        #expect(b.waitForRole("leader", timeout: Self.leaseSeconds + 5), "b took over; log:\n\(b.log)")
        broker.thaw()
        try db.execute("UPDATE public.t SET seq = 3 WHERE id = 1")
        // The dead leader's copies that reached the frozen broker may land too (at-least-once): every
        // change arrives, and none before an earlier one of its key.
        var one: [Int] = []
        #expect(try eventually(timeout: 120, every: 0.5) {
            one = try topic.messages().filter { $0.key == "1" }.map { $0.record["seq"] as? Int ?? -1 }
            return one.contains(3)
        }, "log:\n\(b.log)")
        let messages = try topic.messages()
        #expect(Self.firstArrivals(one) == [0, 1, 2, 3], "key 1 in order: \(one); log:\n\(b.log)")
        #expect(messages.contains { $0.key == "2" })
        #expect(b.log.contains("delivering parked messages from the ledger first"), "log:\n\(b.log)")
        #expect(try eventually(timeout: 20) { try store.parkedCount(sink: "s") == 0 })
    }

    @Test func aFrozenLeaderStepsDownWhenItWakesAndWithExactlyOnceNothingItHeldAppears() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq bigint NOT NULL)")
        try db.execute("ALTER TABLE public.t REPLICA IDENTITY FULL")
        let topic = fixture.topic("zombie")
        let cluster = HACluster(fixture: fixture, tables: ["public.t"], sinks: sinkYAML(topic, extra: "    delivery: exactly_once"))
        let a = try cluster.start("a")
        try #require(a.waitForRole("leader", timeout: 30), "a leads; log:\n\(a.log)")
        let b = try cluster.start("b")
        defer { a.process.kill(signal: SIGCONT); a.process.stop(); b.process.stop() }
        try #require(b.waitForRole("standby", timeout: 10))

        let writer = LoadWriter(url: db.url, table: "public.t", keys: 20, pause: 0.005)
        Thread.sleep(forTimeInterval: 2)
        a.process.kill(signal: SIGSTOP)
        let frozenAt = Date()
        #expect(b.waitForRole("leader", timeout: Self.leaseSeconds + 5), "b took over from the frozen a; log:\n\(b.log)")
        let tookOverAfter = Date().timeIntervalSince(frozenAt)
        #expect(tookOverAfter >= Self.leaseSeconds - 0.5, "b waited for a's lease to expire (\(tookOverAfter) s)")
        #expect(b.log.contains("the leader's lease expired"))
        Thread.sleep(forTimeInterval: 2)
        a.process.kill(signal: SIGCONT)
        #expect(eventually(timeout: 10) { a.log.contains("stepped down") }, "a stepped down when it woke; log:\n\(a.log)")
        #expect(a.waitForRole("standby", timeout: 10))
        Thread.sleep(forTimeInterval: Self.leaseSeconds * 2)
        #expect(a.role == "standby" && b.role == "leader", "a did not take the slot back from b")
        #expect(try cluster.leaseRow()?.instance == "b")

        let events = try writer.stop()
        _ = try? topic.waitForMessages(events.count, timeout: 90)
        let check = OrderCheck(expected: events, messages: try topic.messages())
        #expect(check.missing.isEmpty, "\(check.missing.count) of \(events.count) missing")
        #expect(check.duplicates == 0, "a read_committed consumer sees each change once: \(check.duplicates) duplicates")
        #expect(check.outOfOrder.isEmpty, "\(check.outOfOrder.prefix(5))")
    }

    /// A restarted process with the same `ha.instance` (a pod that keeps its name) ends the old holder's
    /// sessions by that name — its own state connection among them — and still leads and delivers.
    @Test func aLeaderRestartedUnderTheSameNameLeadsAgainAndDelivers() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq int NOT NULL)")
        let topic = fixture.topic("same-name")
        let cluster = HACluster(fixture: fixture, tables: ["public.t"], sinks: sinkYAML(topic))
        let first = try cluster.start("a")
        try #require(first.waitForRole("leader", timeout: 20), "log:\n\(first.log)")
        try db.execute("INSERT INTO public.t VALUES (1, 0)")
        _ = try topic.waitForMessages(1, timeout: 30)
        first.process.kill(signal: SIGKILL)
        #expect(first.process.waitForExit(timeout: 5) == SIGKILL)

        let again = try cluster.start("a")
        defer { again.process.stop() }
        #expect(again.waitForRole("leader", timeout: Self.leaseSeconds + 5), "log:\n\(again.log)")
        #expect(again.log.contains("previous=a"), "it took over from its own name; log:\n\(again.log)")
        try db.execute("UPDATE public.t SET seq = 1 WHERE id = 1")
        try db.execute("INSERT INTO public.t VALUES (2, 0)")
        var seqs: [Int] = []
        #expect(try eventually(timeout: 30, every: 0.5) {
            seqs = try topic.messages().filter { $0.key == "1" }.map { $0.record["seq"] as? Int ?? -1 }
            return seqs.contains(1)
        }, "log:\n\(again.log)")
        #expect(Self.firstArrivals(seqs) == [0, 1])
        // Its state connection was ended by its own claim; the store reconnects, and the delivered list is saved.
        #expect(try eventually(timeout: 10) { try cluster.store().recentlyDelivered(sink: "s").contains { $0.key == "2" } })
    }

    @Test func stateCopyMovesParkedMessagesIntoPostgreSQLAndTheyAreDeliveredAfterTheSwitch() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let broker = try OwnBroker()
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq int NOT NULL)")
        let topic = KafkaTopic(hosts: broker.hosts, name: TestEnvironment.uniqueName("copy"))
        let sqliteConfig = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic, extra: "    park_after: 2s\n")],
                                          hosts: broker.hosts)
        let single = try fixture.startSluice(config: sqliteConfig)
        try db.execute("INSERT INTO public.t VALUES (1, 0)")
        _ = try topic.waitForMessages(1, timeout: 30)
        broker.freeze()
        try db.execute("UPDATE public.t SET seq = 1 WHERE id = 1")
        try db.execute("UPDATE public.t SET seq = 2 WHERE id = 1")
        let file = try SQLiteStateStore(path: fixture.statePath)
        #expect(try eventually(timeout: 30, every: 0.5) { try file.parkedCount(sink: "s") == 2 }, "log:\n\(single.log)")
        single.kill(signal: SIGKILL)
        _ = single.waitForExit(timeout: 5)

        let schema = TestEnvironment.uniqueName("copied")
        let postgresConfig = sqliteConfig.replacingOccurrences(of: "state: { path: \(fixture.statePath) }",
                                                               with: "state: { path: \(fixture.statePath), store: postgres, schema: \(schema) }")
        #expect(postgresConfig != sqliteConfig)
        let configURL = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("copy") + ".yml")
        try postgresConfig.write(to: configURL, atomically: true, encoding: .utf8)
        let copy = try runCommand(fixture.environment.sluiceBinary, ["state", "copy", "--from", "sqlite", "--to", "postgres",
                                                                    "--config", configURL.path])
        #expect(copy.status == 0, "state copy: \(copy.stdout)\(copy.stderr)")
        #expect(copy.stdout.contains("copied 2 parked"), "\(copy.stdout)")
        let copied = try PostgresStateStore(parameters: [("dbname", db.url)], schema: schema, slot: fixture.slot, access: .standby)
        #expect(try copied.parked(sink: "s").map { $0.position } == (try file.parked(sink: "s").map { $0.position }))
        let again = try runCommand(fixture.environment.sluiceBinary, ["state", "copy", "--from", "sqlite", "--to", "postgres",
                                                                     "--config", configURL.path])
        #expect(again.status == 1 && again.stderr.contains("parked"), "a second copy refuses the non-empty target: \(again.stderr)")

        // Switched to PostgreSQL: the parked messages come from there, before newer ones of their key.
        let switched = try SluiceProcess(fixture.environment, config: postgresConfig)
        defer { switched.stop() }
        #expect(eventually(timeout: 30) { switched.log.contains("leading the slot") }, "log:\n\(switched.log)")
        broker.thaw()
        try db.execute("UPDATE public.t SET seq = 3 WHERE id = 1")
        var seqs: [Int] = []
        #expect(try eventually(timeout: 120, every: 0.5) {
            seqs = try topic.messages().map { $0.record["seq"] as? Int ?? -1 }
            return seqs.contains(3)
        }, "log:\n\(switched.log)")
        // Copies the killed instance had sent to the frozen broker may land as well (at-least-once).
        #expect(Self.firstArrivals(seqs) == [0, 1, 2, 3], "\(seqs); log:\n\(switched.log)")
        #expect(try eventually(timeout: 20) { try copied.parkedCount(sink: "s") == 0 })
    }
}
