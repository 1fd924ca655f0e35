import Foundation
import KafkaSink
import Ledger
import Logging
import Metrics
import PostgresSource
import ServiceLifecycle
import SluiceCore

/// The streaming job as a swift-service-lifecycle service: replication runs on its own thread;
/// graceful shutdown (SIGTERM/SIGINT) stops reading, flushes Kafka and sends the last checkpoint.
public struct SluiceService: Service {
    let config: SluiceConfig
    let logger: Logger
    /// Where the console finds this run's pipeline.
    let inspectorSlot: InspectorSlot

    public init(config: SluiceConfig, logger: Logger, inspectorSlot: InspectorSlot = InspectorSlot()) {
        self.config = config
        self.logger = logger
        self.inspectorSlot = inspectorSlot
    }

    public func run() async throws {
        switch config.stateStore {
        case .sqlite:
            let lock = try Self.lockState(path: config.statePath)
            defer { close(lock) }
            inspectorSlot.ha.single(instance: config.ha.instance ?? HAStatus.defaultInstance)
            _ = try await lead(store: try SQLiteStateStore(path: config.statePath), lease: nil)
        case .postgres(let parameters, let schema):
            try await HighAvailability(service: self, parameters: parameters, schema: schema).run()
        }
    }

    /// How a leader's streaming ended.
    enum TermEnd { case stopped, leaseLost }

    /// Streams as the slot's leader until shutdown, a failure that needs the operator (thrown), or —
    /// with a lease — until the lease is lost: then nothing more is sent and the stream stops at once.
    func lead(store: any StateStore, lease: LeaseKeeper?) async throws -> TermEnd {
        let setup = try Self.prepareDatabase(config: config, logger: logger)
        let pipeline = try Pipeline(config: config, databaseName: setup.databaseName, hostname: setup.hostname, startLSN: setup.confirmed,
                                    ledger: store, logger: logger)
        // A new leader takes over without waiting for Kafka.
        for (name, producer) in pipeline.producers where lease == nil {
            do {
                try producer.checkConnection(timeout: 10)
            } catch {
                logger.warning("Kafka brokers do not answer yet; messages wait until they do",
                               metadata: ["sink": "\(name)", "error": "\(error)"])
            }
        }
        // Large transactions arrive while in progress and wait in spill files next to the state file.
        let stateDirectory = (config.statePath as NSString).deletingLastPathComponent
        let spill = (stateDirectory.isEmpty ? "." : stateDirectory) + "/sluice-spill-\(config.database.slotName)"
        let source = ReplicationSource(settings: .init(database: config.database, spillDirectory: spill,
                                                      watchedTables: Self.watchedTables(config)), logger: logger)
        let inspector = pipeline.makeInspector(replication: source.status, slotName: config.database.slotName)
        let backfills = pipeline.makeBackfills(config: config)
        inspector.attach(backfills)
        inspectorSlot.set(inspector)
        defer { inspectorSlot.set(nil) }
        let lag = Gauge(label: "sluice_replication_lag_bytes")
        let lagSampler = Task {
            while !Task.isCancelled {
                lag.record(Int(clamping: inspector.status().lagBytes))
                try? await Task.sleep(for: .seconds(1))
            }
        }
        defer { lagSampler.cancel() }
        // True once it stopped the stream because the lease was lost.
        let watchdog = lease.map { lease in
            Task { () -> Bool in
                while !Task.isCancelled, lease.isValid { try? await Task.sleep(for: .milliseconds(50)) }
                guard !Task.isCancelled else { return false }
                logger.critical("lost the lease: stopped sending at once; another instance takes the slot")
                source.requestStop(drain: false)
                pipeline.abandon()
                backfills.stopAll()
                return true
            }
        }
        await withGracefulShutdownHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let thread = Thread {
                    source.run(consumer: pipeline)
                    done.resume()
                }
                thread.name = "sluice-replication"
                thread.start()
                // Backfills meet the stream at their watermarks: resume them (and start initial ones) once it runs.
                backfills.resumeAndStartInitial()
            }
        } onGracefulShutdown: {
            logger.info("shutting down: stopping reads, flushing Kafka")
            backfills.stopAll()
            source.requestStop()
        }
        _ = pipeline // keep producers alive until the source has drained them
        watchdog?.cancel()
        if await watchdog?.value == true { return .leaseLost }
        if let failure = source.failure {
            backfills.stopAll()
            throw failure
        }
        return .stopped
    }

    /// The tables the configuration names, with where: the publication's, then each enabled sink's.
    static func watchedTables(_ config: SluiceConfig) -> [(table: TableName, origin: String)] {
        var watched = config.database.publicationTables.map { (table: $0, origin: "database.publication.tables") }
        for (index, sink) in config.sinks.enumerated() where sink.enabled {
            watched += sink.tables.map { (table: $0, origin: "sinks[\(index)].tables") }
        }
        return watched
    }

    /// One running sluice per state file: a second one would mix its ledger with ours.
    /// Holds an exclusive lock on `<state>.lock` for as long as the returned descriptor is open.
    public static func lockState(path: String) throws -> Int32 {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let descriptor = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw StateFileError(message: "state.path: cannot create \(path).lock: \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw StateFileError(message: "state.path: \(path) is in use by another running sluice — give each instance its own state.path")
        }
        return descriptor
    }

    /// Creates the publication and slot if allowed and returns where the slot stands.
    static func prepareDatabase(config whole: SluiceConfig, logger: Logger) throws -> (databaseName: String, hostname: String, confirmed: LSN) {
        let config = whole.database
        let connection = try PostgresConnection(parameters: config.connectionParameters, applicationName: "sluice-setup")
        let setup = ReplicationSetup(connection: connection, config: config)
        let outcome = try setup.ensure()
        let enrichmentProblems = EnrichmentQuery.problems(of: whole, on: connection)
        if !enrichmentProblems.isEmpty { throw PostgresError(.query, enrichmentProblems.joined(separator: "\n")) }
        if outcome.createdPublication { logger.info("created publication", metadata: ["publication": "\(config.publicationName)"]) }
        if !outcome.addedTables.isEmpty {
            logger.info("added tables to publication", metadata: ["tables": "\(outcome.addedTables.map(\.description))"])
        }
        if outcome.createdSlot { logger.info("created replication slot", metadata: ["slot": "\(config.slotName)"]) }
        return (outcome.databaseName, outcome.hostname, try setup.confirmedFlushLSN() ?? .zero)
    }
}

/// The state file cannot be used.
public struct StateFileError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
