import Foundation
import Ledger
import PostgresSource
import SluiceCore
import Synchronization
import Testing

/// The same behaviours of both state stores — the SQLite file and a PostgreSQL schema — and what only
/// the PostgreSQL one has: slots sharing a schema, fencing by the leader's term, concurrent migrations.
@Suite
struct StateStoreConformanceTests {
    enum Kind: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case sqlite, postgres
        var testDescription: String { rawValue }
    }

    // MARK: - Parked

    @Test(arguments: Kind.allCases)
    func parkingKeepsTheFirstCopyAndGivesStreamOrder(kind: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let store = try scratch.store(kind)
        let high = (LSN(0x7FFF_FFFF_0000_0000), 0)  // above 2^62: still after the small ones
        try store.park([message("a", high), message("b", (LSN(100), 1)), message("a", (LSN(100), 0)), message("a", (LSN(100), 2))])
        var changed = message("a", (LSN(100), 0))
        changed.value = Array("replayed".utf8)
        var empty = message("e", (LSN(60), 0), sink: "other")
        empty.value = []
        try store.park([changed, message("c", (LSN(50), 0), sink: "other"), empty])
        #expect(try store.parkedMessage(sink: "other", position: at(60, 0))?.value == [])

        #expect(try store.parkedGroups(sink: "s") == ["a": 3, "b": 1])
        #expect(try store.parkedCount(sink: "s") == 4)
        #expect(try store.firstParked(sink: "s", group: "a")?.position == at(100, 0))
        #expect(try store.parked(sink: "s").map(\.position) == [at(100, 0), at(100, 1), at(100, 2), MessagePosition(commitLSN: high.0, commitIndex: 0)])
        #expect(try store.parked(sink: "s", limit: 2).count == 2)
        #expect(try store.parkedMessage(sink: "s", position: at(100, 0)) == message("a", (LSN(100), 0)), "the first copy stays")
        #expect(try store.parkedMessage(sink: "s", position: at(1, 0)) == nil)
        #expect(try store.parkedGroups(sink: "other") == ["c": 1, "e": 1])
        try store.unpark(sink: "s", position: at(100, 0))
        #expect(try store.firstParked(sink: "s", group: "a")?.position == at(100, 2))
        #expect(try store.firstParked(sink: "s", group: "none") == nil)
    }

    /// Thousands of rows in one apply (as when Kafka is away and whole groups park): the PostgreSQL store
    /// writes them in several multi-row statements; every row and error lands, in order.
    @Test(arguments: Kind.allCases)
    func aLargeApplyParksUnparksAndRecordsEveryRow(kind: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let store = try scratch.store(kind)
        let messages = (0..<2_500).map { index in
            var parked = message("g\(index % 7)", (LSN(UInt64(1_000 + index / 3)), index % 3))
            parked.lastError = index.isMultiple(of: 2) ? "refused \(index)" : nil
            parked.deliverCount = 1
            return parked
        }
        try store.apply(park: messages, unpark: [], attempts: [], sink: "s")
        #expect(try store.parkedCount(sink: "s") == 2_500)
        #expect(try store.parked(sink: "s", limit: 3_000).map(\.position) == messages.map(\.position).sorted())
        #expect(try store.attemptErrors(sink: "s", position: messages[2].position).map(\.error) == ["refused 2"])
        #expect(try store.attemptErrors(sink: "s", position: messages[3].position).isEmpty)

        let gone = messages.prefix(1_800).map(\.position)
        let retried = messages.suffix(700).map { ($0.position, 2, "again \($0.position)") }
        try store.apply(park: [messages[0]], unpark: gone, attempts: retried, sink: "s")
        #expect(try store.parkedCount(sink: "s") == 700, "a message parked and unparked in one apply is gone")
        let last = try #require(messages.last)
        #expect(try store.parkedMessage(sink: "s", position: last.position)?.deliverCount == 2)
        #expect(try store.parkedMessage(sink: "s", position: last.position)?.lastError == "again \(last.position)")
        #expect(try store.attemptErrors(sink: "s", position: last.position).map(\.error) == ["again \(last.position)"])
        #expect(try store.attemptErrors(sink: "s", position: messages[2_498].position).map(\.error)
            == ["again \(messages[2_498].position)", "refused 2498"], "newest first")
    }

    @Test(arguments: Kind.allCases)
    func applyUnparksAndRecordsAttemptsKeepingTwentyErrors(kind: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let store = try scratch.store(kind)
        var failing = message("a", (LSN(100), 0))
        failing.lastError = "refused at park"
        failing.deliverCount = 1
        try store.park([failing, message("a", (LSN(200), 0))])
        #expect(try store.attemptErrors(sink: "s", position: at(100, 0)).map(\.error) == ["refused at park"])

        for attempt in 2...25 {
            try store.apply(park: [], unpark: attempt == 25 ? [at(200, 0)] : [],
                            attempts: [(at(100, 0), attempt, "error \(attempt)")], sink: "s")
        }
        let errors = try store.attemptErrors(sink: "s", position: at(100, 0))
        #expect(errors.map(\.error) == (6...25).reversed().map { "error \($0)" }, "the newest 20, newest first")
        let parked = try #require(try store.parkedMessage(sink: "s", position: at(100, 0)))
        #expect(parked.deliverCount == 25 && parked.lastError == "error 25")
        #expect(parked.lastAttemptAt.map { abs($0.timeIntervalSinceNow) < 60 } == true)
        #expect(try store.parkedMessage(sink: "s", position: at(200, 0)) == nil, "unparked in the same apply")
    }

    // MARK: - Delivered, bodies, cancelled

    @Test(arguments: Kind.allCases)
    func deliveredKeepsTheNewestThousandPerSink(kind: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let store = try scratch.store(kind)
        try store.recordDelivered((0..<700).map { delivered($0) })
        try store.recordDelivered((700..<1_200).map { delivered($0) } + [delivered(5, sink: "other")])
        let kept = try store.recentlyDelivered(sink: "s", limit: 5_000)
        #expect(kept.count == 1_000)
        #expect(kept.first == delivered(1_199) && kept.last == delivered(200), "newest first")
        #expect(try store.deliveredMessage(sink: "s", position: at(199, 0)) == nil)
        #expect(try store.deliveredMessage(sink: "s", position: at(900, 0)) == delivered(900))
        #expect(try store.recentlyDelivered(sink: "other") == [delivered(5, sink: "other")])
    }

    @Test(arguments: Kind.allCases)
    func recentBodiesKeepTheNewestTwenty(kind: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let store = try scratch.store(kind)
        try store.replaceRecentBodies(sink: "s", (1...25).map { Array("body \($0)".utf8) })
        #expect(try store.recentBodies(sink: "s", limit: 100) == (6...25).reversed().map { Array("body \($0)".utf8) })
        #expect(try store.recentBodies(sink: "s", limit: 2) == [Array("body 25".utf8), Array("body 24".utf8)])
        try store.replaceRecentBodies(sink: "s", [[0, 255, 1]])
        #expect(try store.recentBodies(sink: "s") == [[0, 255, 1]])
        #expect(try store.recentBodies(sink: "other").isEmpty)
    }

    @Test(arguments: Kind.allCases)
    func cancellingAParkedMessageMovesItOnce(kind: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let store = try scratch.store(kind)
        var parked = message("a", (LSN(100), 0))
        parked.deliverCount = 3
        parked.lastError = "broker down"
        try store.park([parked])
        try store.recordCancelled(CancelledMessage(sink: "s", group: "g", position: at(50, 0), table: "public.t", topic: "t",
                                                   key: nil, size: 5_000_000, reason: "too_large", error: "too large",
                                                   cancelledAt: Date(timeIntervalSince1970: 1_700_000_000.25)))

        // Eight cancels at once: the message is moved exactly once.
        let results = Mutex<[CancelledMessage?]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let result = try? store.cancelParked(sink: "s", position: at(100, 0), reason: "user", action: "insert", recordPKs: ["7"])
            results.withLock { $0.append(result) }
        }
        let moved = results.withLock { $0.compactMap { $0 } }
        #expect(moved.count == 1)
        #expect(moved.first?.value == parked.value && moved.first?.error == "broker down" && moved.first?.deliverCount == 3)
        #expect(try store.parkedCount(sink: "s") == 0 && store.cancelledCount(sink: "s") == 2)
        let found = try #require(try store.cancelledMessage(sink: "s", position: at(100, 0)))
        var stored = try #require(moved.first)
        #expect(abs(found.cancelledAt.timeIntervalSince(stored.cancelledAt)) < 0.001)
        stored.cancelledAt = found.cancelledAt  // kept as seconds since 1970: exact to well under a microsecond
        #expect(found == stored && found.recordPKs == ["7"] && found.action == "insert" && found.key == "a")
        #expect(try store.cancelled(sink: "s").map(\.reason) == ["user", "too_large"], "newest first")
        #expect(try store.cancelledMessage(sink: "s", position: at(1, 0)) == nil)
    }

    @Test func aCancelThatCannotRecordLeavesTheMessageParked() throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let schema = scratch.newSchema()
        let store = try scratch.postgres(schema: schema)
        try store.park([message("a", (LSN(100), 0))])
        let admin = try scratch.admin()
        try admin.simpleQuery("""
            CREATE FUNCTION \(schema).refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON \(schema).cancelled FOR EACH ROW EXECUTE FUNCTION \(schema).refuse()
            """)
        #expect(throws: PostgresError.self) {
            try store.cancelParked(sink: "s", position: at(100, 0), reason: "user", action: nil, recordPKs: [])
        }
        #expect(try store.parkedCount(sink: "s") == 1 && store.cancelledCount(sink: "s") == 0)
    }

    // MARK: - Backfills

    @Test(arguments: Kind.allCases)
    func backfillsAreSavedReplacedAndListedNewestFirst(kind: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let store = try scratch.store(kind)
        let first = BackfillRecord(id: "b1", sink: "s", table: "public.t", sortColumn: "id", startPosition: "0/1",
                                   rowsInitialCount: 10, insertedAt: Date(timeIntervalSince1970: 1_700_000_000))
        var second = BackfillRecord(id: "b2", sink: "t", table: "public.u", insertedAt: Date(timeIntervalSince1970: 1_700_000_100))
        try store.save(first)
        try store.save(second)
        second.state = .completed
        second.cursor = ["42", "x,\"y\""]
        second.rowsProcessedCount = 9
        second.completedAt = Date(timeIntervalSince1970: 1_700_000_200.5)
        second.lastError = "none"
        try store.save(second)
        #expect(try store.backfills() == [second, first])
        #expect(try store.backfills(sink: "s") == [first])
        #expect(try store.backfill(id: "b2") == second)
        #expect(try store.backfill(id: "nope") == nil)
        #expect(try store.markSeen(sink: "s") == true)
        #expect(try store.markSeen(sink: "s") == false)
        #expect(try store.markSeen(sink: "t") == true)
    }

    // MARK: - Copying between stores

    @Test(arguments: [(Kind.sqlite, Kind.postgres), (Kind.postgres, Kind.sqlite)])
    func aSnapshotRestoresIntoTheOtherKindUnchanged(from source: Kind, into target: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let original = try scratch.store(source)
        try fill(original)
        let snapshot = try original.snapshot()
        #expect(snapshot.parked.count == 2 && snapshot.attemptErrors.count == 4 && snapshot.delivered.count == 3
                && snapshot.cancelled.count == 2 && snapshot.recentBodies.count == 2 && snapshot.backfills.count == 2
                && snapshot.seenSinks.count == 2, "\(snapshot.summary)")
        let copy = try scratch.store(target)
        try copy.restore(snapshot)
        #expect(try copy.snapshot() == snapshot)
        #expect(try copy.attemptErrors(sink: "s", position: at(100, 0)).map(\.error) == ["e3", "e2", "parked"])
        #expect(try copy.markSeen(sink: "s") == false)
    }

    @Test(arguments: Kind.allCases)
    func restoreRefusesAStoreThatHoldsState(kind: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let source = try scratch.store(.sqlite)
        try fill(source)
        let snapshot = try source.snapshot()

        let parkedTarget = try scratch.store(kind)
        try parkedTarget.park([message("z", (LSN(1), 0))])
        let error = #expect(throws: StateStoreError.self) { try parkedTarget.restore(snapshot) }
        #expect(error?.code == .notEmpty && error?.message.contains("parked") == true, "\(error.map(String.init(describing:)) ?? "")")
        #expect(try parkedTarget.recentlyDelivered(sink: "s").isEmpty, "nothing written")

        let backfillTarget = try scratch.store(kind)
        try backfillTarget.save(BackfillRecord(id: "b", sink: "s", table: "public.t"))
        let backfillError = #expect(throws: StateStoreError.self) { try backfillTarget.restore(snapshot) }
        #expect(backfillError?.message.contains("backfill") == true)
    }

    // MARK: - PostgreSQL: slots, fencing, migrations

    @Test func twoSlotsInOneSchemaDoNotSeeEachOther() throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let schema = scratch.newSchema()
        let a = try scratch.postgres(schema: schema, slot: "slot_a")
        let b = try scratch.postgres(schema: schema, slot: "slot_b")
        try fill(a)
        #expect(b.location == "PostgreSQL schema \(schema) (slot slot_b)")
        #expect(try b.parkedCount(sink: "s") == 0 && b.recentlyDelivered(sink: "s").isEmpty && b.backfills().isEmpty)
        #expect(try b.recentBodies(sink: "s").isEmpty && b.cancelledCount(sink: "s") == 0)
        #expect(try b.snapshot() == StateSnapshot())
        #expect(try b.markSeen(sink: "s") == true, "seen per slot")
        try b.restore(try a.snapshot())  // slot_a's rows do not count as b's
        #expect(try b.snapshot().parked == a.snapshot().parked)
        try b.unpark(sink: "s", position: at(100, 0))
        #expect(try a.parkedCount(sink: "s") == 2 && b.parkedCount(sink: "s") == 1)
    }

    @Test func aStandbyDoesNotWrite() throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let store = try scratch.postgres(access: .standby)
        let error = #expect(throws: StateStoreError.self) { try store.park([message("a", (LSN(1), 0))]) }
        #expect(error?.isNotLeader == true)
        #expect(error?.message.hasPrefix("this instance is not the leader (") == true)
        #expect(error?.message.hasSuffix("it does not write the shared state") == true, "\(error?.message ?? "")")
        #expect(throws: StateStoreError.self) { try store.markSeen(sink: "s") }
        #expect(try store.parkedCount(sink: "s") == 0, "reads work")
        #expect(store.explainWriteFailure(error!, needing: 10, for: "parking").contains("not the leader"))
        store.access = .unfenced
        try store.park([message("a", (LSN(1), 0))])
        #expect(try store.parkedCount(sink: "s") == 1)
    }

    @Test func aLeaderWritesOnlyWhileItsTermHolds() throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let schema = scratch.newSchema()
        let store = try scratch.postgres(schema: schema, access: .leader(term: 7))
        #expect(throws: StateStoreError.self, "no leader row yet") { try store.park([message("a", (LSN(1), 0))]) }

        let admin = try scratch.admin()
        try admin.query("""
            INSERT INTO \(schema).leader (slot, instance, term, lock_pid, renewed_at, expires_at)
            VALUES ($1, 'test', 7, pg_backend_pid(), now(), now() + interval '30 seconds')
            """, [store.slot])
        try store.park([message("a", (LSN(1), 0))])
        try store.recordDelivered([delivered(1)])

        try admin.query("UPDATE \(schema).leader SET term = 8, instance = 'other' WHERE slot = $1", [store.slot])
        let error = #expect(throws: StateStoreError.self) { try store.park([message("a", (LSN(2), 0))]) }
        #expect(error?.isNotLeader == true && error?.message.contains("term 7") == true, "\(error?.message ?? "")")
        #expect(throws: StateStoreError.self) { try store.cancelParked(sink: "s", position: at(1, 0), reason: "user", action: nil, recordPKs: []) }
        #expect(try store.parked(sink: "s").map(\.position) == [at(1, 0)], "nothing written after the term ended")

        store.access = .leader(term: 8)
        try store.unpark(sink: "s", position: at(1, 0))
        #expect(try store.parkedCount(sink: "s") == 0)
    }

    @Test(arguments: Kind.allCases)
    func aTwentyMegabyteValueRoundTrips(kind: Kind) throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let store = try scratch.store(kind)
        var large = message("a", (LSN(100), 0))
        let block = (0..<65_536).map { _ in UInt8.random(in: 0...255) }
        large.value.removeAll(keepingCapacity: true)
        large.value.reserveCapacity(20 * 1_048_576)
        for index in 0..<320 {  // 320 blocks of 64 KB, each told apart by its first byte
            large.value.append(UInt8(index % 256))
            large.value.append(contentsOf: block.dropFirst())
        }
        large.key = [0, 1, 0, 255]
        try store.park([large])
        #expect(try store.parkedMessage(sink: "s", position: at(100, 0)) == large)
        let cancelled = try store.cancelParked(sink: "s", position: at(100, 0), reason: "user", action: nil, recordPKs: [])
        #expect(try store.cancelledMessage(sink: "s", position: at(100, 0))?.value == large.value)
        #expect(cancelled?.size == 20 * 1_048_576)
    }

    @Test func theSchemaMigratesOnceEvenWhenInstancesStartTogether() throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let schema = scratch.newSchema()
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { index in
            do { _ = try scratch.postgres(schema: schema, slot: "slot_\(index)") } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        let again = try scratch.postgres(schema: schema)  // and once more, after
        try again.park([message("a", (LSN(1), 0))])
        let versions = try scratch.admin().query("SELECT version FROM \(schema).schema_migrations").rows.map { $0[0] }
        #expect(versions == ["v1"])
    }

    @Test func aSchemaNameThatIsNotAnIdentifierIsRefused() throws {
        let scratch = Scratch()
        let error = #expect(throws: StateStoreError.self) {
            try PostgresStateStore(parameters: [("dbname", scratch.url)], schema: "state; drop", slot: "s")
        }
        #expect(error?.code == .invalidSchema && error?.message.hasPrefix("state.schema:") == true)
    }

    @Test func aTerminatedConnectionIsReplaced() throws {
        let scratch = Scratch()
        defer { scratch.removeAll() }
        let name = TestEnvironment.uniqueName("sluice_state")
        let schema = scratch.newSchema()
        let store = try scratch.postgres(schema: schema, applicationName: name)
        try store.park([message("a", (LSN(1), 0))])
        let ended = try scratch.admin().query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", [name])
        #expect(ended.rows.count == 1)
        Thread.sleep(forTimeInterval: 0.2)
        #expect(try store.parkedCount(sink: "s") == 1, "a read on a new connection")
        _ = try scratch.admin().query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", [name])
        Thread.sleep(forTimeInterval: 0.2)
        try store.park([message("a", (LSN(2), 0))])
        #expect(try store.parkedCount(sink: "s") == 2)
        let failure = store.explainWriteFailure(PostgresError(.query, "permission denied for schema x"), needing: 1, for: "parking")
        #expect(failure.contains("schema \(schema)") && failure.contains("permission denied")
                && failure.hasSuffix("goes on by itself once a write succeeds"))
    }

    // MARK: - Helpers

    func at(_ lsn: UInt64, _ index: Int) -> MessagePosition { MessagePosition(commitLSN: LSN(lsn), commitIndex: index) }

    func message(_ group: String, _ position: (LSN, Int), sink: String = "s") -> ParkedMessage {
        ParkedMessage(sink: sink, group: group, position: MessagePosition(commitLSN: position.0, commitIndex: position.1),
                      table: "public.t", topic: "t", key: Array(group.utf8), value: Array("{\"v\":\(position.0.rawValue)}".utf8),
                      parkedAt: Date(timeIntervalSince1970: 1_700_000_000.5))
    }

    func delivered(_ lsn: UInt64, sink: String = "s") -> DeliveredMessage {
        DeliveredMessage(sink: sink, group: "g\(lsn % 3)", position: at(lsn, 0), table: "public.t", topic: "t",
                         key: lsn.isMultiple(of: 2) ? "k\(lsn)" : nil, size: Int(lsn) + 10, partition: Int32(lsn % 4),
                         offset: Int64(lsn) * 1_000_000_007, deliverCount: 1 + Int(lsn % 2),
                         deliveredAt: Date(timeIntervalSince1970: 1_700_000_000 + Double(lsn) / 4),
                         action: lsn.isMultiple(of: 5) ? nil : "update", recordPKs: ["\(lsn)", "a\"b"])
    }

    /// Some of everything: parked (with attempt errors, one unparked since), delivered, cancelled, bodies,
    /// backfills, seen sinks — with times taken from the clock as sluice does.
    func fill(_ store: any StateStore) throws {
        var failing = message("a", (LSN(100), 0))
        failing.lastError = "parked"
        failing.deliverCount = 1
        try store.park([failing, message("b", (LSN(100), 1)), message("c", (LSN(300), 0), sink: "t")])
        try store.recordAttempt(sink: "s", position: at(100, 0), deliverCount: 2, error: "e2")
        try store.recordAttempt(sink: "s", position: at(100, 0), deliverCount: 3, error: "e3")
        try store.recordAttempt(sink: "t", position: at(300, 0), deliverCount: 1, error: "t1")
        try store.unpark(sink: "t", position: at(300, 0))
        try store.recordDelivered([delivered(10), delivered(11), delivered(12, sink: "t")])
        try store.recordCancelled(CancelledMessage(sink: "s", group: "g", position: at(40, 0), table: "public.t", topic: "t",
                                                   key: "k", size: 9_000_000, reason: "too_large", error: "Message size too large"))
        var toCancel = message("d", (LSN(200), 3))
        toCancel.key = nil
        try store.park([toCancel])
        _ = try store.cancelParked(sink: "s", position: at(200, 3), reason: "user", action: "delete", recordPKs: ["1", "2"])
        try store.replaceRecentBodies(sink: "s", [Array("one".utf8), [0, 1, 2, 255]])
        try store.replaceRecentBodies(sink: "t", [Array("two".utf8)])
        try store.save(BackfillRecord(id: "b1", sink: "s", table: "public.t", state: .active, sortColumn: "id", cursor: ["5"],
                                      rowsInitialCount: 100, rowsProcessedCount: 5, rowsIngestedCount: 4))
        try store.save(BackfillRecord(id: "b2", sink: "t", table: "public.u", state: .failed, completedAt: Date(),
                                      canceledAt: Date(), lastError: "boom"))
        _ = try store.markSeen(sink: "s")
        _ = try store.markSeen(sink: "t")
    }
}

