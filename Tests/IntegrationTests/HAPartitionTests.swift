import Foundation
import Testing

/// The leader cut off from PostgreSQL by a real network partition: it runs in a network namespace of
/// the test's own, reaching PostgreSQL and the broker over two veth links; the PostgreSQL link goes
/// down. Tests run as root, as in CI.
@Suite(.serialized)
struct HAPartitionTests {
    /// A network namespace with one veth link per forwarded service. Inside the namespace, each service's
    /// port on 127.0.0.1 leads (socat) over its link to the host side, where another socat forwards it to
    /// the real server on the host's 127.0.0.1 — so the same sluice.yml works inside and outside.
    final class Namespace {
        let name: String
        private(set) var links: [String: String] = [:]
        private var forwarders: [Process] = []

        init() throws {
            name = "sl" + String(UUID().uuidString.lowercased().prefix(8))
            try Self.ip(["netns", "add", name])
            try Self.ip(["netns", "exec", name, "ip", "link", "set", "lo", "up"])
        }

        static func ip(_ arguments: [String]) throws {
            let result = try runCommand("/usr/sbin/ip", arguments)
            guard result.status == 0 else { throw TestSetupError("ip \(arguments.joined(separator: " ")): \(result.stderr)") }
        }

        /// Forwards 127.0.0.1:`port` inside the namespace to 127.0.0.1:`port` on the host over a link of
        /// its own (10.201.`subnet`.0/30), named `service`.
        func forward(_ service: String, port: Int, subnet: Int) throws {
            let host = "vh\(name.suffix(6))\(subnet)", inner = "vn\(name.suffix(6))\(subnet)"
            let hostAddress = "10.201.\(subnet).1", innerAddress = "10.201.\(subnet).2"
            try Self.ip(["link", "add", host, "type", "veth", "peer", "name", inner])
            try Self.ip(["link", "set", inner, "netns", name])
            try Self.ip(["addr", "add", "\(hostAddress)/30", "dev", host])
            try Self.ip(["link", "set", host, "up"])
            try Self.ip(["netns", "exec", name, "ip", "addr", "add", "\(innerAddress)/30", "dev", inner])
            try Self.ip(["netns", "exec", name, "ip", "link", "set", inner, "up"])
            links[service] = host
            try start(["/usr/bin/socat", "TCP-LISTEN:\(port),bind=\(hostAddress),fork,reuseaddr", "TCP:127.0.0.1:\(port)"])
            try start(["/usr/sbin/ip", "netns", "exec", name, "/usr/bin/socat", "TCP-LISTEN:\(port),bind=127.0.0.1,fork,reuseaddr",
                       "TCP:\(hostAddress):\(port)"])
        }

        private func start(_ command: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: command[0])
            process.arguments = Array(command.dropFirst())
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try launch(process)
            forwarders.append(process)
            Thread.sleep(forTimeInterval: 0.2)
            guard process.isRunning else { throw TestSetupError("\(command.joined(separator: " ")) did not start") }
        }

        /// Takes a link down: packets stop both ways, nothing is reset (a partition, not a refusal).
        func cut(_ service: String) throws { try Self.ip(["link", "set", links[service]!, "down"]) }

        func restore(_ service: String) throws { try Self.ip(["link", "set", links[service]!, "up"]) }

        func isUp(_ service: String) throws -> Bool {
            try runCommand("/usr/sbin/ip", ["-o", "link", "show", links[service]!]).stdout.contains("state UP")
        }

        var wrapper: [String] { ["/usr/sbin/ip", "netns", "exec", name] }

