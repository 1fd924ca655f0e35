import Foundation
import Ledger
import Logging
import PostgresSource
import SluiceCore
import Synchronization

/// Starts, lists and cancels backfills; resumes active ones and runs `initial_backfill` when a sink
/// is first seen. Several run at once, each with one page in memory.
public final class BackfillManager: @unchecked Sendable {
    let config: SluiceConfig
    let ledger: any StateStore
    let coordinator: BackfillCoordinator
    let logger: Logger
    let confirmed: @Sendable () -> LSN
    /// Exactly-once sinks: the cursor a backfill's newest page committed in Kafka with its rows (sink, id).
    let committedCursor: @Sendable (String, String) -> [String]?
    /// A backfill of a sink ended (sink, id).
    let ended: @Sendable (String, String) -> Void
    private let workers = Mutex<[String: BackfillWorker]>([:])

    init(config: SluiceConfig, ledger: any StateStore, coordinator: BackfillCoordinator, logger: Logger,
         confirmed: @escaping @Sendable () -> LSN, committedCursor: @escaping @Sendable (String, String) -> [String]? = { _, _ in nil },
         ended: @escaping @Sendable (String, String) -> Void = { _, _ in }) {
        self.committedCursor = committedCursor
        self.ended = ended
        self.config = config
        self.ledger = ledger
        self.coordinator = coordinator
        self.logger = logger
        self.confirmed = confirmed
    }

