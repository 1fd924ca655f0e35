import Foundation
import Ledger
import Logging
import PostgresSource
import SluiceCore
import Synchronization

/// Runs one backfill on a thread of its own: page by page, low watermark → keyset read → high
/// watermark → wait until the stream emitted the page (reading the next page meanwhile) and the slot
/// passed it (so its rows are in Kafka, parked or filtered) → save the cursor. A restart resumes
/// from the saved cursor.
final class BackfillWorker: @unchecked Sendable {
    static let firstPageSize = 1_000
    /// The largest page, whatever the sink's max_ack_pending.
    static let largestPageSize = 10_000

    /// A page goes to Kafka at once, on top of what the stream has in flight (max_ack_pending does
    /// not pace it), so it is at most half of max_ack_pending: what a backfill adds to the messages
    /// held in memory stays a bounded share of what the sink allows, and never more than 10,000 rows.
    static func maxPageSize(maxAckPending: Int) -> Int {
        max(firstPageSize, min(largestPageSize, maxAckPending / 2))
    }

    private(set) var record: BackfillRecord
    let table: BackfillTable
    let reader: BackfillReader
    let coordinator: BackfillCoordinator
    let ledger: any StateStore
    let logger: Logger
    let maxQueryMS: Int
    let maxPageSize: Int
    /// The slot's confirmed position (the pipeline's checkpoint).
    let confirmed: @Sendable () -> LSN
    let onEnd: @Sendable (BackfillRecord) -> Void
    private let cancelRequested = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    private let lock = NSLock()
    private var lastLog = Date()
    private var lastLoggedTenth = 0

    init(record: BackfillRecord, table: BackfillTable, reader: BackfillReader, coordinator: BackfillCoordinator,
         ledger: any StateStore, logger: Logger, maxQueryMS: Int, maxPageSize: Int, confirmed: @escaping @Sendable () -> LSN,
         onEnd: @escaping @Sendable (BackfillRecord) -> Void) {
        self.record = record
        self.table = table
        self.reader = reader
        self.coordinator = coordinator
        self.ledger = ledger
        self.logger = logger
        self.maxQueryMS = maxQueryMS
        self.maxPageSize = maxPageSize
        self.confirmed = confirmed
        self.onEnd = onEnd
    }

    var snapshot: BackfillRecord {
        lock.lock()
        defer { lock.unlock() }
        return record
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "sluice-backfill"
        thread.start()
    }

    /// Stops after the current page; the messages already sent stay sent.
    func cancel() { cancelRequested.store(true, ordering: .relaxed) }

    /// Sluice is stopping: leave the backfill active, to resume from its cursor.
    func stop() { stopRequested.store(true, ordering: .relaxed) }

    private var shouldStop: Bool { cancelRequested.load(ordering: .relaxed) || stopRequested.load(ordering: .relaxed) }

    // MARK: - Pages

    /// A page read (between its low watermark and the next step), not yet given its high watermark.
    private struct Read {
        var tag: String
        var rows: [Tuple]
        var snapshot: Snapshot?
        var limit: Int
        var queryMS: Double
        var started: Date
    }

    /// Writes a page's low watermark and reads it: `limit` rows after `cursor`.
    private func read(tag: String, after cursor: [String]?, limit: Int) throws -> Read {
        let started = Date()
        coordinator.expect(backfillID: record.id, tag: tag, table: table.name)
        _ = try reader.emitWatermark("\(record.id):\(tag):low")
        let queryStarted = Date()
        let (rows, snapshot) = try reader.page(table, sortColumn: record.sortColumn, start: record.startPosition,
                                               after: cursor, limit: limit)
        return Read(tag: tag, rows: rows, snapshot: snapshot, limit: limit,
                    queryMS: Date().timeIntervalSince(queryStarted) * 1000, started: started)
    }

