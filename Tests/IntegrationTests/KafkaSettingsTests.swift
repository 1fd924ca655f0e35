import Foundation
import KafkaMock
import KafkaSink
import Ledger
import SluiceCore
import Testing

/// Every Kafka setting of a sink against a real broker (noida-db), a TLS proxy (socat) and
/// librdkafka's mock cluster.
@Suite(.serialized)
struct KafkaSettingsTests {
    /// Writes `rows` single-column inserts in one transaction into a new table `public.t`.
    func insertRows(_ db: TestDatabase, _ rows: Int) throws {
        try db.execute("INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, \(rows)) g")
    }

    @Test func everyCompressionCodecRoundTrips() throws {
        let fixture = try Fixture()
        try fixture.database.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        let codecs = KafkaDestination.Compression.allCases
        let topics = codecs.map { fixture.topic($0.rawValue) }
        let sinks = zip(codecs, topics).map { codec, topic in
            Fixture.Sink(name: codec.rawValue, topic: topic, extra: "      compression: \(codec.rawValue)\n")
        }
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.t"], sinks: sinks))
        try insertRows(fixture.database, 200)
        for (codec, topic) in zip(codecs, topics) {
            let messages = try topic.waitForMessages(200)
            #expect(messages.count == 200, "\(codec): log:\n\(sluice.log)")
            #expect(messages.map { $0.record["v"] as? String } == (1...200).map { "row \($0)" }, "\(codec)")
        }
        #expect(sluice.stop() == 0)
    }

