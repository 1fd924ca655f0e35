@testable import Pipeline
import PostgresSource
import SluiceCore
import Testing

/// The watermark rule: rows whose key changed between a page's low and high watermark are dropped.
@Suite struct BackfillCoordinatorTests {
    let relation = Relation(id: 1, schema: "public", name: "t", replicaIdentity: .default, columns: [
        Column(name: "id", typeOID: 23, typeModifier: -1, isReplicaIdentity: true, isPrimaryKey: true),
        Column(name: "v", typeOID: 25, typeModifier: -1, isReplicaIdentity: false, isPrimaryKey: false),
    ])

    var table: BackfillTable {
        BackfillTable(name: TableName(schema: "public", name: "t"), relation: relation, keyColumns: ["id"],
                      columnTypes: ["id": "integer", "v": "text"])
    }

    func change(_ id: Int, _ action: Action = .update, table name: String = "t") -> Change {
        let other = Relation(id: 2, schema: "public", name: name, replicaIdentity: .default, columns: relation.columns)
        return Change(action: action, relation: name == "t" ? relation : other, new: Tuple(texts: [String(id), "x"]), old: nil,
                      transaction: TransactionInfo(xid: 1, commitLSN: LSN(10), commitTimestamp: 0), commitIndex: 0)
    }

    func page(_ tag: String, ids: [Int]) -> BackfillPage {
        BackfillPage(backfillID: "b", tag: tag, sink: "s", table: table, rows: ids.map { Tuple(texts: [String($0), "old"]) }, readAt: 0)
    }

    @Test func rowsChangedBetweenTheWatermarksAreDropped() throws {
        let coordinator = BackfillCoordinator()
        coordinator.expect(backfillID: "b", tag: "r-1", table: table.name)
        coordinator.observe(change(2))                   // before the low watermark: the read already holds it
        #expect(coordinator.watermark("b:r-1:low") == nil)
        coordinator.observe(change(3))
        coordinator.observe(change(4, .delete))
        coordinator.observe(change(5, table: "other"))   // another table with the same key
        coordinator.register(page("r-1", ids: [1, 2, 3, 4, 5]))
        let (emitted, rows) = try #require(coordinator.watermark("b:r-1:high"))
        #expect(emitted.tag == "r-1")
        #expect(rows?.map { $0.text(at: 0) } == ["1", "2", "5"])
    }

    @Test func watermarksOfAnotherRunOrPageAreIgnored() {
        let coordinator = BackfillCoordinator()
        coordinator.expect(backfillID: "b", tag: "new-1", table: table.name)
        coordinator.register(page("new-1", ids: [1]))
        #expect(coordinator.watermark("b:old-1:high") == nil, "a replayed watermark of a crashed run")
        #expect(coordinator.watermark("x:new-1:high") == nil, "another backfill")
        #expect(coordinator.watermark("garbage") == nil)
        #expect(coordinator.watermark("b:new-1:high")?.rows?.count == 1)
        #expect(coordinator.watermark("b:new-1:high") == nil, "a page is emitted once")
    }

    @Test func keysAreNotCollectedOutsideAWindow() throws {
        let coordinator = BackfillCoordinator()
        coordinator.expect(backfillID: "b", tag: "r-1", table: table.name)
        _ = coordinator.watermark("b:r-1:low")
        coordinator.observe(change(1))
        coordinator.register(page("r-1", ids: [1, 2]))
        #expect(try #require(coordinator.watermark("b:r-1:high")).rows?.count == 1)
        // The next page's window starts empty.
        coordinator.expect(backfillID: "b", tag: "r-2", table: table.name)
        coordinator.observe(change(3))                   // between pages: not in any window
        _ = coordinator.watermark("b:r-2:low")
        coordinator.register(page("r-2", ids: [3, 4]))
        #expect(try #require(coordinator.watermark("b:r-2:high")).rows?.count == 2)
    }

    @Test func aPageWhoseReadMissedATransactionThatAlreadyStreamedIsReadAgain() throws {
        let coordinator = BackfillCoordinator()
        coordinator.committed(xid: 700)                  // streamed (its commit is in the WAL) …
        coordinator.expect(backfillID: "b", tag: "r-1", table: table.name)
        _ = coordinator.watermark("b:r-1:low")
        coordinator.committed(xid: 701)                  // after the low watermark: the window handles it
        let missed = BackfillPage(backfillID: "b", tag: "r-1", sink: "s", table: table, rows: [Tuple(texts: ["1", "old"])],
                                  snapshot: Snapshot(xmin: 690, xmax: 702, inProgress: [700, 701]), readAt: 0)
        coordinator.register(missed)                     // … but the read did not see it yet
        #expect(try #require(coordinator.watermark("b:r-1:high")).rows == nil)

        coordinator.expect(backfillID: "b", tag: "r-2", table: table.name)
        _ = coordinator.watermark("b:r-2:low")
        let seen = BackfillPage(backfillID: "b", tag: "r-2", sink: "s", table: table, rows: [Tuple(texts: ["1", "new"])],
                                snapshot: Snapshot(xmin: 702, xmax: 702, inProgress: []), readAt: 0)
        coordinator.register(seen)
        #expect(try #require(coordinator.watermark("b:r-2:high")).rows?.count == 1)
    }

    /// A page is handed to Kafka at once, so it is capped at half the sink's max_ack_pending (never
    /// below the first page, never above 10,000 rows).
    @Test func pageSizeIsCappedByHalfOfMaxAckPending() {
        #expect(BackfillWorker.maxPageSize(maxAckPending: 10_000) == 5_000)
        #expect(BackfillWorker.maxPageSize(maxAckPending: 100_000) == 10_000)
        #expect(BackfillWorker.maxPageSize(maxAckPending: 500) == BackfillWorker.firstPageSize)
    }
}