        deinit {
            for process in forwarders where process.isRunning { kill(process.processIdentifier, SIGKILL) }
            for link in links.values { _ = try? runCommand("/usr/sbin/ip", ["link", "delete", link]) }
            _ = try? runCommand("/usr/sbin/ip", ["netns", "delete", name])
        }
    }

    @Test func aLeaderCutOffFromPostgreSQLStopsAndTheStandbyTakesOverWithinTheLease() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, seq bigint NOT NULL)")
        try db.execute("ALTER TABLE public.t REPLICA IDENTITY FULL")
        let topic = fixture.topic("partition")
        let postgresPort = try #require(URLComponents(string: fixture.environment.postgresURL)?.port)
        let brokerPort = try #require(fixture.environment.kafkaHosts.split(separator: ":").last.flatMap { Int($0) })
        let namespace = try Namespace()
        try namespace.forward("postgres", port: postgresPort, subnet: 1)
        try namespace.forward("kafka", port: brokerPort, subnet: 2)

        let cluster = HACluster(fixture: fixture, tables: ["public.t"], sinks: """
              - name: s
                destination: { type: kafka, hosts: "\(topic.hosts)", topic: \(topic.name) }
            """)
        let a = try cluster.start("a", wrapper: namespace.wrapper)
        defer { a.process.stop(timeout: 10) }
        try #require(eventually(timeout: 30) { a.log.contains("leading the slot") && a.log.contains("streaming") },
                     "a (in the namespace) leads; log:\n\(a.log)")
        let b = try cluster.start("b")
        defer { b.process.stop() }
        try #require(b.waitForRole("standby", timeout: 10), "log:\n\(b.log)")

        let writer = LoadWriter(url: db.url, table: "public.t", keys: 20, pause: 0.005)
        Thread.sleep(forTimeInterval: 2)
        try namespace.cut("postgres")
        let cutAt = Date()
        #expect(try !namespace.isUp("postgres"), "the link to PostgreSQL is down")
        // Both from the cut: when a stopped sending (its log) and when b led (its status).
        var stopped: Double?, tookOver: Double?
        _ = eventually(timeout: HighAvailabilityTests.leaseSeconds + 5, every: 0.05) {
            if stopped == nil, a.log.contains("lost the lease") { stopped = Date().timeIntervalSince(cutAt) }
            if tookOver == nil, b.role == "leader" { tookOver = Date().timeIntervalSince(cutAt) }
            return stopped != nil && tookOver != nil
        }
        let lease = HighAvailabilityTests.leaseSeconds
        #expect(tookOver.map { $0 <= lease + 5 } == true, "b took over within lease + 5 s (\(tookOver ?? -1)); log:\n\(b.log)")
        #expect(stopped.map { $0 <= lease + 0.2 } == true, "a stopped sending within its lease (\(stopped ?? -1)); log:\n\(a.log)")
        #expect(a.process.process.isRunning, "a keeps running, as a standby waiting for PostgreSQL")
        #expect(try cluster.leaseRow()?.instance == "b")

        // The link comes back: a stands by behind b and does not take the slot back.
        try namespace.restore("postgres")
        #expect(eventually(timeout: 30) { a.log.contains("stepped down") && a.log.contains("leader=b") },
                "a stands by behind b once PostgreSQL answers again; log:\n\(a.log)")
        let aLog = a.log
        Thread.sleep(forTimeInterval: HighAvailabilityTests.leaseSeconds * 2)
        let holder = try cluster.leaseRow()?.instance
        #expect(b.role == "leader" && holder == "b")

        let events = try writer.stop()
        _ = try? topic.waitForMessages(events.count, timeout: 90)
        let check = OrderCheck(expected: events, messages: try topic.messages())
        #expect(check.missing.isEmpty, "\(check.missing.count) of \(events.count) missing")
        #expect(check.outOfOrder.isEmpty, "\(check.outOfOrder.prefix(5))")
        #expect(!a.log.dropFirst(aLog.count).contains("leading the slot"), "a did not lead again")
        print("HA partition: a stopped \(String(format: "%.2f", stopped ?? -1)) s and b took over \(String(format: "%.2f", tookOver ?? -1)) s after the cut; \(events.count) changes, \(check.duplicates) duplicates")
    }
}