    /// Runs sluice over `rows` inserts with these settings and returns its totals line.
    func totals(maxAckPending: Int, batchSize: Int, rows: Int = 2000) throws -> [String: Int] {
        let fixture = try Fixture()
        try fixture.database.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        let topic = fixture.topic("settings")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.t"], sinks: [
            .init(name: "s", topic: topic, extra: "      max_ack_pending: \(maxAckPending)\n      batch_size: \(batchSize)\n")]))
        try insertRows(fixture.database, rows)
        #expect(try topic.waitForMessages(rows).count == rows)
        Thread.sleep(forTimeInterval: 2.5) // librdkafka's statistics come once a second
        #expect(sluice.stop() == 0)
        return sinkTotals(in: sluice.log)["s"] ?? [:]
    }

    @Test func maxAckPendingBoundsMessagesInFlight() throws {
        let peak = try #require(try totals(maxAckPending: 5, batchSize: 200)["in_flight_peak"])
        #expect((1...5).contains(peak), "max_ack_pending 5 bounds the peak; saw \(peak)")
        let free = try #require(try totals(maxAckPending: 10_000, batchSize: 200)["in_flight_peak"])
        #expect(free > 5, "without the bound more are in flight; saw \(free)")
        print("in flight at once: max_ack_pending 5 → \(peak), 10000 → \(free)")
    }

    @Test func batchSizeBoundsProduceBatches() throws {
        let small = try #require(try totals(maxAckPending: 10_000, batchSize: 10)["largest_batch"])
        #expect((1...10).contains(small), "batch_size 10 bounds batches; saw \(small)")
        let large = try #require(try totals(maxAckPending: 10_000, batchSize: 1000)["largest_batch"])
        #expect(large > 10, "with batch_size 1000 batches grow past 10; saw \(large)")
        print("largest batch: batch_size 10 → \(small), 1000 → \(large)")
    }

    @Test func saslPlainCredentialsReachTheBroker() throws {
        let fixture = try Fixture()
        try fixture.database.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        let topic = fixture.topic("sasl")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic, extra: """
                  username: app
                  password: ${SLUICE_TEST_KAFKA_PASSWORD}
                  sasl_mechanism: plain

            """)])
        let sluice = try SluiceProcess(fixture.environment, config: config, extraEnvironment: ["SLUICE_TEST_KAFKA_PASSWORD": "s3cret-plain"])
        #expect(sluice.waitUntilStreaming())
        try insertRows(fixture.database, 3)
        #expect(try topic.waitForMessages(3).count == 3, "log:\n\(sluice.log)")
        #expect(sluice.stop() == 0)
        #expect(!sluice.log.contains("s3cret-plain"), "the password never reaches the log")
    }

    @Test(arguments: ["scram_sha_256", "scram_sha_512"])
    func scramRejectionSurfacesAsAuthenticationError(mechanism: String) throws {
        // noida-db speaks SASL but not SCRAM: the exchange fails, and that must read as an authentication problem.
        let environment = try TestEnvironment.current()
        let result = try runCheck(environment, destination: """
                  hosts: \(environment.kafkaHosts)
                  topic: t
                  username: app
                  password: ${SLUICE_TEST_KAFKA_PASSWORD}
                  sasl_mechanism: \(mechanism)
            """, extraEnvironment: ["SLUICE_TEST_KAFKA_PASSWORD": "s3cret-scram"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("sinks[0].destination.username: Kafka at \(environment.kafkaHosts) refused the credentials (authentication failed)"),
                "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("s3cret-scram") && !result.stdout.contains("s3cret-scram"))
    }

    @Test func tlsWithoutVerificationWithTheRightCAAndWithAWrongCA() throws {
        let environment = try TestEnvironment.current()
        let pki = try TestPKI()
        let proxy = try SocatProxy(listen: "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert=\(pki.serverCert),key=\(pki.serverKey),verify=0",
                                   target: "TCP4:\(environment.kafkaHosts)")
        let hosts = "127.0.0.1:\(proxy.port)"

        let unverified = try runCheck(environment, destination: "      hosts: \(hosts)\n      topic: t\n      tls: true")
        #expect(unverified.status == 0, "tls: true connects without verifying; stderr: \(unverified.stderr)")

        let verified = try runCheck(environment, destination: """
                  hosts: \(hosts)
                  topic: t
                  tls: { ca_file: \(pki.caCert), verify: true }
            """)
        #expect(verified.status == 0, "the right CA verifies; stderr: \(verified.stderr)")

        let wrongCA = try runCheck(environment, destination: """
                  hosts: \(hosts)
                  topic: t
                  tls: { ca_file: \(pki.otherCACert), verify: true }
            """)
        #expect(wrongCA.status == 1)
        #expect(wrongCA.stderr.contains("sinks[0].destination.tls: the broker's TLS certificate did not verify"), "stderr: \(wrongCA.stderr)")
    }

    @Test func ipv6BootstrapHost() throws {
        let fixture = try Fixture()
        try fixture.database.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        let proxy = try SocatProxy(listen: "TCP6-LISTEN:{port},bind=[::1],reuseaddr,fork", target: "TCP4:\(fixture.environment.kafkaHosts)")
        let topic = fixture.topic("ipv6")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)], hosts: "\"[::1]:\(proxy.port)\"")
        let sluice = try fixture.startSluice(config: config)
        try insertRows(fixture.database, 3)
        #expect(try topic.waitForMessages(3).count == 3, "log:\n\(sluice.log)")
        #expect(sluice.stop() == 0)
    }

    @Test func brokerRejectingAMessageAsTooLargeCancelsOnlyThatMessage() throws {
        let fixture = try Fixture()
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("toolarge"))
        try cluster.createTopic(topic.name, partitions: 1)
        try fixture.database.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        var config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)], hosts: cluster.bootstrapServers)
        let consolePort = try freePort()
        config = config.replacingOccurrences(of: "sinks:\n", with: "console: { listen: \"127.0.0.1:\(consolePort)\", token: \"${SLUICE_TEST_TOKEN}\" }\nsinks:\n")
        let sluice = try SluiceProcess(fixture.environment, config: config, extraEnvironment: ["SLUICE_TEST_TOKEN": "t0ken"])
        #expect(sluice.waitUntilStreaming(), "log:\n\(sluice.log)")
        try fixture.database.execute("INSERT INTO public.t VALUES (1, 'first')")
        #expect(try topic.waitForMessages(1).count == 1)

        cluster.failNextProduceRequests(with: [MockKafkaCluster.messageTooLarge])
        try fixture.database.execute("UPDATE public.t SET v = 'rejected' WHERE id = 1")
        #expect(try eventually(timeout: 20) { sluice.log.contains("message too large for Kafka; cancelled") }, "log:\n\(sluice.log)")
        try fixture.database.execute("UPDATE public.t SET v = 'after' WHERE id = 1")
        let messages = try topic.waitForMessages(2)
        #expect(messages.map { $0.record["v"] as? String } == ["first", "after"], "the group goes on after the cancelled message")

        // The cancellation is counted in the Prometheus metrics, which need the console token.
        let url = "http://127.0.0.1:\(consolePort)/metrics"
        let refused = try runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
        #expect(refused.stdout == "401")
        let metrics = try runCommand("/usr/bin/curl", ["-s", "-H", "Authorization: Bearer t0ken", url]).stdout
        #expect(metrics.contains(#"sluice_messages_cancelled_total{sink="s",reason="too_large"} 1"#), "metrics:\n\(metrics)")
        #expect(metrics.contains(#"sluice_messages_delivered_total{sink="s"} 2"#), "metrics:\n\(metrics)")
        #expect(try runCommand("/usr/bin/curl", ["-s", "http://127.0.0.1:\(consolePort)/healthz"]).stdout == "ok\n")
        #expect(sluice.stop() == 0)
        #expect(sinkTotals(in: sluice.log)["s"]?["cancelled_too_large"] == 1)
        #expect(try SQLiteStateStore(path: fixture.statePath).cancelled(sink: "s").map(\.key) == ["1"])
    }

    @Test func brokerDownBrieflyLosesNothing() throws {
        let fixture = try Fixture()
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("down"))
        try cluster.createTopic(topic.name, partitions: 1)
        try fixture.database.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        let config = fixture.config(tables: ["public.t"], sinks: [.init(name: "s", topic: topic)], hosts: cluster.bootstrapServers)
        let sluice = try fixture.startSluice(config: config)

        cluster.setBrokerDown(1)
        for id in 1...50 { try fixture.database.execute("INSERT INTO public.t VALUES ($1, 'v')", [String(id)]) }
        Thread.sleep(forTimeInterval: 5)
        cluster.setBrokerUp(1)
        let messages = try topic.waitForMessages(50, timeout: 60)
        #expect(messages.map(\.key) == (1...50).map { String($0) }, "log:\n\(sluice.log)")
        #expect(sluice.stop() == 0)
    }

    // MARK: - Helpers

    func runCheck(_ environment: TestEnvironment, destination: String, extraEnvironment: [String: String] = [:]) throws
        -> (status: Int32, stdout: String, stderr: String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("check") + ".yml").path
        try """
            database:
              url: \(environment.postgresURL)
            sinks:
              - name: s
                destination:
                  type: kafka
            \(destination)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try runCommand(environment.sluiceBinary, ["check", "--config", path],
                              environment: ProcessInfo.processInfo.environment.merging(extraEnvironment) { $1 })
    }

    /// The numbers of each "sink totals" log line, by sink name.
    func sinkTotals(in log: String) -> [String: [String: Int]] {
        var totals: [String: [String: Int]] = [:]
        for line in log.split(separator: "\n") where line.contains("sink totals") {
            var fields: [String: String] = [:]
            for token in line.split(separator: " ") {
                let parts = token.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            guard let sink = fields["sink"] else { continue }
            totals[sink] = fields.compactMapValues { Int($0) }
        }
        return totals
    }
}

/// A throwaway certificate authority, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
struct TestPKI {
    let directory: String
    var caCert: String { directory + "/ca.pem" }
    var otherCACert: String { directory + "/other-ca.pem" }
    var serverCert: String { directory + "/server.pem" }
    var serverKey: String { directory + "/server.key" }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("pki")).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd "\(directory)"
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=sluice test CA"
            openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=some other CA"
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.cnf
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.cnf
            """
        let result = try runCommand("/bin/bash", ["-c", script])
        if result.status != 0 { throw TestSetupError("openssl failed: \(result.stderr)") }
    }
}

/// `socat` relaying a listening address to a target, e.g. TLS or IPv6 in front of the broker.
final class SocatProxy {
    let pid: pid_t
    let port: Int

    /// `listen` contains `{port}`, replaced by a free port.
    init(listen: String, target: String) throws {
        port = try freePort()
        pid = try spawn("/usr/bin/socat", [listen.replacingOccurrences(of: "{port}", with: String(port)), target])
        Thread.sleep(forTimeInterval: 0.5)
        guard kill(pid, 0) == 0 else { throw TestSetupError("socat \(listen) did not start") }
    }

    deinit {
        // socat in fork mode may outlive SIGTERM while a connection is open: end it for sure.
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    }
}
