import Foundation
import KafkaMock
import KafkaSink
import SluiceCore
import Testing

/// The console's JSON API and /metrics against a running sluice: what a user (or their script, or
/// Prometheus) sees while messages fail, are retried, cancelled, refused as too large, and flow.
@Suite(.serialized)
struct ConsoleAPITests {
    static func token() -> String { "console-" + UUID().uuidString.lowercased() }

    /// Every field of a listed message, null where it does not apply.
    static let listedFields: Set<String> = ["id", "state", "table", "action", "record_pks", "key", "topic", "commit_lsn", "commit_idx",
                                            "deliver_count", "last_error", "last_attempt_at", "next_attempt_at", "size_bytes",
                                            "partition", "offset", "reason"]

    @Test func failingMessageIsRetriedNowAndDelivered() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("retry"))
        try cluster.createTopic(topic.name, partitions: 1)
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL)")
        let config = fixture.config(tables: ["public.orders"], sinks: [.init(name: "orders", topic: topic, extra: "    park_after: 1s\n")],
                                    hosts: cluster.bootstrapServers)
        let (sluice, console) = try fixture.startSluiceWithConsole(config: config, token: Self.token())

        // The partition loses its leader (its broker is gone): every attempt times out. A leader-less partition
        // rather than a stopped broker, so that the way back is not librdkafka's reconnect backoff (up to 10 s).
        try cluster.setLeader(topic: topic.name, partition: 0, broker: -1)
        try db.execute("INSERT INTO public.orders VALUES (1, 'new')")
        // By the fourth failed attempt the message's own backoff is 6.4-8 s: a prompt delivery is the retry's doing.
        let failing = try #require(try console.waitForMessage("orders", state: "failing", timeout: 90) { ($0.int("deliver_count") ?? 0) >= 4 },
                                   "log:\n\(sluice.log)")
        let id = try #require(failing.string("id"))
        #expect(Set(failing.keys) == Self.listedFields)
        #expect(failing.string("table") == "public.orders")
        #expect(failing.string("action") == "insert")
        #expect(failing["record_pks"] as? [String] == ["1"])
        #expect(failing.string("key") == "1")
        #expect(failing.string("topic") == topic.name)
        #expect(failing.string("last_error")?.contains("Message timed out") == true, "librdkafka's error: \(failing)")
        #expect(failing.isNull("partition") && failing.isNull("offset") && failing.isNull("reason"))
        #expect(consoleDate(failing.string("last_attempt_at")) != nil)
        let nextAttempt = try #require(consoleDate(failing.string("next_attempt_at")), "\(failing)")
        #expect(try console.sinkStatus("orders")["counts"].flatMap { ($0 as? [String: Any])?.int("failing") } == 1)

        let detail = try console.message("orders", id: id)
        let errors = detail["errors"] as? [[String: Any]] ?? []
        #expect(errors.count >= 4 && errors.count <= 20, "\(detail)")
        #expect(errors.allSatisfy { ($0["error"] as? String)?.contains("Message timed out") == true })
        let times = errors.compactMap { consoleDate($0["at"] as? String) }
        #expect(times.count == errors.count && times == times.sorted(by: >), "newest first: \(errors)")
        #expect(((detail["value"] as? [String: Any])?["record"] as? [String: Any])?.string("status") == "new")

        try cluster.setLeader(topic: topic.name, partition: 0, broker: 1)
        let retried = try console.post("/api/sinks/orders/messages/\(id)/retry")
        #expect(retried.status == 202, "\(retried)")
        #expect(retried.json?.string("id") == id)

        let delivered = try console.waitForMessage("orders", state: "delivered", timeout: 30) { $0.string("id") == id }
        let deliveredAt = Date()
        let message = try #require(delivered, "log:\n\(sluice.log)")
        #expect(deliveredAt < nextAttempt, "delivered \(deliveredAt) before its own next attempt \(nextAttempt) would have begun")
        #expect(message.int("partition") == 0)
        #expect(message.int("offset") == 0)
        #expect(message.isNull("last_error") && message.isNull("next_attempt_at"))
        #expect(message.int("deliver_count") == (failing.int("deliver_count") ?? 0) + 1, "one more attempt: the retry")
        #expect(try console.message("orders", id: id).string("state") == "delivered")
        #expect(try console.messages("orders", state: "failing").isEmpty)

        let arrived = try topic.waitForMessages(1, timeout: 30)
        #expect(arrived.map(\.key) == ["1"])
        #expect(arrived.first?.record["status"] as? String == "new")
        #expect(sluice.stop() == 0)
    }

    @Test func cancellingAFailingMessageLetsItsGroupMoveOn() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let topic = fixture.topic("cancel")
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, note text NOT NULL)")
        let shape = FunctionDeclaration(name: "shape", type: "transform", code: """
            function transform(action, record, changes, metadata)
              if record.note == "poison" then error("poison is not allowed") end
              return { id = record.id, note = record.note, action = action }
            end
            """)
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic, extra: "    transform: shape\n")])
            + FunctionDeclaration.yaml([shape])
        let (sluice, console) = try fixture.startSluiceWithConsole(config: config, token: Self.token())

        try db.execute("INSERT INTO public.t VALUES (1, 'poison'), (2, 'fine')")
        try db.execute("UPDATE public.t SET note = 'cured' WHERE id = 1")
        let afterWrites = try db.currentWAL()
        #expect(try topic.waitForMessages(1, timeout: 60).map { $0.json["id"] as? Int } == [2], "log:\n\(sluice.log)")

        // Row 1's insert fails in the function; its update waits behind it in the ledger.
        let head = try #require(try console.waitForMessage("s", state: "failing") { $0.string("action") == "insert" })
        #expect(head["record_pks"] as? [String] == ["1"])
        #expect(head.string("last_error") == "functions[0].code:2: poison is not allowed")
        let behind = try #require(try console.waitForMessage("s", state: "failing", timeout: 10) { $0.string("action") == "update" })
        #expect(behind["record_pks"] as? [String] == ["1"] && behind.int("deliver_count") == 0 && behind.isNull("last_error"), "\(behind)")
        let headID = try #require(head.string("id")), behindID = try #require(behind.string("id"))

        let cancelled = try console.post("/api/sinks/s/messages/\(headID)/cancel")
        #expect(cancelled.status == 200, "\(cancelled)")
        #expect(cancelled.json?.string("state") == "cancelled")
        #expect(cancelled.json?.string("reason") == "user")
        let detail = try console.message("s", id: headID)
        #expect(detail.string("state") == "cancelled" && detail.string("reason") == "user", "\(detail)")
        #expect(try console.messages("s", state: "cancelled").map { $0.string("id") } == [headID])

        // The group moves on: the update behind it arrives, and the slot passes the row's changes.
        let all = try topic.waitForMessages(2, timeout: 60)
        #expect(all.map { "\($0.json["id"] ?? ""):\($0.json["note"] ?? "")" }.sorted() == ["1:cured", "2:fine"], "log:\n\(sluice.log)")
        #expect(try console.waitForMessage("s", state: "delivered", timeout: 20) { $0.string("id") == behindID } != nil)
        #expect(try eventually(timeout: 30, every: 0.5) {
            let slot = try console.status()["slot"] as? [String: Any]
            return (slot?.string("confirmed_flush_lsn").flatMap { LSN($0) } ?? .zero) >= afterWrites
        }, "confirmed_flush_lsn passes the cancelled message: \((try? console.get("/api/status"))?.body ?? "")")
        let counts = try console.sinkStatus("s")["counts"] as? [String: Any] ?? [:]
        #expect(counts.int("failing") == 0 && counts.int("cancelled_total") == 1, "\(counts)")

        // Only failing messages can be retried or cancelled.
        for (id, state) in [(behindID, "delivered"), (headID, "cancelled")] {
            for action in ["retry", "cancel"] {
                let refused = try console.post("/api/sinks/s/messages/\(id)/\(action)")
                #expect(refused.status == 409, "\(action) \(state): \(refused)")
                #expect(refused.error?.contains("is \(state); only failing messages can be") == true, "\(refused)")
            }
        }
        #expect(sluice.stop() == 0)
    }

    @Test func tooLargeRowShowsAsCancelledTooLarge() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let topic = fixture.topic("large")
        try db.execute("CREATE TABLE public.docs (id int PRIMARY KEY, body text)")
        try db.execute("ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL")
        let config = fixture.config(tables: ["public.docs"], sinks: [.init(name: "docs", topic: topic)])
        let (sluice, console) = try fixture.startSluiceWithConsole(config: config, token: Self.token())

        try db.execute("INSERT INTO public.docs VALUES (1, repeat('x', 2000000))")
        try db.execute("UPDATE public.docs SET body = 'small' WHERE id = 1")
        let cancelled = try #require(try console.waitForMessage("docs", state: "cancelled", timeout: 60), "log:\n\(sluice.log)")
        #expect(Set(cancelled.keys) == Self.listedFields)
        #expect(cancelled.string("reason") == "too_large")
        #expect(cancelled.string("action") == "insert")
        #expect(cancelled["record_pks"] as? [String] == ["1"])
        #expect((cancelled.int("size_bytes") ?? 0) > 2_000_000, "\(cancelled)")
        #expect(cancelled.isNull("partition") && cancelled.isNull("offset") && cancelled.isNull("next_attempt_at"))
        let id = try #require(cancelled.string("id"))
        #expect(try console.message("docs", id: id).string("state") == "cancelled")

        // Its group goes on, and the sink counts it.
        #expect(try topic.waitForMessages(1, timeout: 30).first?.record["body"] as? String == "small")
        let counts = try console.sinkStatus("docs")["counts"] as? [String: Any] ?? [:]
        #expect(counts.int("cancelled_total") == 1 && counts.int("failing") == 0, "\(counts)")
        let retry = try console.post("/api/sinks/docs/messages/\(id)/retry")
        #expect(retry.status == 409 && retry.error?.contains("cancelled") == true, "\(retry)")
        #expect(try console.metrics().value("sluice_messages_cancelled_total", ["sink": "docs", "reason": "too_large"]) == 1)
        #expect(sluice.stop() == 0)
    }

    @Test func refusesWithoutTheTokenAnswersErrorsAsJSONAndNeverShowsSecrets() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let topic = fixture.topic("auth")
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
        // Trust authentication ignores the password; Sluice must still never show it.
        let password = "hunter2-secret", token = Self.token()
        let withPassword = db.url.replacingOccurrences(of: "postgres@", with: "postgres:\(password)@")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)])
            .replacingOccurrences(of: "url: \(db.url)", with: "url: \(withPassword)")
        #expect(config.contains(password))
        let (sluice, console) = try fixture.startSluiceWithConsole(config: config, token: token)
        for id in 1...3 { try db.execute("INSERT INTO public.t VALUES ($1)", [String(id)]) }
        let delivered = try #require(try console.waitForMessage("s", state: "delivered") { $0.string("key") == "3" })
        let id = try #require(delivered.string("id"))
        var answers: [ConsoleClient.Answer] = []

        // No token, a wrong one, a malformed header: 401 with a JSON error, for the API and /metrics.
        for path in ["/api/status", "/api/sinks/s/messages", "/api/sinks/s/messages/\(id)", "/metrics"] {
            for auth: ConsoleClient.Auth in [.none, .bearer("wrong-token"), .header(token)] {
                let refused = try console.get(path, auth: auth)
                #expect(refused.status == 401 && refused.error?.isEmpty == false, "\(path) \(auth): \(refused)")
                answers.append(refused)
            }
        }
        for auth: ConsoleClient.Auth in [.none, .bearer(token + "x")] {
            let refused = try console.post("/api/sinks/s/messages/\(id)/retry", auth: auth)
            #expect(refused.status == 401, "\(refused)")
        }
        #expect(try console.get("/healthz", auth: .none).status == 200)
        #expect(try eventually(timeout: 20, every: 0.5) { try console.get("/readyz", auth: .none).status == 200 })

        // 404 and 400 name what is wrong; every error is {"error": "..."}.
        let wrong: [(String, Int, String)] = [
            ("/api/sinks/nope/messages", 404, "nope"), ("/api/sinks/nope/messages/\(id)", 404, "nope"),
            ("/api/sinks/s/messages/1-0", 404, "1-0"), ("/api/sinks/s/messages/not-an-id", 404, "not-an-id"),
            ("/api/sinks/s/messages?state=parked", 400, "state"), ("/api/sinks/s/messages?limit=0", 400, "limit"),
            ("/api/sinks/s/messages?limit=1001", 400, "limit"), ("/api/sinks/s/messages?limit=ten", 400, "limit"),
            ("/api/nothing-here", 404, "/api/nothing-here"),
        ]
        for (path, status, named) in wrong {
            let answer = try console.get(path)
            #expect(answer.status == status, "\(path): \(answer)")
            #expect(answer.json.map { Array($0.keys) } == ["error"], "\(path): \(answer)")
            #expect(answer.error?.contains(named) == true, "\(path) names \(named): \(answer)")
            #expect(answer.headers["content-type"]?.hasPrefix("application/json") == true)
            answers.append(answer)
        }
        let unknownRetry = try console.post("/api/sinks/s/messages/1-0/retry")
        #expect(unknownRetry.status == 404 && unknownRetry.error != nil, "\(unknownRetry)")
        let unknownSinkCancel = try console.post("/api/sinks/nope/messages/\(id)/cancel")
        #expect(unknownSinkCancel.status == 404 && unknownSinkCancel.error != nil, "\(unknownSinkCancel)")
        answers += [unknownRetry, unknownSinkCancel]

        // limit and state select; the answers that work.
        #expect(try console.messages("s", state: "delivered", limit: 2).count == 2)
        #expect(try console.messages("s", state: "delivered", limit: 1000).count == 3)
        let everything = try console.get("/api/sinks/s/messages")
        #expect((everything.json?["messages"] as? [[String: Any]])?.count == 3, "no state: every state, \(everything)")
        let status = try console.status()
        #expect((status["database"] as? [String: Any])?.string("name") == db.name)
        #expect((status["database"] as? [String: Any])?["connected"] as? Bool == true)
        #expect((status["slot"] as? [String: Any])?.string("name") == fixture.slot)
        let sink = try console.sinkStatus("s")
        #expect(sink.string("topic") == topic.name && (sink["counts"] as? [String: Any])?.int("delivered_total") == 3, "\(sink)")
        let detail = try console.get("/api/sinks/s/messages/\(id)")
        #expect(Set(detail.json.map { Array($0.keys) } ?? []) == Self.listedFields.union(["value", "errors"]), "\(detail)")
        answers += [everything, detail, try console.get("/api/status"), try console.get("/metrics")]

        // Pages: the login form; a wrong token is refused, the right one sets an HttpOnly SameSite=Strict cookie.
        let page = try console.get("/", auth: .none)
        #expect(page.status == 303 && page.headers["location"] == "/login", "\(page)")
        let loginForm = try console.get("/login", auth: .none)
        #expect(loginForm.status == 200 && loginForm.body.contains("id=\"token\""))
        let wrongLogin = try console.post("/login", auth: .none, form: "token=nope")
        #expect(wrongLogin.status == 401)
        let login = try console.post("/login", auth: .none, form: "token=\(token)")
        let cookie = try #require(login.headers["set-cookie"], "\(login)")
        #expect(login.status == 303 && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "\(cookie)")
        let session = String(cookie.split(separator: ";")[0])
        let pages = try ["/", "/sinks/s?state=delivered", "/sinks/s/messages/\(id)"].map { try console.get($0, auth: .cookie(session)) }
        #expect(pages.allSatisfy { $0.status == 200 }, "\(pages)")
        #expect(pages[0].body.contains("data-sink=\"s\""))
        #expect(pages[1].body.contains("data-id=\"\(id)\""))
        answers += [loginForm, wrongLogin, login] + pages

        for answer in answers {
            #expect(!answer.body.contains(password) && !answer.body.contains(token), "a secret in: \(answer)")
            #expect(!answer.headers.values.contains { $0.contains(password) || $0.contains(token) })
        }
        #expect(!sluice.log.contains(password) && !sluice.log.contains(token), "a secret in the log")
        #expect(sluice.stop() == 0)
    }

    @Test func metricsCountWhatFlowedAndTheCommitToAckHistogramGrows() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let topic = fixture.topic("metrics")
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, keep boolean NOT NULL)")
        let keep = FunctionDeclaration(name: "kept", type: "filter", code: """
            function filter(action, record, changes, metadata)
              return record.keep
            end
            """)
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "m", topic: topic, extra: "    filter: kept\n")])
            + FunctionDeclaration.yaml([keep])
        let (sluice, console) = try fixture.startSluiceWithConsole(config: config, token: Self.token())
        let sink = ["sink": "m"]

        try db.execute("INSERT INTO public.t VALUES (1, true), (2, false), (3, true), (4, false), (5, false)")
        #expect(try topic.waitForMessages(2, timeout: 60).count == 2, "log:\n\(sluice.log)")
        var first = try console.metrics()
        #expect(try eventually(timeout: 10) {
            first = try console.metrics()
            return first.value("sluice_commit_to_ack_seconds_count", sink) == 2
        }, "\(first.text)")
        #expect(first.value("sluice_messages_delivered_total", sink) == 2)
        #expect(first.value("sluice_messages_filtered_total", sink) == 3, "\(first.text)")
        #expect((first.value("sluice_changes_read_total") ?? 0) >= 5)
        #expect(first.value("sluice_replication_lag_bytes") != nil, "\(first.text)")
        #expect((first.value("sluice_commit_to_ack_seconds_sum", sink) ?? 0) > 0)
        let buckets = first.all("sluice_commit_to_ack_seconds_bucket", sink)
        #expect(buckets.count >= 2 && buckets.contains { $0.labels["le"] == "+Inf" && $0.value == 2 }, "\(first.text)")
        let counts = buckets.sorted { (Double($0.labels["le"] ?? "") ?? .infinity) < (Double($1.labels["le"] ?? "") ?? .infinity) }.map(\.value)
        #expect(counts == counts.sorted(), "buckets are cumulative: \(counts)")
        #expect((try console.sinkStatus("m")["counts"] as? [String: Any])?.int("filtered_total") == 3)

        for id in 6...15 { try db.execute("INSERT INTO public.t VALUES ($1, $2)", [String(id), id % 2 == 0 ? "true" : "false"]) }
        #expect(try topic.waitForMessages(7, timeout: 60).count == 7)
        var second = first
        #expect(try eventually(timeout: 10) {
            second = try console.metrics()
            return second.value("sluice_commit_to_ack_seconds_count", sink) == 7
        }, "\(second.text)")
        #expect(second.value("sluice_messages_filtered_total", sink) == 8)
        #expect((second.value("sluice_changes_read_total") ?? 0) >= (first.value("sluice_changes_read_total") ?? 0) + 10)
        #expect((second.value("sluice_commit_to_ack_seconds_sum", sink) ?? 0) > (first.value("sluice_commit_to_ack_seconds_sum", sink) ?? 0))
        #expect(second.value("sluice_commit_to_ack_seconds_bucket", sink.merging(["le": "+Inf"]) { $1 }) == 7)
        #expect(sluice.stop() == 0)
    }
}
