import Foundation
import KafkaMock
import KafkaSink
import Testing

/// The console in a real browser: Tests/Browser/console_flow.py drives chromium through Playwright
/// while this test controls Kafka and checks the outcome through the API and a consumer.
@Suite(.serialized)
struct ConsoleBrowserTests {
    /// Playwright's python and Debian's chromium, which scripts/test exports; missing is a failure.
    static func browserTools() throws -> (python: String, chromium: String) {
        let environment = ProcessInfo.processInfo.environment
        func required(_ name: String) throws -> String {
            guard let path = environment[name], FileManager.default.isExecutableFile(atPath: path) else {
                Issue.record("\(name)=\(environment[name] ?? "") is not an executable: run the tests through scripts/test")
                throw TestSetupError("\(name) is not set")
            }
            return path
        }
        return (try required("SLUICE_PYTHON"), try required("SLUICE_CHROMIUM"))
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func aUserRetriesAFailingMessageFromTheBrowserAndSeesItDelivered() throws {
        let tools = try Self.browserTools()
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("browser"))
        try cluster.createTopic(topic.name, partitions: 1)
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL)")
        let token = "console-" + UUID().uuidString.lowercased()
        let config = fixture.config(tables: ["public.orders"], sinks: [.init(name: "orders", topic: topic, extra: "    park_after: 1s\n")],
                                    hosts: cluster.bootstrapServers)
        let (sluice, console) = try fixture.startSluiceWithConsole(config: config, token: token)

        // Kafka is unreachable for the partition (no leader): every attempt times out.
        try cluster.setLeader(topic: topic.name, partition: 0, broker: -1)
        try db.execute("INSERT INTO public.orders VALUES (1, 'alice', 42.50)")
        let failing = try #require(try console.waitForMessage("orders", state: "failing", timeout: 90) { ($0.int("deliver_count") ?? 0) >= 3 },
                                   "log:\n\(sluice.log)")
        let id = try #require(failing.string("id"))

        let shots = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("screenshots"))
        try FileManager.default.createDirectory(at: shots, withIntermediateDirectories: true)
        let failingShot = shots.appendingPathComponent("console-failing.png"), deliveredShot = shots.appendingPathComponent("console-delivered.png")
        let browser = try BrowserScript(python: tools.python, script: Self.repository.appendingPathComponent("Tests/Browser/console_flow.py").path,
                                        arguments: ["--url", console.baseURL, "--sink", "orders", "--message", id, "--error", "Message timed out",
                                                    "--min-deliver-count", "3", "--chromium", tools.chromium,
                                                    "--failing-screenshot", failingShot.path, "--delivered-screenshot", deliveredShot.path],
                                        environment: ["SLUICE_CONSOLE_TOKEN": token])
        defer { browser.stop() }
        #expect(browser.waitForLine("READY", timeout: 120), "the browser did not reach the failing message:\n\(browser.output)")

        // Kafka comes back at a moment the message is failing and its own next attempt is a while away,
        // so it is the click that delivers it.
        #expect(try eventually(timeout: 30, every: 0.1) {
            guard let message = try console.messages("orders", state: "failing").first(where: { $0.string("id") == id }),
                  let next = consoleDate(message.string("next_attempt_at")) else { return false }
            return next.timeIntervalSinceNow > 3
        }, "the message stayed failing")
        let failedAttempts = try console.message("orders", id: id).int("deliver_count") ?? 0
        try cluster.setLeader(topic: topic.name, partition: 0, broker: 1)
        browser.send("go")
        #expect(browser.waitForLine("DELIVERED", timeout: 60), "the browser did not see the message delivered:\n\(browser.output)")
        #expect(browser.waitForExit(timeout: 30) == 0, "\(browser.output)")

        for shot in [failingShot, deliveredShot] {
            let bytes = try Data(contentsOf: shot)
            #expect(bytes.count > 10_000 && bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), "\(shot.path): \(bytes.count) bytes")
        }
        let delivered = try console.message("orders", id: id)
        #expect(delivered.string("state") == "delivered")
        #expect(delivered.int("deliver_count") == failedAttempts + 1, "one attempt, the retry: \(delivered)")
        let arrived = try topic.waitForMessages(1, timeout: 30)
        #expect(arrived.map(\.key) == ["1"] && arrived.first?.payload.contains("\"amount\":42.50") == true)

        if ProcessInfo.processInfo.environment["SLUICE_SAVE_SCREENSHOTS"] == "1" {
            let docs = Self.repository.appendingPathComponent("docs")
            try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
            for shot in [failingShot, deliveredShot] {
                let target = docs.appendingPathComponent(shot.lastPathComponent)
                try? FileManager.default.removeItem(at: target)
                try FileManager.default.copyItem(at: shot, to: target)
            }
        }
        #expect(sluice.stop() == 0)
    }
}

/// A script run with pipes: its stdout read line by line as it comes, stderr kept, stdin written.
final class BrowserScript: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe()
    private let lock = NSLock()
    private var printed = ["", ""]
    /// Pipes read to their end (the script exited or closed them).
    private var ended = 0

    init(python: String, script: String, arguments: [String], environment: [String: String]) throws {
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipes = [Pipe(), Pipe()]
        process.standardInput = input
        process.standardOutput = pipes[0]
        process.standardError = pipes[1]
        try launch(process)
        for (index, pipe) in pipes.enumerated() {
            Thread { [weak self] in
                let handle = pipe.fileHandleForReading
                while true {
                    let data = handle.availableData
                    guard let self else { return }
                    self.lock.lock()
                    if data.isEmpty {
                        self.ended += 1
                        self.lock.unlock()
                        return
                    }
                    self.printed[index] += String(decoding: data, as: UTF8.self)
                    self.lock.unlock()
                }
            }.start()
        }
    }

    /// What the script printed so far, stdout then stderr.
    var output: String {
        lock.lock()
        defer { lock.unlock() }
        return "stdout:\n\(printed[0])\nstderr:\n\(printed[1])"
    }

    private var lines: (printed: [Substring], ended: Bool) {
        lock.lock()
        defer { lock.unlock() }
        return (printed[0].split(separator: "\n"), ended == 2)
    }

    /// Waits until stdout has this line; false if the script ended or the time ran out first.
    func waitForLine(_ line: String, timeout: Double) -> Bool {
        _ = eventually(timeout: timeout, every: 0.1) { lines.printed.contains { $0 == line } || lines.ended }
        return lines.printed.contains { $0 == line }
    }

    func send(_ line: String) {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    /// The exit status, or nil if it did not end in time.
    func waitForExit(timeout: Double) -> Int32? {
        guard eventually(timeout: timeout, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Ends the script (its browser goes with it) if it still runs.
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        if !eventually(timeout: 10, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
