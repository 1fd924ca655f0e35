import Foundation
import KafkaMock
import KafkaSink
import Ledger
import SluiceCore
import Testing

/// Lua functions on a real stream: routing, filtering, transforming, and a failing function that
/// parks only its own group until a fixed function is deployed.
@Suite(.serialized)
struct FunctionTests {
    @Test func routingSendsTwoTablesToTheTopicsAndKeysItChoseOnJavaPartitions() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let tenants = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("tenants"))
        let regions = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("regions"))
        try cluster.createTopic(tenants.name, partitions: 4)
        try cluster.createTopic(regions.name, partitions: 4)
        try db.execute("CREATE TABLE public.a (id int PRIMARY KEY, tenant text NOT NULL)")
        try db.execute("CREATE TABLE public.b (id int PRIMARY KEY, region text NOT NULL)")
        let route = FunctionDeclaration(name: "by-owner", type: "routing", code: """
            function route(action, record, changes, metadata)
              if metadata.table_name == "a" then
                return { topic = "\(tenants.name)", message_key = "tenant-" .. record.tenant }
              end
              return { topic = "\(regions.name)", message_key = record.id * 10 }
            end
            """)
        // No destination topic: the routing function sets it.
        var config = fixture.config(tables: ["public.a", "public.b"], sinks: [.init(name: "s", topic: tenants, extra: "    routing: by-owner\n")],
                                    hosts: cluster.bootstrapServers)
        config = config.replacingOccurrences(of: "      topic: \(tenants.name)\n", with: "") + FunctionDeclaration.yaml([route])
        let sluice = try fixture.startSluice(config: config)

        for id in 1...12 { try db.execute("INSERT INTO public.a VALUES ($1, $2)", [String(id), "t\(id % 5)"]) }
        for id in 1...6 { try db.execute("INSERT INTO public.b VALUES ($1, 'eu')", [String(id)]) }

        let fromA = try tenants.waitForMessages(12, timeout: 60)
        let fromB = try regions.waitForMessages(6, timeout: 60)
        #expect(fromA.count == 12 && fromB.count == 6, "log:\n\(sluice.log)")
        #expect(Set(fromA.compactMap { $0.metadata["table_name"] as? String }) == ["a"])
        #expect(Set(fromB.compactMap { $0.metadata["table_name"] as? String }) == ["b"])
        #expect(Set(fromA.compactMap(\.key)) == Set((1...12).map { "tenant-t\($0 % 5)" }))
        #expect(fromB.compactMap(\.key).sorted() == (1...6).map { String($0 * 10) }.sorted(), "an integer key is sent as its text")
        for message in fromA + fromB {
            let key = try #require(message.key)
            #expect(message.partition == KafkaPartitioner.partition(forKey: Array(key.utf8), partitions: 4),
                    "key \(key) is on the partition a Java client picks")
        }
        // The value is untouched by routing: still the Sequin-shaped message, record_pks from the primary key.
        #expect(fromB.allSatisfy { ($0.metadata["record_pks"] as? [String])?.count == 1 && $0.action == "insert" })
        #expect(sluice.stop() == 0)
    }

    @Test func filterDropsWhatItShouldAndTheSlotMovesPastDroppedChanges() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let topic = fixture.topic("filtered")
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, amount numeric(10,2) NOT NULL)")
        let filter = FunctionDeclaration(name: "paid-only", type: "filter", code: """
            function filter(action, record, changes, metadata)
              return record.status == "paid" and record.amount > 100
            end
            """)
        let config = fixture.config(tables: ["public.orders"], sinks: [.init(name: "s", topic: topic, extra: "    filter: paid-only\n")])
            + FunctionDeclaration.yaml([filter])
        let sluice = try fixture.startSluice(config: config)

        try db.execute("INSERT INTO public.orders VALUES (1, 'paid', 150.00), (2, 'new', 500.00), (3, 'paid', 99.99), (4, 'paid', 100.01)")
        try db.execute("UPDATE public.orders SET status = 'paid' WHERE id = 2")
        let messages = try topic.waitForMessages(3, timeout: 60)
        Thread.sleep(forTimeInterval: 2)
        let all = try topic.messages()
        #expect(all.map { "\($0.action ?? ""):\($0.key ?? "")" } == ["insert:1", "insert:4", "update:2"], "log:\n\(sluice.log)")
        #expect(messages.first?.payload.contains("\"amount\":150.00") == true, "numeric digits unchanged by a filter")

        // A transaction whose every change is dropped still lets the slot move on.
        try db.execute("INSERT INTO public.orders VALUES (10, 'new', 1.00), (11, 'new', 2.00)")
        let after = try db.currentWAL()
        #expect(try eventually(timeout: 30, every: 0.5) { (try db.confirmedFlush(slot: fixture.slot) ?? .zero) >= after },
                "the slot passes filtered changes; log:\n\(sluice.log)")
        #expect(try topic.messages().count == 3)
        #expect(sluice.stop() == 0)
    }

    @Test func transformOutputIsExactlyWhatArrivesAndAPathTransformCutsTheRecord() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let shaped = fixture.topic("shaped")
        let plain = fixture.topic("plain")
        let recordOnly = fixture.topic("record")
        try db.execute("""
            CREATE TABLE public.items (id bigint PRIMARY KEY, amount numeric(12,3), tags int[] NOT NULL, doc jsonb, note text)
            """)
        let slim = FunctionDeclaration(name: "slim", type: "transform", code: """
            function transform(action, record, changes, metadata)
              return { id = record.id, amount = record.amount, tags = record.tags, doc = record.doc,
                       table = metadata.table_schema .. "." .. metadata.table_name, kind = action, note = record.note or sluice.null }
            end
            """)
        let path = FunctionDeclaration(name: "record-only", type: "path", path: "record")
        let config = fixture.config(tables: ["public.items"], sinks: [
            .init(name: "shaped", topic: shaped, extra: "    transform: slim\n"),
            .init(name: "plain", topic: plain),
            .init(name: "record", topic: recordOnly, extra: "    transform: record-only\n"),
        ]) + FunctionDeclaration.yaml([slim, path])
        let sluice = try fixture.startSluice(config: config)

        try db.execute("""
            INSERT INTO public.items VALUES (9007199254740993, 19.990, '{}', '{"a": {"b": [1, 2.50, null]}, "e": {}}', NULL)
            """)
        let arrived = try shaped.waitForMessages(1, timeout: 60)
        #expect(arrived.first?.payload == """
            {"amount":19.990,"doc":{"a":{"b":[1,2.50,null]},"e":{}},"id":9007199254740993,"kind":"insert","note":null,\
            "table":"public.items","tags":[]}
            """, "log:\n\(sluice.log)")
        #expect(arrived.first?.key == "9007199254740993", "the key stays the primary key")

        let original = try #require(try plain.waitForMessages(1, timeout: 60).first)
        let cut = try #require(try recordOnly.waitForMessages(1, timeout: 60).first)
        let start = try #require(original.payload.range(of: "{\"record\":")).upperBound
        let end = try #require(original.payload.range(of: ",\"changes\":")).lowerBound
        #expect(cut.payload == String(original.payload[start..<end]), "a path transform sends the record byte for byte")
        #expect(sluice.stop() == 0)
    }

    @Test func aFailingFunctionParksItsRowsGroupWhileOthersFlowAndAFixedFunctionDeliversInOrder() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let topic = fixture.topic("fails")
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq int NOT NULL)")
        func config(_ body: String) -> String {
            let transform = FunctionDeclaration(name: "pick", type: "transform", code: """
                function transform(action, record, changes, metadata)
                \(body)
                  return { id = record.id, seq = record.seq, action = action }
                end
                """, extra: "    max_instructions: 100000\n")
            return fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic, extra: "    transform: pick\n")])
                + FunctionDeclaration.yaml([transform])
        }
        let broken = config("""
              if record.id == 2 then error("row 2 is not welcome") end
              if record.id == 4 then while true do end end
            """)
        var sluice = try fixture.startSluice(config: broken)

        for id in 1...5 { try db.execute("INSERT INTO public.t VALUES ($1, 1)", [String(id)]) }
        try db.execute("UPDATE public.t SET seq = 2")
        let afterWrites = try db.currentWAL()

        // Rows 1, 3 and 5 flow; rows 2 and 4 are parked with the function's error and line.
        let flowing = try topic.waitForMessages(6, timeout: 60)
        #expect(flowing.map { $0.json["id"] as? Int ?? -1 }.sorted() == [1, 1, 3, 3, 5, 5], "log:\n\(sluice.log)")
        let ledger = try SQLiteStateStore(path: fixture.statePath)
        #expect(try eventually(timeout: 20) { try ledger.parkedCount(sink: "s") == 4 })
        let parked = try ledger.parked(sink: "s")
        let row2 = parked.filter { $0.key.map { String(decoding: $0, as: UTF8.self) } == "2" }
        #expect(row2.count == 2)
        #expect(row2.first?.lastError == "functions[0].code:2: row 2 is not welcome", "\(parked.map { $0.lastError ?? "-" })")
        #expect(parked.contains { $0.lastError?.contains("functions[0].code:3: exceeded its budget of 100000 instructions") == true })
        // Parked before the functions ran: the ledger holds the Sequin-shaped message.
        let parkedValue = row2.first.map { String(decoding: $0.value, as: UTF8.self) } ?? ""
        #expect(parkedValue.hasPrefix("{\"record\":{\"id\":2,"), "\(parkedValue)")
        // Parked durably, so the slot moves past them.
        #expect(try eventually(timeout: 30, every: 0.5) { (try db.confirmedFlush(slot: fixture.slot) ?? .zero) >= afterWrites })
        #expect(sluice.process.isRunning, "user code never takes the process down")

        // Deploy the fixed function: the parked changes arrive, each row's in order.
        #expect(sluice.stop() == 0)
        sluice = try fixture.startSluice(config: config(""))
        try db.execute("UPDATE public.t SET seq = 3 WHERE id = 2")
        let all = try topic.waitForMessages(11, timeout: 90)
        for id in [2, 4] {
            let seqs = all.filter { $0.json["id"] as? Int == id }.map { "\($0.json["action"] ?? ""):\($0.json["seq"] ?? "")" }
            #expect(seqs == (id == 2 ? ["insert:1", "update:2", "update:3"] : ["insert:1", "update:2"]), "row \(id); log:\n\(sluice.log)")
        }
        #expect(try eventually(timeout: 20) { try ledger.parkedCount(sink: "s") == 0 })
        #expect(sluice.stop() == 0)
    }
}