/// Stores on scratch space — temporary files, fresh schemas of the test server — removed by `removeAll`.
final class Scratch: @unchecked Sendable {
    private let lock = NSLock()
    private var schemas: [String] = []
    private var files: [String] = []

    /// The test server's database (scripts/test started it).
    var url: String { (try? TestEnvironment.current().postgresURL) ?? "" }

    func store(_ kind: StateStoreConformanceTests.Kind) throws -> any StateStore {
        switch kind {
        case .sqlite: try sqlite()
        case .postgres: try postgres()
        }
    }

    func sqlite() throws -> SQLiteStateStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("state")).path
        lock.withLock { files.append(directory) }
        return try SQLiteStateStore(path: directory + "/sluice-state.sqlite")
    }

    /// A schema name of this test's own (created by the first store that opens it).
    func newSchema() -> String {
        let name = TestEnvironment.uniqueName("state")
        lock.withLock { schemas.append(name) }
        return name
    }

    func postgres(schema: String? = nil, slot: String = "slot_a", access: PostgresStateStore.WriteAccess = .unfenced,
                  applicationName: String = "sluice-state-test") throws -> PostgresStateStore {
        let environment = try TestEnvironment.current()
        return try PostgresStateStore(parameters: [("dbname", environment.postgresURL)], schema: schema ?? newSchema(), slot: slot,
                                      applicationName: applicationName, access: access)
    }

    /// A connection of its own, as another instance (or an operator) would have.
    func admin() throws -> PostgresConnection {
        try PostgresConnection(parameters: [("dbname", TestEnvironment.current().postgresURL)])
    }

    func removeAll() {
        let (schemas, files) = lock.withLock { (self.schemas, self.files) }
        if !schemas.isEmpty, let admin = try? admin() {
            _ = try? admin.query("SET client_min_messages TO warning")  // no notice per dropped table
            for schema in schemas { _ = try? admin.query("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        }
        for file in files { try? FileManager.default.removeItem(atPath: file) }
    }
}
