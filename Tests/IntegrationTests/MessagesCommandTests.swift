import Foundation
import Testing

/// `sluice messages` against a running instance (through its API) and a stopped one (the state file).
@Suite(.serialized)
struct MessagesCommandTests {
    /// With `state.store: postgres` a stopped instance's messages are read from PostgreSQL.
    @Test func aStoppedInstanceWithTheSharedStateIsReadFromPostgreSQL() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let topic = fixture.topic("cli-pg")
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL)")
        let schema = TestEnvironment.uniqueName("cli")
        let config = fixture.config(tables: ["public.orders"], sinks: [.init(name: "orders", topic: topic)])
            .replacingOccurrences(of: "state: { path: \(fixture.statePath) }",
                                  with: "state: { path: \(fixture.statePath), store: postgres, schema: \(schema) }")
        let sluice = try fixture.startSluice(config: config)
        try db.execute("INSERT INTO public.orders VALUES (1, 'paid'), (2, 'paid')")
        _ = try topic.waitForMessages(2, timeout: 60)
        Thread.sleep(forTimeInterval: 1.5)  // the delivered list is saved once a second
        #expect(sluice.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: fixture.statePath), "no state file: the state is in PostgreSQL")

        let listing = try runCommand(fixture.environment.sluiceBinary, ["messages", "--config", sluice.configURL.path])
        #expect(listing.status == 0, "\(listing)")
        #expect(listing.stderr.contains("showing PostgreSQL schema \(schema) (slot \(fixture.slot))"), "\(listing.stderr)")
        #expect(listing.stdout.split(separator: "\n").filter { $0.contains("delivered") }.count == 2, "\(listing.stdout)")
    }

    @Test func listsRetriesAndCancelsThroughTheRunningInstanceThenReadsTheStateFileWhenStopped() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let topic = fixture.topic("cli")
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL)")
        let port = try freePort()
        let picky = FunctionDeclaration(name: "picky", type: "filter", code: """
            function filter(action, record, changes, metadata)
              if record.status == "broken" then error("cannot judge a broken order") end
              return true
            end
            """)
        let config = fixture.config(tables: ["public.orders"], sinks: [.init(name: "orders", topic: topic, extra: "    filter: picky\n")])
            + "console: { listen: 127.0.0.1:\(port), token: cli-token }\n" + FunctionDeclaration.yaml([picky])
        let sluice = try fixture.startSluice(config: config)
        let binary = fixture.environment.sluiceBinary
        let path = sluice.configURL.path

        try db.execute("INSERT INTO public.orders VALUES (1, 'paid'), (2, 'broken')")
        _ = try topic.waitForMessages(1, timeout: 60)

        // The table: the failing message with its error, the delivered one with its offset.
        var listing: (status: Int32, stdout: String, stderr: String) = (0, "", "")
        #expect(try eventually(timeout: 20, every: 0.5) {
            listing = try runCommand(binary, ["messages", "--config", path])
            return listing.stdout.contains("failing") && listing.stdout.contains("delivered")
        }, "\(listing)")
        let lines = listing.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("SINK    STATE") == true, "\(listing.stdout)")
        let failingLine = try #require(lines.first { $0.contains("failing") })
        #expect(failingLine.contains("functions[0].code:2: cannot judge a broken order"))
        #expect(lines.contains { $0.contains("delivered") && $0.contains("partition 0 offset 0") })

        // JSON: the API's objects, per sink.
        let json = try runCommand(binary, ["messages", "--config", path, "--state", "failing", "--json"])
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        let failing = try #require((parsed.first?["messages"] as? [[String: Any]])?.first)
        #expect(failing["state"] as? String == "failing")
        #expect(failing["key"] as? String == "2")
        #expect((failing["deliver_count"] as? Int ?? 0) >= 1)
        let id = try #require(failing["id"] as? String)

        let retried = try runCommand(binary, ["messages", "retry", id, "--config", path])
        #expect(retried.status == 0 && retried.stdout == "orders \(id): retrying now\n", "\(retried)")
        // Let the retry's attempt end (it fails again), then give the message up.
        var cancelled: (status: Int32, stdout: String, stderr: String) = (0, "", "")
        #expect(try eventually(timeout: 20, every: 0.5) {
            cancelled = try runCommand(binary, ["messages", "cancel", id, "--config", path])
            return cancelled.status == 0
        }, "\(cancelled)")
        #expect(cancelled.stdout == "orders \(id): cancelled (reason user); its group moves on\n")
        let again = try runCommand(binary, ["messages", "cancel", id, "--config", path])
        #expect(again.status == 1 && again.stderr == "message \(id) is cancelled; only failing messages can be cancelled\n", "\(again)")

        // The cancelled row's group moves on: its next change is delivered.
        try db.execute("UPDATE public.orders SET status = 'fixed' WHERE id = 2")
        let arrived = try topic.waitForMessages(2, timeout: 60)
        #expect(arrived.map { $0.key ?? "" } == ["1", "2"], "log:\n\(sluice.log)")

        // Stopped: the state file answers for failing, delivered and cancelled, and says what it cannot know.
        #expect(sluice.stop() == 0)
        let offline = try runCommand(binary, ["messages", "--config", path])
        #expect(offline.status == 0)
        #expect(offline.stderr.contains("sluice is not running") && offline.stderr.contains("in-flight and waiting messages are unknown"))
        #expect(offline.stdout.split(separator: "\n").contains { $0.contains("cancelled") && $0.contains(id) && $0.contains("user") },
                "\(offline.stdout)")
        #expect(offline.stdout.split(separator: "\n").filter { $0.contains("delivered") }.count == 2, "\(offline.stdout)")
        let offlineRetry = try runCommand(binary, ["messages", "retry", id, "--config", path])
        #expect(offlineRetry.status == 1 && offlineRetry.stderr.contains("start it to retry messages"))
    }
}

/// The console refuses to serve other machines without a token.
@Suite struct ConsoleExposureTests {
    @Test func aConsoleOnAllInterfacesWithoutATokenRefusesToStart() throws {
        let environment = try TestEnvironment.current()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("open"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("sluice.yml").path
        try """
            database: { url: "postgres://nobody@127.0.0.1:1/none" }
            console: { listen: "0.0.0.0:7376" }
            sinks:
              - name: s
                destination: { type: kafka, hosts: "127.0.0.1:1", topic: orders }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try runCommand(environment.sluiceBinary, ["run", "--config", path])
        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("console.token: is empty while console.listen (0.0.0.0:7376) is reachable from other machines"),
                "\(result)")
    }
}