    /// Page by page. While a page's messages travel to Kafka, the next page is read (its low
    /// watermark and query): only once the stream has emitted the page, so the windows of two pages
    /// never overlap, and its high watermark only once the page is safe, so at most one page is ever
    /// sent and not yet safe (what a crash sends again).
    private func run() {
        var pageSize = Self.firstPageSize
        var number = 0
        let run = UUID().uuidString.prefix(8).lowercased()
        var ahead: Read?
        defer { coordinator.forget(backfillID: record.id) }
        logger.info("backfill started", metadata: metadata(["rows_estimate": "\(record.rowsInitialCount)",
                                                            "resuming": "\(record.cursor != nil)"]))
        while true {
            if cancelRequested.load(ordering: .relaxed) { return end(.cancelled) }
            if stopRequested.load(ordering: .relaxed) { return }
            do {
                let current: Read
                if let read = ahead {
                    current = read
                    ahead = nil
                } else {
                    number += 1
                    current = try read(tag: "\(run)-\(number)", after: record.cursor, limit: pageSize)
                }
                let rows = current.rows
                if rows.isEmpty { return end(.completed) }
                let readAt = Int64((Date().timeIntervalSince1970 - 946_684_800) * 1_000_000)
                let page = BackfillPage(backfillID: record.id, tag: current.tag, sink: record.sink, table: table, rows: rows,
                                        snapshot: current.snapshot, readAt: readAt, cursor: orderValues(of: rows[rows.count - 1]))
                coordinator.register(page)
                _ = try reader.emitWatermark("\(record.id):\(current.tag):high")
                let highWritten = Date()
                guard waitUntilEmitted(page) else { return }  // stopping; resumes from the saved cursor
                if page.mustReread {
                    // A transaction the read missed had already streamed: read the page again (not yet counted).
                    Thread.sleep(forTimeInterval: 0.05)
                    continue
                }
                // Keep each query under max_query_ms: halve when over, grow while well under.
                if current.queryMS > Double(maxQueryMS) {
                    pageSize = max(10, pageSize / 2)
                } else if current.queryMS < Double(maxQueryMS) / 4 {
                    pageSize = min(maxPageSize, pageSize * 2)
                }
                let cursor = page.cursor
                let last = rows.count < current.limit
                if !last && !shouldStop {
                    number += 1
                    ahead = try read(tag: "\(run)-\(number)", after: cursor, limit: pageSize)
                }
                guard waitUntilSafe(page) else { return }
                let safe = Date()
                update { record in
                    record.cursor = cursor
                    record.rowsProcessedCount += rows.count
                    record.rowsIngestedCount += page.emitted
                }
                try ledger.save(snapshot)
                logger.debug("backfill page", metadata: metadata([
                    "rows": "\(rows.count)", "emitted": "\(page.emitted)", "query_ms": "\(Int(current.queryMS))",
                    "read_ms": "\(Int(highWritten.timeIntervalSince(current.started) * 1000))",
                    "emitted_and_safe_ms": "\(Int(safe.timeIntervalSince(highWritten) * 1000))",
                    "saved_ms": "\(Int(Date().timeIntervalSince(safe) * 1000))"]))
                logProgress()
                if last { return end(.completed) }
            } catch {
                logger.error("backfill failed", metadata: metadata(["error": "\(error)"]))
                update { $0.lastError = "\(error)" }
                return end(.failed)
            }
        }
    }

    /// Waits for the stream to come to the page's high watermark (and emit it, or ask for a reread).
    private func waitUntilEmitted(_ page: BackfillPage) -> Bool {
        while !page.wait(timeout: 0.5) {
            if stopRequested.load(ordering: .relaxed) { return false }
        }
        return true
    }

    /// After the page was emitted: waits for the slot to pass it (its messages are in Kafka, parked or filtered).
    private func waitUntilSafe(_ page: BackfillPage) -> Bool {
        while !page.mustReread, confirmed() < page.highLSN {
            if stopRequested.load(ordering: .relaxed) { return false }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return true
    }

    /// The values of the columns the pages are ordered by, as text: the cursor after this row.
    private func orderValues(of row: Tuple) -> [String] {
        let names = (record.sortColumn.map { [$0] } ?? []) + table.keyColumns
        return names.map { name in
            table.relation.columns.firstIndex { $0.name == name }.flatMap { row.text(at: $0) } ?? ""
        }
    }

    private func end(_ state: BackfillRecord.State) {
        update { record in
            record.state = state
            if state == .cancelled { record.canceledAt = Date() } else { record.completedAt = Date() }
        }
        do { try ledger.save(snapshot) } catch {
            logger.error("could not save the backfill's state", metadata: metadata(["error": "\(error)"]))
        }
        let done = snapshot
        logger.notice("backfill \(state.rawValue)", metadata: metadata([
            "rows_processed": "\(done.rowsProcessedCount)", "rows_ingested": "\(done.rowsIngestedCount)"]))
        onEnd(done)
    }

    private func update(_ change: (inout BackfillRecord) -> Void) {
        lock.lock()
        change(&record)
        lock.unlock()
    }

    /// One line per 10 % or per 30 s, whichever comes first.
    private func logProgress() {
        let current = snapshot
        let tenth = current.rowsInitialCount > 0 ? min(10, current.rowsProcessedCount * 10 / current.rowsInitialCount) : 0
        guard tenth > lastLoggedTenth || Date().timeIntervalSince(lastLog) >= 30 else { return }
        lastLoggedTenth = max(lastLoggedTenth, tenth)
        lastLog = Date()
        logger.info("backfill progress", metadata: metadata([
            "rows_processed": "\(current.rowsProcessedCount)", "rows_estimate": "\(current.rowsInitialCount)",
            "percent": "\(current.rowsInitialCount > 0 ? min(100, current.rowsProcessedCount * 100 / current.rowsInitialCount) : 0)"]))
    }

    private func metadata(_ extra: Logger.Metadata) -> Logger.Metadata {
        var all: Logger.Metadata = ["backfill": "\(record.id)", "sink": "\(record.sink)", "table": "\(record.table)"]
        all.merge(extra) { $1 }
        return all
    }
}
