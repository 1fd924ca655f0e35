import Foundation
import KafkaMock
import KafkaSink
import Ledger
import SluiceCore
import Testing

/// Delivery guarantees under faults: groups, parking, crashes, broker and database outages.
@Suite(.serialized)
struct DeliveryTests {
    /// Keys (primary-key values) that land on `partition` of a 2-partition topic.
    func keys(on partition: Int, count: Int) -> [Int] {
        Array((1...1000).filter { KafkaPartitioner.partition(forKey: Array(String($0).utf8), partitions: 2) == partition }.prefix(count))
    }

    @Test func failingGroupIsParkedWhileOthersFlowAndIsDeliveredInOrderAfterRestart() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 2)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("parked"))
        try cluster.createTopic(topic.name, partitions: 2)
        try cluster.setLeader(topic: topic.name, partition: 0, broker: 1)
        try cluster.setLeader(topic: topic.name, partition: 1, broker: 2)
        let a = keys(on: 0, count: 1)[0], b = keys(on: 1, count: 1)[0]

        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq int NOT NULL)")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic, extra: "    park_after: 2s\n")],
                                    hosts: cluster.bootstrapServers)
        var sluice = try fixture.startSluice(config: config)

        // Partition 0's leader goes away: group a cannot be delivered, group b can.
        cluster.setBrokerDown(1)
        try db.execute("INSERT INTO public.t VALUES ($1, 1), ($2, 1)", [String(a), String(b)])
        try db.execute("UPDATE public.t SET seq = 2 WHERE id IN ($1, $2)", [String(a), String(b)])
        try db.execute("BEGIN")
        try db.execute("UPDATE public.t SET seq = 3 WHERE id = $1", [String(a)])
        let beforeLastCommit = try db.currentWAL()
        try db.execute("COMMIT")

        // Read partition 1 only: a consumer of every partition waits on the dead leader of partition 0.
        let bOnly = try topic.waitForMessages(2, partition: 1, timeout: 20)
        #expect(bOnly.map(\.key) == [String(b), String(b)], "group b flows while a fails; log:\n\(sluice.log)")
        #expect(bOnly.map { $0.record["seq"] as? Int } == [1, 2])

        // Group a is parked durably, so the slot moves past it.
        let advanced = try eventually(timeout: 30, every: 0.5) { (try db.confirmedFlush(slot: fixture.slot) ?? .zero) > beforeLastCommit }
        #expect(advanced, "the slot advanced past the parked group; log:\n\(sluice.log)")
        #expect(sluice.log.contains("delivery failed; parking the group and retrying"))
        let ledger = try SQLiteStateStore(path: fixture.statePath)
        #expect(try ledger.parked(sink: "s").map { String(decoding: $0.key ?? [], as: UTF8.self) } == [String(a), String(a), String(a)])

        // Restart while parked: the parked messages come back from the ledger, before newer ones.
        #expect(sluice.stop() == 0)
        sluice = try fixture.startSluice(config: config)
        #expect(sluice.log.contains("delivering parked messages from the ledger first"))
        try db.execute("UPDATE public.t SET seq = 4 WHERE id = $1", [String(a)])

        cluster.setBrokerUp(1)
        let all = try topic.waitForMessages(6, timeout: 120)
        let aSeqs = all.filter { $0.key == String(a) }.map { $0.record["seq"] as? Int ?? -1 }
        #expect(aSeqs == [1, 2, 3, 4], "parked group delivered in order; log:\n\(sluice.log)")
        #expect(try eventually(timeout: 10) { try ledger.parkedCount(sink: "s") == 0 })
        #expect(sluice.stop() == 0)
    }

    @Test func retriableBrokerErrorsDelayButNeverReorder() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("retry"))
        try cluster.createTopic(topic.name, partitions: 1)
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq int NOT NULL)")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)], hosts: cluster.bootstrapServers)
        let sluice = try fixture.startSluice(config: config)

        cluster.failNextProduceRequests(with: Array(repeating: MockKafkaCluster.notEnoughReplicas, count: 6))
        for seq in 1...20 { try db.execute("INSERT INTO public.t VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET seq = $1", [String(seq)]) }
        let messages = try topic.waitForMessages(20, timeout: 60)
        #expect(messages.map { $0.record["seq"] as? Int ?? -1 } == Array(1...20), "log:\n\(sluice.log)")
        #expect(sluice.stop() == 0)
    }

    @Test func tooLargeMessageIsCancelledAndItsGroupGoesOn() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.docs (id int PRIMARY KEY, body text)")
        try db.execute("ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL")
        let topic = fixture.topic("docs")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.docs"], sinks: [.init(name: "s", topic: topic)]))

        try db.execute("INSERT INTO public.docs VALUES (1, 'small')")
        try db.execute("UPDATE public.docs SET body = repeat('x', 1500000) WHERE id = 1")
        try db.execute("BEGIN")
        try db.execute("UPDATE public.docs SET body = 'small again' WHERE id = 1")
        let beforeLastCommit = try db.currentWAL()
        try db.execute("COMMIT")

        let messages = try topic.waitForMessages(2, timeout: 30)
        #expect(messages.map { $0.record["body"] as? String } == ["small", "small again"], "log:\n\(sluice.log)")
        #expect(sluice.log.contains("message too large for Kafka; cancelled"))
        #expect(sluice.log.contains("table=public.docs"))
        let advanced = try eventually(timeout: 20) { (try db.confirmedFlush(slot: fixture.slot) ?? .zero) > beforeLastCommit }
        #expect(advanced)
        #expect(sluice.stop() == 0)
        let cancelled = try SQLiteStateStore(path: fixture.statePath).cancelled(sink: "s")
        #expect(cancelled.count == 1)
        #expect(cancelled.first?.reason == "too_large")
        #expect(cancelled.first?.key == "1")
        #expect((cancelled.first?.size ?? 0) > 1_500_000)
        #expect(sluice.log.contains("cancelled_too_large=1"))
    }

    @Test func twentySigkillsUnderLoadLoseNothing() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.load (id int PRIMARY KEY, seq bigint NOT NULL)")
        try db.execute("ALTER TABLE public.load REPLICA IDENTITY FULL")
        let topic = fixture.topic("load")
        let config = fixture.config(tables: ["public.load"], sinks: [.init(name: "s", topic: topic)])
        var sluice = try fixture.startSluice(config: config)
        let writer = LoadWriter(url: db.url, table: "public.load", keys: 50)

        for _ in 1...20 {
            Thread.sleep(forTimeInterval: Double.random(in: 0.3...1.5))
            sluice.kill(signal: SIGKILL)
            sluice.process.waitUntilExit()
            sluice = try fixture.startSluice(config: config)
        }
        let expected = try writer.stop()
        let messages = try topic.waitForMessages(expected.count, timeout: 120)
        let check = OrderCheck(expected: expected, messages: messages)
        print("20 × SIGKILL: \(expected.count) changes written, \(messages.count) messages, \(check.duplicates) duplicates")
        #expect(check.missing.count == 0, "lost \(check.missing.count) changes, e.g. \(check.missing.prefix(5))")
        #expect(check.outOfOrder.count == 0, "out of order: \(check.outOfOrder.prefix(5))")
        #expect(sluice.stop() == 0)
    }

    /// The broker goes away for 30 s while changes keep coming, then returns (librdkafka's mock
    /// cluster keeps its log across the outage as a real Kafka broker does).
    @Test func brokerDownForThirtySecondsUnderLoad() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        try db.execute("CREATE TABLE public.load (id int PRIMARY KEY, seq bigint NOT NULL)")
        try db.execute("ALTER TABLE public.load REPLICA IDENTITY FULL")
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("outage"))
        try cluster.createTopic(topic.name, partitions: 3)
        let config = fixture.config(tables: ["public.load"], sinks: [.init(name: "s", topic: topic)], hosts: cluster.bootstrapServers)
        let sluice = try fixture.startSluice(config: config)
        let writer = LoadWriter(url: db.url, table: "public.load", keys: 30, pause: 0.01)

        Thread.sleep(forTimeInterval: 3)
        cluster.setBrokerDown(1)
        Thread.sleep(forTimeInterval: 30)
        cluster.setBrokerUp(1)
        Thread.sleep(forTimeInterval: 3)
        let expected = try writer.stop()

        let messages = try topic.waitForMessages(expected.count, timeout: 180)
        let check = OrderCheck(expected: expected, messages: messages)
        print("broker outage: \(expected.count) changes written, \(messages.count) messages, \(check.duplicates) duplicates")
        #expect(check.missing.count == 0, "lost \(check.missing.count) changes, e.g. \(check.missing.prefix(5)); log:\n\(sluice.log.suffix(3000))")
        #expect(check.outOfOrder.count == 0, "out of order: \(check.outOfOrder.prefix(5))")
        #expect(sluice.process.isRunning)
        #expect(sluice.stop() == 0)
    }

    /// A fatal producer error (here: the broker reports a sequence gap) ends a librdkafka
    /// producer for good; Sluice replaces it and delivers everything, in order.
    @Test func fatalProducerErrorIsSurvived() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("fatal"))
        try cluster.createTopic(topic.name, partitions: 1)
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq int NOT NULL)")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)], hosts: cluster.bootstrapServers)
        let sluice = try fixture.startSluice(config: config)
        try db.execute("INSERT INTO public.t VALUES (1, 0)")
        #expect(try topic.waitForMessages(1).count == 1)

        cluster.failNextProduceRequests(with: [MockKafkaCluster.outOfOrderSequence])
        for seq in 1...20 { try db.execute("UPDATE public.t SET seq = $1 WHERE id = 1", [String(seq)]) }
        let messages = try topic.waitForMessages(21, timeout: 90)
        #expect(messages.map { $0.record["seq"] as? Int ?? -1 } == Array(0...20), "log:\n\(sluice.log.suffix(4000))")
        #expect(sluice.log.contains("the Kafka producer hit a fatal error; replaced it"))
        #expect(sluice.stop() == 0)
    }

    @Test func postgresRestartUnderLoad() throws {
        let environment = try TestEnvironment.current()
        let postgres = try OwnPostgres()
        let admin = try PostgresSourceConnection(url: postgres.url)
        try admin.execute("CREATE TABLE public.load (id bigserial PRIMARY KEY, seq bigint NOT NULL)")
        let slot = TestEnvironment.uniqueName("slot")
        let topic = KafkaTopic(hosts: environment.kafkaHosts, name: TestEnvironment.uniqueName("pgrestart"))
        let state = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("state")).path
        let config = """
            database:
              url: \(postgres.url)
              slot: { name: \(slot), create_if_not_exists: true }
              publication: { name: pub, create_if_not_exists: true, tables: [public.load] }
            state: { path: \(state)/state.sqlite }
            sinks:
              - name: s
                destination: { type: kafka, hosts: "\(environment.kafkaHosts)", topic: \(topic.name) }
            """
        let sluice = try SluiceProcess(environment, config: config)
        #expect(sluice.waitUntilStreaming(), "log:\n\(sluice.log)")

        // Insert-only load that survives the restart by reconnecting; the table says what committed.
        let stop = LockedFlag()
        let writerDone = DispatchSemaphore(value: 0)
        let url = postgres.url
        let writer = Thread {
            defer { writerDone.signal() }
            var seq = 0
            var connection: PostgresSourceConnection?
            while !stop.isSet {
                do {
                    if connection == nil { connection = try PostgresSourceConnection(url: url) }
                    seq += 1
                    try connection!.execute("INSERT INTO public.load (seq) VALUES ($1)", [String(seq)])
                } catch {
                    connection = nil
                    Thread.sleep(forTimeInterval: 0.2)
                }
                Thread.sleep(forTimeInterval: 0.005)
            }
        }
        writer.start()
        Thread.sleep(forTimeInterval: 2)
        try postgres.restart()
        Thread.sleep(forTimeInterval: 4)
        stop.set()
        writerDone.wait()

        let committed = try PostgresSourceConnection(url: postgres.url).execute("SELECT id FROM public.load").rows.compactMap { $0[0] }
        let messages = try topic.waitForMessages(committed.count, timeout: 120)
        let arrived = Set(messages.compactMap(\.key))
        let missing = committed.filter { !arrived.contains($0) }
        print("postgres restart: \(committed.count) rows committed, \(messages.count) messages")
        #expect(missing.count == 0, "lost \(missing.count) rows, e.g. \(missing.prefix(5)); log:\n\(sluice.log.suffix(3000))")
        #expect(sluice.log.contains("replication interrupted; reconnecting"))
        #expect(sluice.stop() == 0)
    }
}

/// A thread-safe boolean for stopping helper threads.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
