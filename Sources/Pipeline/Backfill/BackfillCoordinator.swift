import Foundation
import PostgresSource
import SluiceCore
import Synchronization

/// One page of a backfill, read between its low and high watermark, waiting to be emitted at the
/// high watermark's place in the stream.
final class BackfillPage: @unchecked Sendable {
    let backfillID: String
    /// Names the page in its watermarks: unique per run of a backfill, so that watermarks of a run
    /// that crashed (replayed from the slot after a restart) never match a page of this run.
    let tag: String
    let sink: String
    let table: BackfillTable
    let rows: [Tuple]
    /// The stream came to the page before its read saw everything streamed before it: read it again.
    private(set) var mustReread = false
    /// The snapshot the rows were read with.
    let snapshot: Snapshot?
    /// µs since 2000-01-01: the read's time, the rows' commit_timestamp.
    let readAt: Int64
    /// The backfill's cursor after this page (its last row's order values): exactly-once sinks commit it
    /// in Kafka with the page's rows.
    let cursor: [String]
    private let done = DispatchSemaphore(value: 0)
    private(set) var emitted = 0
    private(set) var highLSN = LSN.zero

    init(backfillID: String, tag: String, sink: String, table: BackfillTable, rows: [Tuple], snapshot: Snapshot? = nil,
         readAt: Int64, cursor: [String] = []) {
        self.snapshot = snapshot
        self.cursor = cursor
        self.backfillID = backfillID
        self.tag = tag
        self.sink = sink
        self.table = table
        self.rows = rows
        self.readAt = readAt
    }

    func reread() {
        mustReread = true
        done.signal()
    }

    func finished(emitted: Int, at lsn: LSN) {
        self.emitted = emitted
        highLSN = lsn
        done.signal()
    }

    /// Waits up to `timeout` seconds for the stream to reach the high watermark.
    func wait(timeout: Double) -> Bool { done.wait(timeout: .now() + timeout) == .success }
}

/// Where backfills meet the replication stream (the DBLog watermark algorithm): between a page's
/// low and high watermark the keys of every change to its table are noted; at the high watermark
/// the page's rows whose keys changed in between are dropped and the rest are emitted, so a newer
/// change is never overwritten by an older read.
final class BackfillCoordinator: Sendable {
    private struct Window {
        var table: TableName
        var tag: String
        /// How many commits had streamed when the low watermark came.
        var commitsAtLow = 0
        var open = false
        var keys: Set<String> = []
    }

    private struct State {
        var windows: [String: Window] = [:]
        var pages: [String: BackfillPage] = [:]
        /// The last transactions the stream delivered (xid, in a ring). A commit reaches the WAL, and so
        /// the stream, a moment before other sessions see it: a page whose read missed a transaction that
        /// streamed before its low watermark could send an older row after that change, so it is read again.
        var commits = [UInt32](repeating: 0, count: BackfillCoordinator.commitRing)
        var commitCount = 0
    }

    static let commitRing = 4_096

    private let state = Mutex(State())
    /// Fast path for the replication thread: are any windows open?
    private let openWindows = Atomic<Int>(0)
    /// Backfills running: while there are any, recent changes are remembered.
    private let running = Atomic<Int>(0)

    /// A backfill is about to write the low watermark of page `tag` for `table`.
    func expect(backfillID: String, tag: String, table: TableName) {
        state.withLock { state in
            if state.windows[backfillID]?.open == true { openWindows.subtract(1, ordering: .relaxed) }
            if state.windows[backfillID] == nil { running.add(1, ordering: .relaxed) }
            state.windows[backfillID] = Window(table: table, tag: tag)
        }
    }

    /// The page is read; it waits for its high watermark.
    func register(_ page: BackfillPage) {
        state.withLock { $0.pages[page.backfillID] = page }
    }

    func forget(backfillID: String) {
        state.withLock { state in
            if let window = state.windows.removeValue(forKey: backfillID) {
                running.subtract(1, ordering: .relaxed)
                if window.open { openWindows.subtract(1, ordering: .relaxed) }
            }
            state.pages.removeValue(forKey: backfillID)

        }
    }

    // MARK: - Replication thread

    /// Notes the keys of a change while any window is open.
    func observe(_ change: Change) {
        guard running.load(ordering: .relaxed) > 0 else { return }
        let table = TableName(schema: change.relation.schema, name: change.relation.name)
        let keys = [change.new, change.old].compactMap { $0.flatMap { Self.key(of: $0, relation: change.relation) } }
        guard !keys.isEmpty else { return }
        guard openWindows.load(ordering: .relaxed) > 0 else { return }
        state.withLock { state in
            for (id, window) in state.windows where window.open && window.table == table {
                state.windows[id]?.keys.formUnion(keys)
            }
        }
    }

    /// A transaction came through the stream completely.
    func committed(xid: UInt32) {
        state.withLock { state in
            state.commits[state.commitCount % Self.commitRing] = xid
            state.commitCount += 1
        }
    }

    /// A watermark came through the stream: `<backfill id>:<page tag>:low|high`. For a high watermark
    /// whose page is waiting, returns the page and the rows to emit — nil rows when the page must be
    /// read again (its snapshot missed a transaction that streamed before the low watermark).
    func watermark(_ content: String) -> (page: BackfillPage, rows: [Tuple]?)? {
        let parts = content.split(separator: ":")
        guard parts.count == 3 else { return nil }
        let id = String(parts[0])
        let tag = String(parts[1])
        return state.withLock { state -> (BackfillPage, [Tuple]?)? in
            switch parts[2] {
            case "low":
                guard var window = state.windows[id], window.tag == tag else { return nil }
                if !window.open { openWindows.add(1, ordering: .relaxed) }
                window.open = true
                window.keys.removeAll()
                window.commitsAtLow = state.commitCount
                state.windows[id] = window
                return nil
            case "high":
                guard let page = state.pages[id], page.tag == tag else { return nil }
                state.pages.removeValue(forKey: id)
                let window = state.windows[id]
                if window?.open == true { openWindows.subtract(1, ordering: .relaxed) }
                state.windows[id]?.open = false
                if let snapshot = page.snapshot, let window {
                    let first = max(0, state.commitCount - Self.commitRing)
                    for index in first..<min(window.commitsAtLow, state.commitCount)
                    where snapshot.missed(xid: state.commits[index % Self.commitRing]) {
                        return (page, nil)
                    }
                }
                let changed = window?.keys ?? []
                let rows = changed.isEmpty ? page.rows : page.rows.filter { row in
                    guard let key = Self.key(of: row, relation: page.table.relation) else { return true }
                    return !changed.contains(key)
                }
                return (page, rows)
            default:
                return nil
            }
        }
    }

    /// The row's key columns as text, joined; nil for a table without a key (or a key not sent).
    static func key(of row: Tuple, relation: Relation) -> String? {
        guard !relation.keyColumnIndexes.isEmpty else { return nil }
        var parts: [String] = []
        for index in relation.keyColumnIndexes {
            guard let text = row.text(at: index) else { return nil }
            parts.append(text)
        }
        return parts.joined(separator: "\u{1F}")
    }
}
