import Foundation
import Testing

/// `sluice import-sequin`: Sequin samples (Fixtures/sequin) become Sluice files that say the same, what
/// does not carry over is listed line by line, and `sluice check` accepts the result against the test
/// PostgreSQL and broker — or names exactly the functions still written in Elixir.
@Suite(.serialized)
struct ImportSequinTests {
    static let portLine = "still written in Elixir — port it to Lua (see the comment in its code)"

    /// A test database with the slot and publication a sample names (created when `create` is set,
    /// as Sequin's users create them by hand).
    func testDatabase(_ environment: TestEnvironment, create: Bool, tables: [String] = []) throws -> (TestDatabase, [String: String]) {
        let database = try TestDatabase(environment)
        let slot = TestEnvironment.uniqueName("slot"), publication = TestEnvironment.uniqueName("pub")
        for table in tables { try database.execute(table) }
        if create {
            try database.execute("CREATE PUBLICATION \(publication) FOR ALL TABLES")
            try database.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot])
        }
        return (database, SampleVariables.database(database, slot: slot, publication: publication)
            .merging(SampleVariables.kafka(environment, topic: TestEnvironment.uniqueName("orders"))) { $1 })
    }

    @Test func kafkaSinkWithEverySettingCarriesOver() throws {
        let environment = try TestEnvironment.current()
        let run = try SequinImportRun.sample("kafka-every-setting.yml", environment)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr == "")
        #expect(run.stdout == "wrote \(run.path("sluice.yml")) (database \"orders-db\": 1 sink, 0 functions)\n")

        let doc = try run.document()
        let database = doc["database"]
        #expect(database["name"].string == "orders-db")
        #expect(database["host"].string == "${IMPORT_PG_HOST}")
        #expect(database["port"].string == "${IMPORT_PG_PORT}")
        #expect(database["dbname"].string == "${IMPORT_PG_DB}")
        #expect(database["user"].string == "postgres")
        #expect(database["password"].string == "${IMPORT_PG_PASSWORD:-postgres}")
        // Sequin creates neither unless told to; Sluice would: the file says so.
        #expect(database["slot"]["name"].string == "${IMPORT_SLOT}")
        #expect(database["slot"]["create_if_not_exists"].bool == false)
        #expect(database["publication"]["name"].string == "${IMPORT_PUBLICATION}")
        #expect(database["publication"]["create_if_not_exists"].bool == false)
        #expect(doc["state"]["path"].string == "./sluice-state.sqlite")

        let sink = doc["sinks"][0]
        #expect(doc["sinks"].count == 1)
        #expect(sink["name"].string == "orders-to-kafka")
        #expect(sink["actions"].strings == ["insert", "update"])
        #expect(sink["message_grouping"].bool == false)
        #expect(sink["value_format"].string == "sequin")
        #expect(!sink["batch_size"].exists, "Sluice has no sink-level batch_size")
        let destination = sink["destination"]
        #expect(destination.keys == ["batch_size", "compression", "hosts", "tls", "topic", "type"])
        #expect(destination["type"].string == "kafka")
        #expect(destination["hosts"].string == "${IMPORT_KAFKA_HOSTS}")
        #expect(destination["topic"].string == "${IMPORT_TOPIC}")
        #expect(destination["tls"].bool == false)
        #expect(destination["compression"].string == "lz4")
        #expect(destination["batch_size"].int == 50)

        let (db, variables) = try testDatabase(environment, create: true)
        defer { db.drop() }
        let check = try run.check(environment, variables: variables)
        #expect(check.status == 0, "stderr: \(check.stderr)")
        #expect(check.stdout.contains("configuration is valid"))
    }

    @Test func saslTLSAndSecretsStayAsReferences() throws {
        let environment = try TestEnvironment.current()
        let run = try SequinImportRun.sample("kafka-sasl-tls.yml", environment)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr == "")
        let doc = try run.document()
        // ssl: true is libpq's sslmode=require (encrypted, not verified — as Sequin connects).
        #expect(doc["database"]["url"].string == "postgres://sequin:hunter2-db-literal@db.internal:5432/app?sslmode=require")
        #expect(doc["database"]["slot"]["create_if_not_exists"].bool == true)
        let destination = doc["sinks"][0]["destination"]
        #expect(destination["hosts"].string == "b-1.example.com:9096,b-2.example.com:9096")
        #expect(destination["tls"].bool == true)
        #expect(destination["username"].string == "${KAFKA_USER:-audit-service}")
        #expect(destination["password"].string == "${KAFKA_PASSWORD}")
        #expect(destination["sasl_mechanism"].string == "scram_sha_512")
        #expect(destination["compression"].string == "zstd")
        #expect(destination["batch_size"].int == 500)
        #expect(try run.text().contains("password: \"${KAFKA_PASSWORD}\""), "the reference is written as it was")
        #expect(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"))
        let mode = try FileManager.default.attributesOfItem(atPath: run.path("sluice.yml"))[.posixPermissions] as? Int
        #expect(mode == 0o600, "the file can hold passwords")
    }

    @Test func sourceTablesGroupingAnnotationsStatusAndBackfills() throws {
        let environment = try TestEnvironment.current()
        let run = try SequinImportRun.sample("sink-options.yml", environment)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr == "")
        let doc = try run.document()
        #expect(doc["database"]["annotations"]["team"].string == "data")
        #expect(doc["database"]["annotations"]["tier"].int == 1)

        let grouped = doc["sinks"][0]
        #expect(grouped["status"].string == "disabled")
        #expect(grouped["source"].keys == ["exclude_tables", "include_schemas"])
        #expect(grouped["source"]["include_schemas"].strings == ["public"])
        #expect(grouped["source"]["exclude_tables"].strings == ["public.background_jobs"])
        #expect(grouped["tables"].count == 1)
        #expect(grouped["tables"][0]["name"].string == "public.orders")
        #expect(grouped["tables"][0]["group_column_names"].strings == ["customer_id"])
        #expect(grouped["message_grouping"].bool == true)
        #expect(grouped["actions"].strings == ["insert", "update", "delete"], "Sequin's default, without truncate")
        #expect(grouped["annotations"]["owner"].string == "growth")
        #expect(grouped["annotations"]["priority"].int == 5)
        #expect(grouped["annotations"]["paging"].bool == true)
        // Typed as Sluice types annotation text (as JSON would): YAML-only forms stay strings.
        #expect(grouped["annotations"]["offset"].int == -3)
        #expect(grouped["annotations"]["mode"].string == "0755")
        #expect(grouped["annotations"]["answer"].string == "yes")
        #expect(grouped["initial_backfill"].count == 2)
        #expect(grouped["initial_backfill"][0]["table"].string == "public.customers")
        #expect(grouped["initial_backfill"][1].keys == ["sort_column", "start_position", "table", "type"])
        #expect(grouped["initial_backfill"][1]["type"].string == "partial")
        #expect(grouped["initial_backfill"][1]["sort_column"].string == "updated_at")
        #expect(grouped["initial_backfill"][1]["start_position"].string == "2025-01-01T00:00:00Z")
        #expect(doc["sinks"][1]["source"]["exclude_schemas"].strings == ["private"])
        #expect(doc["sinks"][1]["source"]["include_tables"].strings == ["public.orders", "public.customers"])
        #expect(doc["sinks"][1]["status"].string == "active")
        #expect(doc["sinks"][1]["initial_backfill"].bool == true)

        let (db, variables) = try testDatabase(environment, create: false, tables: [
            "CREATE TABLE public.orders (id int PRIMARY KEY, customer_id int, updated_at timestamptz)",
            "CREATE TABLE public.customers (id int PRIMARY KEY)",
        ])
        defer { db.drop() }
        let check = try run.check(environment, variables: variables)
        #expect(check.status == 0, "stderr: \(check.stderr)")
    }

    @Test func functionsCarryOverAndElixirBecomesLuaStubs() throws {
        let environment = try TestEnvironment.current()
        let run = try SequinImportRun.sample("functions.yml", environment)
        #expect(run.status == 0, "\(run.stderr)")
        let stub = "written as a Lua stub that fails until you port it — the Elixir code is in its comment"
        #expect(run.stderrLines == [
            "functions[2] (filter \"vip-only\"): \(stub)",
            "functions[3] (transform \"id-and-action\"): \(stub)",
            "functions[4] (routing \"by-tenant\"): \(stub)",
            "functions[5] (routing \"to-rest-api\"): skipped — it routes \"webhook\" sinks; Sluice only has Kafka sinks",
        ])
        #expect(run.stdout == "wrote \(run.path("sluice.yml")) (database \"app\": 2 sinks, 5 functions)\n")

        let doc = try run.document()
        let functions = doc["functions"]
        #expect(functions.count == 5)
        #expect(functions[0].keys == ["description", "name", "path", "type"])
        #expect(functions[0]["type"].string == "path")
        #expect(functions[0]["path"].string == "record")
        #expect(functions[1]["type"].string == "enrichment")
        #expect(functions[1]["description"].string == "Enrich with customer data")
        #expect(functions[1]["code"].string == """
            SELECT
              u.id,
              a.name as account_name
            FROM
              users u
            JOIN
              accounts a on u.account_id = a.id
            WHERE
              u.id = ANY($1)
            """)
        // The file: function's Elixir, read from functions/vip-only.exs, sits in the comment.
        #expect(functions[2]["name"].string == "vip-only")
        #expect(functions[2]["type"].string == "filter")
        #expect(functions[2]["code"].string == """
            -- Sequin function "vip-only", imported by sluice import-sequin. Sluice runs Lua:
            -- rewrite the Elixir below as the Lua function underneath (README, "Functions")
            -- and remove the error() line.
            --
            -- def filter(action, record, changes, metadata) do
            --   record["customer_type"] == "VIP"
            -- end
            function filter(action, record, changes, metadata)
              error("port this function from Elixir")
            end

            """)
        #expect(functions[3]["code"].string?.contains("function transform(action, record, changes, metadata)\n  error(\"port this function from Elixir\")\nend\n") == true)
        #expect(functions[3]["code"].string?.contains("--     id: record[\"id\"],\n") == true)
        #expect(functions[4]["type"].string == "routing")
        #expect(functions[4]["code"].string?.contains("-- def route(action, record, changes, metadata) do\n") == true)
        #expect(functions[4]["code"].string?.contains("function route(action, record, changes, metadata)\n") == true)

        let sink = doc["sinks"][0]
        #expect(sink["enrichment"].string == "with-account")
        #expect(sink["filter"].string == "vip-only")
        #expect(sink["transform"].string == "id-and-action")
        #expect(sink["routing"].string == "by-tenant")
        #expect(!sink["destination"]["topic"].exists, "the routing function sets the topic")
        #expect(doc["sinks"][1]["transform"].string == "record-only")
        #expect(doc["sinks"][1]["filter"].string == "none")

        let (db, variables) = try testDatabase(environment, create: false, tables: [
            "CREATE TABLE public.accounts (id int PRIMARY KEY, name text)",
            "CREATE TABLE public.users (id int PRIMARY KEY, account_id int REFERENCES public.accounts)",
        ])
        defer { db.drop() }
        let check = try run.check(environment, variables: variables)
        #expect(check.status == 1)
        #expect(check.stderr.split(separator: "\n").map(String.init) == [
            "functions[2] (vip-only): \(Self.portLine)",
            "functions[3] (id-and-action): \(Self.portLine)",
            "functions[4] (by-tenant): \(Self.portLine)",
        ])
    }

    @Test func twoDatabasesWriteOneFileEach() throws {
        let environment = try TestEnvironment.current()
        let run = try SequinImportRun.sample("two-databases.yml", environment)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout == """
            wrote \(run.path("sluice.app.yml")) (database "app": 1 sink, 0 functions)
            wrote \(run.path("sluice.billing.yml")) (database "billing": 2 sinks, 0 functions)

            """)
        #expect(!FileManager.default.fileExists(atPath: run.path("sluice.yml")))
        let app = try run.document("sluice.app.yml"), billing = try run.document("sluice.billing.yml")
        #expect(app["database"]["name"].string == "app")
        #expect(app["database"]["url"].string == "${IMPORT_APP_URL}")
        #expect(app["state"]["path"].string == "./sluice-state.app.sqlite")
        #expect(app["sinks"].count == 1)
        #expect(app["sinks"][0]["name"].string == "users")
        #expect(billing["database"]["name"].string == "billing")
        #expect(billing["database"]["slot"]["name"].string == "${IMPORT_BILLING_SLOT}")
        #expect(billing["state"]["path"].string == "./sluice-state.billing.sqlite")
        #expect(billing["sinks"].count == 2)
        #expect(billing["sinks"][0]["name"].string == "invoices")
        #expect(billing["sinks"][1]["name"].string == "payments")

        let (appDB, appVariables) = try testDatabase(environment, create: false)
        defer { appDB.drop() }
        let (billingDB, billingVariables) = try testDatabase(environment, create: false)
        defer { billingDB.drop() }
        func renamed(_ variables: [String: String], _ prefix: String) -> [String: String] {
            Dictionary(uniqueKeysWithValues: variables.map { key, value in
                (key.hasPrefix("IMPORT_") && !key.hasPrefix("IMPORT_KAFKA") && key != "IMPORT_TOPIC"
                    ? key.replacingOccurrences(of: "IMPORT_", with: "IMPORT_\(prefix)_") : key, value)
            })
        }
        for (file, variables) in [("sluice.app.yml", renamed(appVariables, "APP")), ("sluice.billing.yml", renamed(billingVariables, "BILLING"))] {
            let check = try run.check(environment, file: file, variables: variables)
            #expect(check.status == 0, "\(file): \(check.stderr)")
            #expect(check.stdout.contains("ok: database: connected to \(file == "sluice.app.yml" ? appDB.name : billingDB.name)"))
        }
    }

    @Test func otherSinkTypesAndUnsupportedSettingsAreListed() throws {
        let environment = try TestEnvironment.current()
        let run = try SequinImportRun.sample("unsupported.yml", environment)
        #expect(run.status == 0, "\(run.stderr)")
        let aws = "skipped — Sluice has no AWS MSK IAM authentication"
        #expect(run.stderrLines == [
            "account: skipped — Sluice has no accounts: one sluice.yml configures one running sluice",
            "users: skipped — Sluice has no user logins; its console is protected by console.token",
            "api_tokens: skipped — Sluice has no API tokens; its console API is protected by console.token",
            "http_endpoints: skipped — HTTP endpoints serve webhook sinks, and Sluice only has Kafka sinks",
            "change_retentions: skipped — Sluice has no change retention (writing changes into a table)",
            "base_sink: skipped — not a Sequin setting (Sequin ignores it too)",
            "databases[0].pool_size: skipped — Sluice has no connection pool: it opens one replication connection and one for queries",
            "databases[0].use_local_tunnel: skipped — Sluice connects to the database directly (there is no Sequin CLI tunnel)",
            "databases[0].await_database: skipped — Sluice has no start-up wait for the database: start it once the database accepts connections",
            "databases[0].primary: skipped — Sluice has no separate primary connection: it reads the slot on database and writes its heartbeats there",
            "sinks[0] (webhook \"webhook-audit\"): skipped — Sluice only has Kafka sinks",
            "sinks[1] (sqs \"to-sqs\"): skipped — Sluice only has Kafka sinks",
            "sinks[2].status: \"paused\" written as disabled — Sluice has no paused state (active or disabled)",
            "sinks[2].filters: skipped — Sluice has no column filters: write them as a filter function",
            "sinks[2].timestamp_format: skipped — Sluice writes timestamps in ISO 8601 only (Sequin's iso8601)",
            "sinks[2].load_shedding_policy: skipped — Sluice never discards messages: it pauses reading at max_memory_mb or max_ack_pending (as pause_on_full does)",
            "sinks[2].max_retry_count: skipped — Sluice retries a failing message until it is delivered or cancelled; it has no retry limit",
            "sinks[2].message_kind: skipped — Sequin ignores it too",
            "sinks[2].destination.sasl_mechanism: \(aws); use SASL/SCRAM (username, password, sasl_mechanism)",
            "sinks[2].destination.aws_region: \(aws)",
            "sinks[2].destination.aws_access_key_id: \(aws)",
            "sinks[2].destination.aws_secret_access_key: \(aws)",
            "sinks[3] (redis_stream \"to-redis\"): skipped — Sluice only has Kafka sinks",
            "transforms[0] (path \"record-only\"): skipped — no Kafka sink uses it",
        ])
        for secret in ["user", "token", "db", "primary", "header", "sqs", "aws", "redis"] {
            #expect(!run.stderr.contains("\(secret)-secret-literal") && !run.stdout.contains("\(secret)-secret-literal"))
        }
        // Older forms: slot_name/publication_name, table: with group_column_names.
        let doc = try run.document()
        #expect(doc["database"]["slot"]["name"].string == "sequin_slot")
        #expect(doc["database"]["slot"]["create_if_not_exists"].bool == false)
        #expect(doc["database"]["publication"]["name"].string == "sequin_pub")
        #expect(doc["database"]["password"].string == "db-secret-literal", "written as sequin.yml had it, never printed")
        let sink = doc["sinks"][0]
        #expect(doc["sinks"].count == 1)
        #expect(sink["status"].string == "disabled")
        #expect(sink["source"]["include_tables"].strings == ["public.orders"])
        #expect(sink["tables"][0]["name"].string == "public.orders")
        #expect(sink["tables"][0]["group_column_names"].strings == ["account_id"])
        #expect(sink["destination"].keys == ["hosts", "tls", "topic", "type"])
        let text = try run.text()
        #expect(!text.contains("aws-secret-literal") && !text.contains("primary-secret-literal") && !text.contains("sqs-secret-literal"))
        // The file keeps the same list for whoever opens it later.
        #expect(text.contains("#   sinks[0] (webhook \"webhook-audit\"): skipped — Sluice only has Kafka sinks\n"))
    }

    @Test func badInputExitsWithTwoAndNamesTheField() throws {
        let environment = try TestEnvironment.current()
        func refused(_ yaml: String, files: [String: String] = [:]) throws -> String {
            let run = try SequinImportRun.text(yaml, environment, files: files)
            #expect(run.status == 2, "\(run.stderr)")
            #expect(run.stdout == "")
            #expect(!FileManager.default.fileExists(atPath: run.path("sluice.yml")), "nothing written")
            #expect(!run.stderr.contains("hunter2"), "no secret in an error")
            return run.stderr.replacingOccurrences(of: run.path("sequin.yml"), with: "sequin.yml")
        }
        #expect(try refused("databases:\n  - name: app\n    password: \"hunter2\n  slot: [").hasPrefix("sequin.yml: not valid YAML — line "))
        #expect(try refused("just some words\n") == "sequin.yml: not a Sequin configuration — expected a mapping with databases: and sinks:\n")
        #expect(try refused("") == "sequin.yml: is empty — expected a Sequin configuration with databases: and sinks:\n")

        let database = """
            databases:
              - name: app
                hostname: localhost
                database: app
                password: hunter2
                slot: { name: s }
                publication: { name: p }

            """
        #expect(try refused(database) == "sequin.yml: sinks: no sinks — Sluice only has Kafka sinks (destination type: kafka), so there is nothing to write\n")
        #expect(try refused(database + """
            sinks:
              - name: audit
                database: app
                destination: { type: webhook, http_endpoint: e }
            """) == """
            sinks[0] (webhook "audit"): skipped — Sluice only has Kafka sinks
            sequin.yml: sinks: its one sink is not a Kafka sink — Sluice only has Kafka sinks (destination type: kafka), so there is nothing to write

            """)
        let kafkaSink = """
            sinks:
              - name: orders
                database: app
                destination: { type: kafka, hosts: "localhost:9092", topic: orders }

            """
        #expect(try refused(kafkaSink) == "sequin.yml: databases: is missing — the import needs the database the Kafka sinks read from\n")
        #expect(try refused(database.replacingOccurrences(of: "    slot: { name: s }\n", with: "") + kafkaSink)
            == "sequin.yml: databases[0].slot.name: is required (Sequin needs it too)\n")
        #expect(try refused(database + kafkaSink + """
            functions:
              - name: vip
                type: filter
                file: missing.exs
            """) == "sequin.yml: functions[0].file: \"missing.exs\" — no readable UTF-8 file there (paths are relative to the Sequin file's folder)\n")

        let missing = try runCommand(environment.sluiceBinary, ["import-sequin", "--from", "/nonexistent/sequin.yml"])
        #expect(missing.status == 2)
        #expect(missing.stderr == "/nonexistent/sequin.yml: no such file\n")
    }

    @Test func textSurvivesTheWriterExactly() throws {
        let environment = try TestEnvironment.current()
        let descriptions = ["yes", "0755", "1e3", "a: b", "x #y", "say \"hi\"", "C:\\path", "Grüße ✓", "", " padded ",
                            "null", "~", "${NOT_EXPANDED}", "- dash", "[flow]", "{map}", "tab\there", "@at", "!tag", "*star", "&amp"]
        var yaml = """
            databases:
              - name: "weird: name #1"
                url: "postgres://u:p@localhost:5432/db"
                slot: { name: s }
                publication: { name: p }
            sinks:
              - name: "orders: all"
                database: "weird: name #1"
                transform: f0
                enrichment: sql
                destination: { type: kafka, hosts: "localhost:9092", topic: "on" }
            functions:
              - name: sql
                type: enrichment
                code: "  SELECT 1\\n\\n\\tFROM t WHERE id = ANY($1)\\n\\n\\n"

            """
        for (index, text) in descriptions.enumerated() {
            let escaped = text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\t", with: "\\t")
            yaml += "  - { name: f\(index), type: path, path: record, description: \"\(escaped)\" }\n"
        }
        let run = try SequinImportRun.text(yaml, environment)
        #expect(run.status == 0, "\(run.stderr)")
        let doc = try run.document()
        #expect(doc["database"]["name"].string == "weird: name #1")
        #expect(doc["sinks"][0]["name"].string == "orders: all")
        #expect(doc["sinks"][0]["destination"]["topic"].string == "on")
        #expect(doc["functions"][0]["code"].string == "  SELECT 1\n\n\tFROM t WHERE id = ANY($1)\n\n\n")
        #expect(try run.text().contains("code: |2+\n"), "multi-line code is a literal block")
        // Only f0 is used by the sink; the others are listed as unused, so check the one written.
        #expect(doc["functions"][1]["description"].string == "yes")
        #expect(doc["functions"].count == 2)

        // Every description, each function used by a sink of its own.
        let sinks = descriptions.indices.dropFirst().map { index in
            "  - { name: s\(index), database: \"weird: name #1\", transform: f\(index), destination: { type: kafka, hosts: \"localhost:9092\", topic: t } }\n"
        }.joined()
        let everyUsed = yaml.replacingOccurrences(of: "sinks:\n", with: "sinks:\n" + sinks)
        let all = try SequinImportRun.text(everyUsed, environment)
        #expect(all.status == 0, "\(all.stderr)")
        let written = try all.document()["functions"]
        for (index, text) in descriptions.enumerated() {
            let function = (0..<written.count).map { written[$0] }.first { $0["name"].string == "f\(index)" }
            #expect(function?["description"].string == text, "description \(index): \(text)")
        }
    }

    /// What `sequin config export` writes: ids, health, nulls and defaults. Only real settings get a line.
    @Test func anExportImportsWithoutNoise() throws {
        let environment = try TestEnvironment.current()
        let run = try SequinImportRun.text("""
            databases:
              - id: "3f1c"
                name: "app"
                username: "postgres"
                password: "**********"
                hostname: "db.internal"
                database: "app"
                slot: { name: "sequin_slot" }
                publication: { name: "sequin_pub" }
                port: 5432
                pool_size: 10
                ssl: false
                ipv6: false
                use_local_tunnel: false
            functions:
              - { name: "record-only", description: null, type: "path", path: "record" }
            sinks:
              - id: "9a2b"
                name: "orders"
                database: "app"
                status: "active"
                actions: ["insert", "update", "delete"]
                destination: { type: "kafka", hosts: "kafka:9092", topic: "orders", tls: false, compression: "none" }
                batch_size: 1
                filter: "none"
                transform: "record-only"
                routing: "none"
                enrichment: "none"
                timestamp_format: "iso8601"
                active_backfills: []
                max_retry_count: null
                load_shedding_policy: "pause_on_full"
                message_grouping: true
                annotations: {}
                source: { include_schemas: null, exclude_schemas: null, include_tables: null, exclude_tables: null }
                tables: [{ name: "public.orders", group_column_names: [] }]
                health: { name: "Sink", status: "healthy", checks: [] }
            """, environment)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderrLines == [
            "databases[0].password: copied, but it looks masked by a Sequin export — write the real value or a ${VAR} reference",
            "databases[0].pool_size: skipped — Sluice has no connection pool: it opens one replication connection and one for queries",
        ])
        let sink = try run.document()["sinks"][0]
        #expect(!sink["source"].exists)
        #expect(sink["tables"][0].keys == ["name"])
        #expect(sink["destination"]["batch_size"].int == 1)
        #expect(sink["enrichment"].string == "none")
        #expect(try run.document()["functions"][0].keys == ["name", "path", "type"])
    }

    @Test func aURLWithoutUserTakesSequinsDefaults() throws {
        let environment = try TestEnvironment.current()
        let run = try SequinImportRun.text("""
            databases:
              - { name: "app", url: "postgres://db.internal:5432/app", slot: { name: s }, publication: { name: p } }
            sinks:
              - { name: "orders", database: "app", destination: { type: "kafka", hosts: "kafka:9092", topic: "orders" } }
            """, environment)
        #expect(run.status == 0, "\(run.stderr)")
        let database = try run.document()["database"]
        #expect(database["url"].string == "postgres://db.internal:5432/app")
        #expect(database["user"].string == "postgres")
        #expect(database["password"].string == "postgres")
    }

    @Test func existingFilesAreReplacedOnlyWithForce() throws {
        let environment = try TestEnvironment.current()
        let first = try SequinImportRun.sample("kafka-sasl-tls.yml", environment)
        #expect(first.status == 0)
        let from = first.path("kafka-sasl-tls.yml"), out = first.path("sluice.yml")
        try "keep me\n".write(toFile: out, atomically: true, encoding: .utf8)
        let again = try runCommand(environment.sluiceBinary, ["import-sequin", "--from", from, "--out", out])
        #expect(again.status == 1)
        #expect(again.stderr == "\(out): exists — give --force to replace it, or choose another --out\n")
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "keep me\n")
        let forced = try runCommand(environment.sluiceBinary, ["import-sequin", "--from", from, "--out", out, "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try String(contentsOfFile: out, encoding: .utf8).contains("name: audit-logging"))
    }
}