    /// Resumes active backfills from their cursors; starts the initial backfills of sinks seen for the first time.
    public func resumeAndStartInitial() {
        do {
            for var record in try ledger.backfills() where record.state == .active {
                guard let sink = config.sinks.first(where: { $0.name == record.sink }), sink.enabled else { continue }
                if let cursor = committedCursor(sink.name, record.id), cursor != record.cursor {
                    // Exactly-once: the page after the saved cursor is in Kafka already, committed with this cursor.
                    logger.notice("backfill resumes from the cursor committed in Kafka with its last page",
                                  metadata: ["backfill": "\(record.id)", "sink": "\(sink.name)"])
                    record.cursor = cursor
                }
                do { try launch(record, sink: sink) } catch {
                    logger.error("could not resume a backfill", metadata: ["backfill": "\(record.id)", "error": "\(error)"])
                }
            }
            for sink in config.sinks where sink.enabled {
                guard try ledger.markSeen(sink: sink.name) else { continue }
                guard let specs = sink.initialBackfill else { continue }
                let tables = specs.isEmpty ? try tablesOf(sink).map { BackfillSpec(table: $0) } : specs
                for spec in tables {
                    do { _ = try start(sink: sink.name, spec: spec) } catch {
                        logger.error("could not start an initial backfill", metadata: [
                            "sink": "\(sink.name)", "table": "\(spec.table)", "error": "\(error)"])
                    }
                }
            }
        } catch {
            logger.error("could not read backfills from the state file", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - API

    /// Starts one backfill per table (every table of the sink when `tables` is empty).
    public func start(sink name: String, tables: [String], sortColumn: String?, startPosition: String?) throws(InspectionError) -> [BackfillRecord] {
        guard let sink = config.sinks.first(where: { $0.name == name }) else {
            throw InspectionError(.notFound, "no sink named \(name) — sinks: \(config.sinks.map(\.name).joined(separator: ", "))")
        }
        if !sink.enabled {
            throw InspectionError(.conflict, "sink \(name) is disabled (status: disabled) — set status: active and restart to backfill it")
        }
        if startPosition != nil && sortColumn == nil {
            throw InspectionError(.badRequest, "start_position: needs sort_column (a partial backfill sends rows with sort_column >= start_position)")
        }
        if sortColumn != nil && startPosition == nil {
            throw InspectionError(.badRequest, "start_position: is required with sort_column")
        }
        var specs: [BackfillSpec] = []
        for text in tables {
            guard let table = TableName(parsing: text) else {
                throw InspectionError(.badRequest, "tables: \"\(text)\" — write schema.table, e.g. public.orders")
            }
            specs.append(BackfillSpec(table: table, sortColumn: sortColumn, startPosition: startPosition))
        }
        do {
            if specs.isEmpty {
                specs = try tablesOf(sink).map { BackfillSpec(table: $0, sortColumn: sortColumn, startPosition: startPosition) }
            }
            let published = try tablesOf(sink)
            for spec in specs where !published.contains(spec.table) {
                throw InspectionError(.badRequest, "tables: \(spec.table) is not one of sink \(name)'s tables (\(published.map(\.description).joined(separator: ", ")))")
            }
        } catch let error as InspectionError {
            throw error
        } catch {
            throw InspectionError(.unavailable, "could not read the publication's tables: \(error)")
        }
        var started: [BackfillRecord] = []
        for spec in specs { started.append(try start(sink: name, spec: spec)) }
        return started
    }

    public func list(sink: String? = nil) -> [BackfillRecord] {
        let live = workers.withLock { $0.mapValues(\.snapshot) }
        return ((try? ledger.backfills(sink: sink)) ?? []).map { live[$0.id] ?? $0 }
    }

    public func backfill(id: String) throws(InspectionError) -> BackfillRecord {
        if let live = workers.withLock({ $0[id]?.snapshot }) { return live }
        guard let record = try? ledger.backfill(id: id) else { throw InspectionError(.notFound, "no backfill \(id)") }
        return record
    }

    /// Cancels after the current page.
    public func cancel(id: String) throws(InspectionError) -> BackfillRecord {
        if let worker = workers.withLock({ $0[id] }) {
            worker.cancel()
            return worker.snapshot
        }
        let record = try backfill(id: id)
        throw InspectionError(.conflict, "backfill \(id) is \(record.state.rawValue); only active backfills can be cancelled")
    }

    /// Sluice is stopping: active backfills stay active and resume from their cursors on the next start.
    public func stopAll() {
        workers.withLock { $0.values.forEach { $0.stop() } }
    }

    // MARK: - Starting

    /// The server's message without its `ERROR:` prefix and context lines.
    static func firstLine(_ error: Error) -> String {
        var text = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
        if text.hasPrefix("ERROR:") { text = String(text.dropFirst("ERROR:".count)).trimmingCharacters(in: .whitespaces) }
        return text
    }

    private func start(sink name: String, spec: BackfillSpec) throws(InspectionError) -> BackfillRecord {
        guard let sink = config.sinks.first(where: { $0.name == name }) else { throw InspectionError(.notFound, "no sink named \(name)") }
        let reader: BackfillReader
        let table: BackfillTable
        do {
            reader = try BackfillReader(parameters: config.database.connectionParameters)
            table = try reader.describe(spec.table)
        } catch {
            throw InspectionError(.badRequest, "tables: \(spec.table): \(Self.firstLine(error))")
        }
        if let sortColumn = spec.sortColumn {
            guard table.columnTypes[sortColumn] != nil else {
                throw InspectionError(.badRequest, "sort_column: \(table.name) has no column \"\(sortColumn)\" — columns: \(table.relation.columns.map(\.name).joined(separator: ", "))")
            }
            if let start = spec.startPosition {
                do { try reader.check(start, as: sortColumn, of: table) } catch {
                    throw InspectionError(.badRequest, "start_position: \"\(start)\" is not a \(table.columnTypes[sortColumn] ?? "value") — \(Self.firstLine(error))")
                }
            }
        }
        if table.keyColumns.isEmpty {
            throw InspectionError(.badRequest, spec.sortColumn == nil
                ? "tables: \(table.name) has no primary key — a backfill pages by it; add one (ALTER TABLE … ADD PRIMARY KEY)"
                : "tables: \(table.name) has no primary key — rows with equal \(spec.sortColumn!) could be skipped or repeated; add a primary key")
        }
        let record = BackfillRecord(id: UUID().uuidString.lowercased(), sink: name, table: spec.table.description,
                                    sortColumn: spec.sortColumn, startPosition: spec.startPosition,
                                    rowsInitialCount: reader.estimateRows(table, sortColumn: spec.sortColumn, start: spec.startPosition))
        do { try ledger.save(record) } catch { throw InspectionError(.unavailable, "could not write the state file: \(error)") }
        startWorker(record, table: table, reader: reader, sink: sink)
        return record
    }

    private func launch(_ record: BackfillRecord, sink: SinkConfig) throws {
        guard let name = TableName(parsing: record.table) else { return }
        let reader = try BackfillReader(parameters: config.database.connectionParameters)
        startWorker(record, table: try reader.describe(name), reader: reader, sink: sink)
    }

    private func startWorker(_ record: BackfillRecord, table: BackfillTable, reader: BackfillReader, sink: SinkConfig) {
        let worker = BackfillWorker(record: record, table: table, reader: reader, coordinator: coordinator, ledger: ledger,
                                    logger: logger, maxQueryMS: sink.backfillMaxQueryMS,
                                    maxPageSize: BackfillWorker.maxPageSize(maxAckPending: sink.destination.maxAckPending),
                                    confirmed: confirmed) { [weak self] done in
            _ = self?.workers.withLock { $0.removeValue(forKey: done.id) }
            self?.ended(done.sink, done.id)
        }
        workers.withLock { $0[record.id] = worker }
        worker.start()
    }

    /// The sink's tables: its `tables`, or every table of the publication.
    private func tablesOf(_ sink: SinkConfig) throws -> [TableName] {
        if !sink.tables.isEmpty { return sink.tables.filter { sink.source.contains($0) } }
        let connection = try PostgresConnection(parameters: config.database.connectionParameters, applicationName: "sluice-backfill")
        return try connection.query("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2",
                                    [config.database.publicationName]).rows.compactMap { row in
            guard let schema = row[0], let name = row[1] else { return nil }
            let table = TableName(schema: schema, name: name)
            return sink.source.contains(table) ? table : nil
        }
    }
}
