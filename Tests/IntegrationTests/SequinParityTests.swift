import Foundation
import SluiceCore
import Testing

/// What a consumer written against Sequin's Kafka sink checks: every metadata field, transaction
/// annotations, Sequin's value forms, enrichment, and Sequin's sink syntax — against real PostgreSQL
/// and the broker.
@Suite(.serialized)
struct SequinParityTests {
    static func emit(_ prefix: String, _ content: String) -> String {
        "SELECT pg_logical_emit_message(true, '\(prefix)', '\(content)')"
    }

    @Test func databaseConsumerAndTransactionAnnotationsArriveFieldByField() throws {
        let fixture = try Fixture()
        let db = fixture.database
        // Changes of a transaction over 64 kB arrive while it is in progress (protocol 2, streamed).
        try db.execute("ALTER DATABASE \(db.name) SET logical_decoding_work_mem = '64kB'")
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, note text)")
        let topic = fixture.topic("annotated")
        let config = fixture.config(tables: ["public.orders"], sinks: [
            .init(name: "orders", topic: topic, extra: "    annotations: {team: billing, tier: 2, pager: false}\n"),
        ]).replacingOccurrences(of: "  heartbeat_interval: 1s\n",
                                with: "  heartbeat_interval: 1s\n  name: prod-db\n  annotations: {region: eu-1}\n")
        let sluice = try fixture.startSluice(config: config)

