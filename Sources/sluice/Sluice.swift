import ArgumentParser
import Foundation
import KafkaSink
import Console
import Ledger
import Logging
import Metrics
import Pipeline
import Prometheus
import PostgresSource
import ServiceLifecycle
import SluiceCore

/// glibc's `int mallopt(int param, int value)`, which Swift's Glibc module does not import.
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Streams every row change of a PostgreSQL database into Kafka.",
        version: SluiceVersion.current,
        subcommands: [Run.self, Check.self, Messages.self, Backfill.self, Fn.self, ImportSequin.self, StateCommand.self]
    )
}

struct CommonOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "sluice.yml"

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Option(help: "text, or json for one JSON object per line (default: log_format in the file, else text).")
    var logFormat: LogFormat?

    /// Logs to standard error in the format asked for on the command line, else in the file's `log_format`.
    func bootstrapLogging(config: SluiceConfig) {
        let level = logLevel
        let format = logFormat ?? config.logFormat
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = format == .json ? JSONLogHandler(label: label)
                                                          : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// Loads the configuration, or prints every problem (one per line) and exits 2.
    func loadConfig() throws -> SluiceConfig {
        do {
            return try ConfigFile.load(path: config)
        } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}

enum SluiceVersion {
    static let current = "0.5.0"
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stream changes until SIGTERM or SIGINT.")

    @OptionGroup var options: CommonOptions

    func run() async throws {
        let config = try options.loadConfig()
        options.bootstrapLogging(config: config)
        let logger = Logger(label: "sluice")
        Self.keepFreedMemory()
        if let console = config.console, let (host, _) = Self.hostPort(console.listen), console.token.isEmpty,
           !ConsoleServer.isLoopback(host) {
            FileHandle.standardError.write(Data(
                "console.token: is empty while console.listen (\(console.listen)) is reachable from other machines — set a token (e.g. ${SLUICE_CONSOLE_TOKEN}) or listen on 127.0.0.1\n".utf8))
            throw ExitCode(2)
        }
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["sluice_commit_to_ack_seconds"] = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(15), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
        // Exactly-once sinks: messages per Kafka transaction.
        factory.valueHistogramBuckets["sluice_transaction_messages"] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000]
        MetricsSystem.bootstrap(factory)

        let inspectors = InspectorSlot()
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: SluiceService(config: config, logger: logger, inspectorSlot: inspectors),
                  successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
        ]
        if let console = config.console, let (host, port) = Self.hostPort(console.listen) {
            let server = ConsoleServer.application(host: host, port: port, token: console.token, inspectors: inspectors,
                                                   registry: registry, logger: logger)
            services.append(.init(service: server, failureTerminationBehavior: .gracefullyShutdownGroup))
            logger.info("console listening", metadata: ["address": "http://\(console.listen)", "paths": "/ /api /metrics /healthz /readyz"])
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("sluice stopped", metadata: ["error": "\(Self.unwrap(error))"])
            throw ExitCode(1)
        }
    }

    /// glibc hands the free top of a thread's heap back to the kernel once it passes a threshold that
    /// adapts to the largest block freed, and takes fresh, zeroed pages when the heap grows again. A
    /// stream's messages, Lua's collector and librdkafka's batches make the heap breathe by megabytes,
    /// so this showed as page faults (up to 7 % of sluice's CPU with a function on the sink). Fixed
    /// thresholds keep up to 16 MB of free top per heap (peak RSS stays bounded; see BENCHMARKS.md)
    /// and serve blocks under 4 MB from the heaps instead of fresh mappings.
    static func keepFreedMemory() {
        // <malloc.h>'s M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (Swift's Glibc module leaves malloc.h out).
        _ = glibcMallopt(-1, 16 << 20)
        _ = glibcMallopt(-3, 4 << 20)
    }

    /// `host:port` or `[v6]:port` (validated when the configuration was read).
    static func hostPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// ServiceGroup wraps a service's error; show the service's own words.
    static func unwrap(_ error: Error) -> String {
        if let error = error as? PostgresError { return error.description }
        if let error = error as? KafkaError { return error.description }
        if let error = error as? StateFileError { return error.description }
        if let error = error as? ReplicationFailure { return error.description }
        return "\(error)"
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the configuration and connect to PostgreSQL and every Kafka sink.")

    @OptionGroup var options: CommonOptions

    func run() async throws {
        let config = try options.loadConfig()
        options.bootstrapLogging(config: config)
        var problems: [String] = []
        var report: [String] = []
        problems += PortMarkers.problems(in: config.functions)

        do {
            let connection = try PostgresConnection(parameters: config.database.connectionParameters, applicationName: "sluice-check")
            let setup = ReplicationSetup(connection: connection, config: config.database)
            problems += try setup.problems().map(\.description)
            problems += EnrichmentQuery.problems(of: config, on: connection)
            let stream = try ReplicationStream(parameters: config.database.connectionParameters)
            let identity = try stream.identifySystem()
            report.append("database: connected to \(identity.databaseName), replication allowed, server WAL at \(identity.walPosition)")
        } catch {
            problems.append("database: \(error)")
        }
        if case .postgres(let parameters, let schema) = config.stateStore {
            do {
                report.append(try Self.checkStateStore(parameters: parameters, schema: schema, slot: config.database.slotName))
            } catch {
                problems.append("state: \(error) — check state.url (or the database connection) and that the user may create schema \(schema)")
            }
        }

        var silent = Logger(label: "sluice-check")
        silent.logLevel = .critical
        for (index, sink) in config.sinks.enumerated() {
            let hosts = sink.destination.hosts.map(\.description).joined(separator: ",")
            let path = "sinks[\(index)].destination"
            let producer: KafkaProducer
            let properties = KafkaSettings.securityProperties(for: sink.destination)
                + [("bootstrap.servers", hosts), ("client.id", "sluice-check")]
            do {
                producer = try KafkaProducer(properties: properties, logger: silent) { _ in }
            } catch {
                problems.append("\(path): \(error)")
                continue
            }
            do {
                try producer.checkConnection(timeout: 10)
                report.append("sinks[\(index)] \(sink.name): Kafka at \(hosts) answered")
            } catch {
                problems.append(Self.explain(error, cause: producer.lastClientError, path: path, hosts: hosts))
                continue
            }
            if sink.delivery == .exactlyOnce {
                let line = Self.checkTransactions(sink: sink, index: index, slot: config.database.slotName, properties: properties,
                                                  logger: silent)
                if line.ok { report.append(line.text) } else { problems.append(line.text) }
            }
        }

        for line in report { print("ok: \(line)") }
        guard problems.isEmpty else {
            FileHandle.standardError.write(Data(problems.map { $0 + "\n" }.joined().utf8))
            throw ExitCode(1)
        }
        print("configuration is valid")
    }

    /// The shared state store opens (its schema and tables are created or migrated), and who leads the slot.
    static func checkStateStore(parameters: [(String, String)], schema: String, slot: String) throws -> String {
        let store = try PostgresStateStore(parameters: parameters, schema: schema, slot: slot, applicationName: "sluice-check",
                                           access: .standby)
        let connection = try PostgresConnection(parameters: parameters, applicationName: "sluice-check")
        let leader = if let lease = try LeaderElection.lease(on: connection, schema: schema, slot: slot), !lease.expired {
            "instance \(lease.holder.instance) leads the slot (term \(lease.holder.term), lease until "
                + "\(InspectedMessage.timestamp(lease.holder.expiresAt)))"
        } else {
            "no instance leads the slot now"
        }
        return "state: \(store.location) is ready; \(leader)"
    }

    /// Whether the brokers give a transactional producer an id (InitProducerId). Asked under a
    /// transactional id of its own (`<transactional_id>.check`), so a running sluice is not fenced.
    /// `properties`: the brokers and security settings the connection check used.
    static func checkTransactions(sink: SinkConfig, index: Int, slot: String, properties: [(String, String)],
                                  logger: Logger) -> (ok: Bool, text: String) {
        let transactionalID = sink.transactionalID(slot: slot) + ".check"
        do {
            let producer = try KafkaProducer(properties: properties + [("transactional.id", transactionalID)], logger: logger) { _ in }
            try producer.initTransactions(timeout: 15)
            return (true, "sinks[\(index)] \(sink.name): the brokers support transactions (InitProducerId answered for \(transactionalID))")
        } catch let error as KafkaTransactionError {
            return (false, "sinks[\(index)].delivery: exactly_once needs Kafka transactions, and the brokers refused one "
                        + "(InitProducerId for \(transactionalID)): \(error) — check the brokers' version and the principal's "
                        + "TransactionalId ACLs (Write, Describe), or use delivery: at_least_once")
        } catch {
            return (false, "sinks[\(index)].delivery: could not make a transactional producer: \(error)")
        }
    }

    /// One line saying which setting to look at: credentials, TLS, or the hosts.
    static func explain(_ error: KafkaError, cause: KafkaError?, path: String, hosts: String) -> String {
        guard let cause else { return "\(path).hosts: cannot reach Kafka at \(hosts) — \(error)" }
        if cause.category == .authentication {
            return "\(path).username: Kafka at \(hosts) refused the credentials (authentication failed) — \(cause.message)"
        }
        if cause.message.contains("certificate verify failed") || cause.message.contains("could not be verified") {
            return "\(path).tls: the broker's TLS certificate did not verify (check ca_file) — \(cause.message)"
        }
        return "\(path).hosts: cannot reach Kafka at \(hosts) — \(error); \(cause.message)"
    }
}