        try db.execute("BEGIN")
        try db.execute(Self.emit("sequin:transaction_annotations.set", #"{"user":"ada","request_id":"r-1"}"#))
        try db.execute("INSERT INTO public.orders VALUES (1, 'a')")
        try db.execute(Self.emit("sequin:transaction_annotations.set", #"{"user":"bob","n":2}"#))  // a later set replaces
        try db.execute("INSERT INTO public.orders VALUES (2, 'b')")
        try db.execute(Self.emit("sequin:transaction_annotations.clear", ""))
        try db.execute("INSERT INTO public.orders VALUES (3, 'c')")
        try db.execute("COMMIT")
        try db.execute("INSERT INTO public.orders VALUES (4, 'no annotations leak into the next transaction')")
        try db.execute("BEGIN")
        try db.execute(Self.emit("sequin:transaction_annotations.set", "{not json"))
        try db.execute("INSERT INTO public.orders VALUES (5, 'invalid JSON: null, and the change arrives')")
        try db.execute(Self.emit("sluice:transaction_annotations.set", #"{"via":"sluice prefix"}"#))
        try db.execute("INSERT INTO public.orders VALUES (6, 'f')")
        try db.execute("COMMIT")
        // A streamed transaction: annotations set before 2,000 changes of ~200 bytes each.
        try db.execute("BEGIN")
        try db.execute(Self.emit("sequin:transaction_annotations.set", #"{"bulk":true}"#))
        try db.execute("INSERT INTO public.orders SELECT g, repeat('x', 200) FROM generate_series(100, 2099) g")
        try db.execute("COMMIT")

        let messages = try topic.waitForMessages(2_006, timeout: 90)
        #expect(messages.count == 2_006, "log:\n\(sluice.log)")
        let byID = Dictionary(messages.map { ($0.record["id"] as? Int ?? -1, $0) }, uniquingKeysWith: { first, _ in first })
        func annotations(_ id: Int) -> NSDictionary? { byID[id]?.metadata["transaction_annotations"] as? NSDictionary }
        func isNull(_ id: Int) -> Bool { byID[id]?.metadata["transaction_annotations"] is NSNull }
        #expect(annotations(1) == ["user": "ada", "request_id": "r-1"] as NSDictionary)
        #expect(annotations(2) == ["user": "bob", "n": 2] as NSDictionary)
        #expect(isNull(3) && isNull(4) && isNull(5), "cleared, next transaction, invalid JSON")
        #expect(annotations(6) == ["via": "sluice prefix"] as NSDictionary)
        #expect((100...2099).allSatisfy { annotations($0) == ["bulk": true] as NSDictionary }, "streamed transaction keeps them")
        #expect(sluice.log.contains("transaction annotations are not valid JSON"))
        let streamed = try db.execute("SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = $1", [fixture.slot])
        #expect((Int(streamed.value("stream_txns") ?? "0") ?? 0) >= 1, "the large transaction was streamed")

        // metadata.database and metadata.consumer, field by field.
        let metadata = try #require(byID[1]?.metadata)
        let database = try #require(metadata["database"] as? [String: Any])
        #expect(Set(database.keys) == ["id", "name", "annotations", "database", "hostname"])
        #expect(database["id"] as? String == DatabaseIdentity(name: "prod-db", database: db.name, hostname: "").id)
        #expect(database["name"] as? String == "prod-db")
        #expect(database["database"] as? String == db.name)
        #expect(database["hostname"] as? String == "127.0.0.1")
        #expect(database["annotations"] as? NSDictionary == ["region": "eu-1"] as NSDictionary)
        let consumer = try #require(metadata["consumer"] as? [String: Any])
        #expect(consumer["name"] as? String == "orders")
        #expect(consumer["id"] as? String == ConsumerIdentity(name: "orders").id)
        #expect(consumer["annotations"] as? NSDictionary == ["team": "billing", "tier": 2, "pager": false] as NSDictionary)
        #expect(metadata["enrichment"] is NSNull)
        #expect(metadata["database_name"] as? String == db.name)
        #expect(sluice.stop() == 0)
    }

    @Test func sequinValueFormatNextToTheDefault() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE DOMAIN posint AS int4 CHECK (VALUE > 0)")
        try db.execute("CREATE DOMAIN small_posint AS posint CHECK (VALUE < 100)")
        try db.execute("CREATE TYPE address AS (city text, zip int)")
        try db.execute("""
            CREATE TABLE public.prices (id int PRIMARY KEY, price numeric(10,3), rate numeric, huge numeric, nan numeric,
                                        cash money, qty posint, small small_posint, ship address, list numeric[], label text)
            """)
        let plain = fixture.topic("plain")
        let sequin = fixture.topic("sequin")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.prices"], sinks: [
            .init(name: "plain", topic: plain),
            .init(name: "sequin", topic: sequin, extra: "    value_format: sequin\n"),
        ]))
        try db.execute("""
            INSERT INTO public.prices VALUES (1, 19.99, 0.000001, 123456789012345678901234567890.123456789012, 'NaN',
                                              1234.56, 5, 7, ROW('Paris', 75001), '{1.5,-2.250}', 'same')
            """)
        let fromPlain = try #require(try plain.waitForMessages(1, timeout: 60).first, "log:\n\(sluice.log)")
        let fromSequin = try #require(try sequin.waitForMessages(1, timeout: 60).first, "log:\n\(sluice.log)")

        let plainRecord = fromPlain.payload.components(separatedBy: ",\"changes\"")[0]
        let sequinRecord = fromSequin.payload.components(separatedBy: ",\"changes\"")[0]
        #expect(plainRecord == #"{"record":{"id":1,"price":19.990,"rate":0.000001,"huge":123456789012345678901234567890.123456789012,"nan":"NaN","cash":"$1,234.56","qty":5,"small":7,"ship":{"city":"Paris","zip":75001},"list":[1.5,-2.250],"label":"same"}"#)
        // Sequin: numeric as strings with their digits and scale, money as its text, a domain over a
        // built-in type as that type, a domain over a domain and a composite as their text form.
        #expect(sequinRecord == #"{"record":{"id":1,"price":"19.990","rate":"0.000001","huge":"123456789012345678901234567890.123456789012","nan":"NaN","cash":"$1,234.56","qty":5,"small":"7","ship":"(Paris,75001)","list":["1.5","-2.250"],"label":"same"}"#)
        // Nothing else changes.
        var plainMetadata = fromPlain.metadata
        var sequinMetadata = fromSequin.metadata
        plainMetadata["consumer"] = nil
        sequinMetadata["consumer"] = nil
        #expect(plainMetadata as NSDictionary == sequinMetadata as NSDictionary)
        #expect(fromPlain.key == fromSequin.key && fromPlain.action == fromSequin.action)
        #expect(sluice.stop() == 0)
    }

    @Test func enrichmentAddsTheJoinedRowAndParksWhileTheQueryFails() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.accounts (id int, name text)")  // no key: duplicates are possible
        try db.execute("CREATE TABLE public.users (id int PRIMARY KEY, account_id int, name text)")
        try db.execute("CREATE TABLE public.orgs (id int PRIMARY KEY, title text)")
        try db.execute("CREATE TABLE public.members (org_id int, user_id int, role text, PRIMARY KEY (org_id, user_id))")
        try db.execute("INSERT INTO public.accounts VALUES (1, 'Acme'), (2, 'Globex')")
        try db.execute("INSERT INTO public.orgs VALUES (10, 'Research'), (20, 'Sales')")
        let users = fixture.topic("users")
        let members = fixture.topic("members")
        let functions = FunctionDeclaration.yaml([
            FunctionDeclaration(name: "with-account", type: "enrichment", code: """
                SELECT u.id, a.name AS account_name, a.id AS account FROM users u JOIN accounts a ON a.id = u.account_id
                WHERE u.id = ANY($1)
                """, extra: "    statement_timeout: 1s\n"),
            FunctionDeclaration(name: "with-org", type: "enrichment", code: """
                SELECT m.org_id, m.user_id, o.title FROM members m JOIN orgs o ON o.id = m.org_id
                WHERE (m.org_id, m.user_id) IN (SELECT * FROM unnest($1::int[], $2::int[]))
                """),
            // Routing sees the enrichment: the key is the account's name.
            FunctionDeclaration(name: "by-account", type: "routing", code: """
                function route(action, record, changes, metadata)
                  if metadata.enrichment == nil then return { message_key = "no-account" } end
                  return { message_key = metadata.enrichment.account_name }
                end
                """),
        ])
        let config = fixture.config(tables: ["public.users", "public.members"], sinks: [
            .init(name: "users", topic: users, tables: ["public.users"], extra: "    enrichment: with-account\n    routing: by-account\n"),
            .init(name: "members", topic: members, tables: ["public.members"], extra: "    enrichment: with-org\n"),
        ]) + functions
        let sluice = try fixture.startSluice(config: config)

        try db.execute("INSERT INTO public.users VALUES (1, 1, 'ada'), (2, 2, 'bob'), (3, 99, 'no account')")
        try db.execute("INSERT INTO public.members VALUES (10, 1, 'lead'), (20, 1, 'member'), (30, 2, 'no org')")
        let first = try users.waitForMessages(3, timeout: 60).sorted { ($0.record["id"] as? Int ?? 0) < ($1.record["id"] as? Int ?? 0) }
        #expect(first.count == 3, "log:\n\(sluice.log)")
        let enrichment = first.map { $0.metadata["enrichment"] }
        #expect(enrichment[0] as? NSDictionary == ["id": 1, "account_name": "Acme", "account": 1] as NSDictionary)
        #expect(enrichment[1] as? NSDictionary == ["id": 2, "account_name": "Globex", "account": 2] as NSDictionary)
        #expect(enrichment[2] is NSNull, "a row with no match gets null")
        #expect(first.map(\.key) == ["Acme", "Globex", "no-account"])
        let orgs = try members.waitForMessages(3, timeout: 60).sorted { ($0.record["org_id"] as? Int ?? 0) < ($1.record["org_id"] as? Int ?? 0) }
        #expect(orgs.map { ($0.metadata["enrichment"] as? [String: Any])?["title"] as? String } == ["Research", "Sales", nil])

        // Two rows for one key: an error of that message only; it is parked and retried.
        try db.execute("INSERT INTO public.accounts VALUES (3, 'Initech'), (3, 'Initech again')")
        try db.execute("INSERT INTO public.users VALUES (4, 3, 'two accounts')")
        try db.execute("INSERT INTO public.users VALUES (5, 1, 'fine')")
        #expect(try eventually(timeout: 30) { try users.messages().contains { $0.record["id"] as? Int == 5 } }, "log:\n\(sluice.log)")
        #expect(try !users.messages().contains { $0.record["id"] as? Int == 4 })
        #expect(sluice.log.contains("returned more than one row for key 4"))
        try db.execute("DELETE FROM public.accounts WHERE name = 'Initech again'")
        #expect(try eventually(timeout: 30) { try users.messages().contains { $0.record["id"] as? Int == 4 } })

        // The query times out while accounts is locked: the message parks, and arrives once the lock is gone.
        let locker = try PostgresSourceConnection(url: db.url)
        try locker.execute("BEGIN")
        try locker.execute("LOCK TABLE public.accounts IN ACCESS EXCLUSIVE MODE")
        try db.execute("INSERT INTO public.users VALUES (6, 2, 'while locked')")
        #expect(eventually(timeout: 30) { sluice.log.contains("canceling statement due to statement timeout") }, "log:\n\(sluice.log)")
        #expect(try !users.messages().contains { $0.record["id"] as? Int == 6 })
        try locker.execute("ROLLBACK")
        #expect(try eventually(timeout: 30) { try users.messages().contains { $0.record["id"] as? Int == 6 } }, "log:\n\(sluice.log)")
        let six = try #require(try users.messages().first { $0.record["id"] as? Int == 6 })
        #expect(six.metadata["enrichment"] as? NSDictionary == ["id": 6, "account_name": "Globex", "account": 2] as NSDictionary)
        #expect(six.key == "Globex")

        // The enrichment connections are cut (as when the database restarts): the next query fails, the
        // message parks, and the retry connects again.
        try db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice-enrichment'")
        try db.execute("INSERT INTO public.users VALUES (7, 1, 'after the connection was lost')")
        #expect(try eventually(timeout: 30) { try users.messages().contains { $0.record["id"] as? Int == 7 } }, "log:\n\(sluice.log)")
        let seven = try #require(try users.messages().first { $0.record["id"] as? Int == 7 })
        #expect((seven.metadata["enrichment"] as? [String: Any])?["account_name"] as? String == "Acme")
        #expect(sluice.stop() == 0)
    }

    @Test func aBadEnrichmentQueryRefusesToStartNamingTheFunction() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.users (id int PRIMARY KEY, name text)")
        let topic = fixture.topic("users")
        func config(_ code: String) -> String {
            fixture.config(tables: ["public.users"], sinks: [.init(name: "users", topic: topic, tables: ["public.users"],
                                                                   extra: "    enrichment: lookup\n")])
                + FunctionDeclaration.yaml([FunctionDeclaration(name: "lookup", type: "enrichment", code: code)])
        }
        let missing = try SluiceProcess(fixture.environment, config: config("SELECT id FROM nowhere WHERE id = ANY($1)"))
        _ = eventually(timeout: 30) { !missing.process.isRunning }
        #expect(!missing.process.isRunning && missing.process.terminationStatus != 0)
        #expect(missing.log.contains(#"functions[0].code: PostgreSQL refused the enrichment query of lookup: ERROR:  relation "nowhere" does not exist"#),
                "log:\n\(missing.log)")
        let noKey = try SluiceProcess(fixture.environment, config: config("SELECT name FROM users WHERE id = ANY($1)"),
                                      arguments: ["check"])
        _ = eventually(timeout: 30) { !noKey.process.isRunning }
        #expect(noKey.process.terminationStatus == 1)
        #expect(noKey.log.contains("functions[0].code: the enrichment query of lookup does not select id, the key of public.users"),
                "log:\n\(noKey.log)")
    }

    @Test func sinkSourcesSelectSchemasAndTablesAndADisabledSinkSendsNothing() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE SCHEMA sales")
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
        try db.execute("CREATE TABLE public.jobs (id int PRIMARY KEY)")
        try db.execute("CREATE TABLE sales.invoices (id int PRIMARY KEY)")
        let salesOnly = fixture.topic("sales")
        let publicButJobs = fixture.topic("public")
        let disabled = fixture.topic("disabled")
        // A publication FOR ALL TABLES, so that tables created later are published too.
        let sluice = try fixture.startSluice(config: fixture.config(tables: [], sinks: [
            .init(name: "sales", topic: salesOnly, extra: "    source: {include_schemas: [sales]}\n"),
            .init(name: "public", topic: publicButJobs,
                  extra: "    source: {include_schemas: [public], exclude_tables: [public.jobs]}\n"),
            .init(name: "off", topic: disabled, extra: "    status: disabled\n"),
        ]))
        try db.execute("INSERT INTO public.orders VALUES (1)")
        try db.execute("INSERT INTO public.jobs VALUES (1)")
        try db.execute("INSERT INTO sales.invoices VALUES (1)")
        try db.execute("CREATE TABLE sales.late (id int PRIMARY KEY)")
        try db.execute("INSERT INTO sales.late VALUES (7)")
        try db.execute("CREATE TABLE public.later (id int PRIMARY KEY)")
        try db.execute("INSERT INTO public.later VALUES (8)")

        let sales = try salesOnly.waitForMessages(2, timeout: 60)
        let publics = try publicButJobs.waitForMessages(2, timeout: 60)
        Thread.sleep(forTimeInterval: 2)
        #expect(try salesOnly.messages().map { $0.metadata["table_name"] as? String } == ["invoices", "late"], "log:\n\(sluice.log)")
        #expect(try publicButJobs.messages().map { $0.metadata["table_name"] as? String } == ["orders", "later"])
        #expect(sales.count == 2 && publics.count == 2)
        #expect(((try? disabled.messages()) ?? []).isEmpty, "a disabled sink sends nothing")
        // …and holds no slot position back.
        let after = try db.currentWAL()
        #expect(try eventually(timeout: 30, every: 0.5) { (try db.confirmedFlush(slot: fixture.slot) ?? .zero) >= after })
        #expect(sluice.log.contains("sink is disabled"))
        #expect(sluice.stop() == 0)
    }

    @Test func jsonLogsAreOneObjectPerLineWithoutSecrets() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
        let topic = fixture.topic("logs")
        // The test server trusts local connections, so the password is only there to be kept out of the logs.
        let withPassword = db.url.replacingOccurrences(of: "postgres@", with: "postgres:hunter2-secret@")
        let config = "log_format: json\n" + fixture.config(tables: ["public.orders"], sinks: [.init(name: "s", topic: topic)])
            .replacingOccurrences(of: "  url: \(db.url)\n", with: "  url: \(withPassword)\n")
        let sluice = try fixture.startSluice(config: config)
        try db.execute("INSERT INTO public.orders VALUES (1)")
        _ = try topic.waitForMessages(1, timeout: 60)
        #expect(sluice.stop() == 0)
        let lines = sluice.log.split(separator: "\n")
        #expect(lines.count >= 3, "log:\n\(sluice.log)")
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["message"] is String && object?["time"] is String
                    && object?["metadata"] is [String: Any], "not a JSON log line: \(line)")
        }
        #expect(lines.contains { $0.contains(#""message":"streaming""#) })
        #expect(!sluice.log.contains("hunter2"))

        let version = try runCommand(fixture.environment.sluiceBinary, ["--version"])
        #expect(version.status == 0 && version.stdout.split(separator: ".").count == 3)
    }
}
