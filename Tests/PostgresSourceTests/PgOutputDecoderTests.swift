import Testing
@testable import PostgresSource
import SluiceCore

/// Builds pgoutput messages byte by byte, big-endian, as the server sends them.
final class Bytes {
    var bytes: [UInt8] = []

    init(_ kind: Character) { bytes = [kind.asciiValue!] }

    @discardableResult func u8(_ value: UInt8) -> Self { bytes.append(value); return self }
    @discardableResult func char(_ value: Character) -> Self { u8(value.asciiValue!) }
    @discardableResult func u16(_ value: UInt16) -> Self { be(UInt64(value), 2) }
    @discardableResult func u32(_ value: UInt32) -> Self { be(UInt64(value), 4) }
    @discardableResult func i32(_ value: Int32) -> Self { u32(UInt32(bitPattern: value)) }
    @discardableResult func u64(_ value: UInt64) -> Self { be(value, 8) }
    @discardableResult func i64(_ value: Int64) -> Self { u64(UInt64(bitPattern: value)) }
    @discardableResult func cString(_ text: String) -> Self {
        bytes.append(contentsOf: text.utf8)
        return u8(0)
    }
    @discardableResult func raw(_ data: [UInt8]) -> Self { bytes.append(contentsOf: data); return self }

    private func be(_ value: UInt64, _ size: Int) -> Self {
        for shift in stride(from: (size - 1) * 8, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        return self
    }

    enum Value {
        case null, toast, text(String), binary([UInt8])
    }

    /// TupleData.
    @discardableResult func tuple(_ values: [Value]) -> Self {
        u16(UInt16(values.count))
        for value in values {
            switch value {
            case .null: char("n")
            case .toast: char("u")
            case .text(let text):
                char("t")
                u32(UInt32(text.utf8.count))
                raw(Array(text.utf8))
            case .binary(let data):
                char("b")
                u32(UInt32(data.count))
                raw(data)
            }
        }
        return self
    }
}

/// The texts of a decoded tuple, with markers for NULL, unchanged TOAST and binary cells.
func describe(_ tuple: Tuple) -> [String] {
    tuple.cells.map { cell in
        switch cell {
        case .null: "<null>"
        case .unchangedToast: "<toast>"
        case .text(let range): String(decoding: tuple.bytes[range], as: UTF8.self)
        case .binary(let range): "<binary:" + tuple.bytes[range].map { String($0, radix: 16) }.joined(separator: ",") + ">"
        }
    }
}

@Suite("PgOutputDecoder")
struct PgOutputDecoderTests {
    @Test func begin() throws {
        let b = Bytes("B")
        b.u64(0x16_B374_D848).i64(849_261_600_123_456).u32(771)
        guard case .begin(let info) = try PgOutputDecoder.decode(b.bytes) else { Issue.record("not begin"); return }
        #expect(info.commitLSN == LSN(0x16_B374_D848))
        #expect(info.commitLSN.description == "16/B374D848")
        #expect(info.commitTimestamp == 849_261_600_123_456)
        #expect(info.xid == 771)
    }

    @Test func beginWithTimestampBefore2000() throws {
        let b = Bytes("B")
        b.u64(1).i64(-1).u32(UInt32.max)
        guard case .begin(let info) = try PgOutputDecoder.decode(b.bytes) else { Issue.record("not begin"); return }
        #expect(info.commitTimestamp == -1)
        #expect(info.xid == UInt32.max)
    }

    @Test func commit() throws {
        let b = Bytes("C")
        b.u8(0).u64(0x1_0000_0010).u64(0x1_0000_0040).i64(42)
        guard case .commit(let commitLSN, let endLSN, let timestamp) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not commit"); return
        }
        #expect(commitLSN == LSN(0x1_0000_0010))
        #expect(endLSN == LSN(0x1_0000_0040))
        #expect(timestamp == 42)
    }

    @Test func origin() throws {
        let b = Bytes("O")
        b.u64(0xABCD).cString("node_a")
        guard case .origin(let lsn, let name) = try PgOutputDecoder.decode(b.bytes) else { Issue.record("not origin"); return }
        #expect(lsn == LSN(0xABCD))
        #expect(name == "node_a")
    }

    @Test func relation() throws {
        let b = Bytes("R")
        b.u32(16_384).cString("public").cString("users").char("d").u16(3)
        b.u8(1).cString("id").u32(23).i32(-1)
        b.u8(0).cString("name").u32(1043).i32(68) // varchar(64): typmod 64 + 4
        b.u8(0).cString("price").u32(1700).i32(-1)
        guard case .relation(let relation) = try PgOutputDecoder.decode(b.bytes) else { Issue.record("not relation"); return }
        #expect(relation.id == 16_384)
        #expect(relation.schema == "public")
        #expect(relation.name == "users")
        #expect(relation.replicaIdentity == .default)
        #expect(relation.columns.map(\.name) == ["id", "name", "price"])
        #expect(relation.columns.map(\.typeOID) == [23, 1043, 1700])
        #expect(relation.columns.map(\.typeModifier) == [-1, 68, -1])
        #expect(relation.columns.map(\.isKey) == [true, false, false])
    }

    @Test func relationInPgCatalogAndFullIdentity() throws {
        let b = Bytes("R")
        b.u32(1).cString("").cString("pg_thing").char("f").u16(2)
        b.u8(1).cString("a").u32(25).i32(-1)
        b.u8(1).cString("b").u32(25).i32(-1)
        guard case .relation(let relation) = try PgOutputDecoder.decode(b.bytes) else { Issue.record("not relation"); return }
        #expect(relation.schema == "pg_catalog")
        #expect(relation.replicaIdentity == .full)
        #expect(relation.columns.map(\.isKey) == [true, true])
    }

    @Test(arguments: [("d", Relation.ReplicaIdentity.default), ("n", .nothing), ("f", .full), ("i", .index)] as [(Character, Relation.ReplicaIdentity)])
    func relationIdentities(byte: Character, identity: Relation.ReplicaIdentity) throws {
        let b = Bytes("R")
        b.u32(1).cString("s").cString("t").char(byte).u16(0)
        guard case .relation(let relation) = try PgOutputDecoder.decode(b.bytes) else { Issue.record("not relation"); return }
        #expect(relation.replicaIdentity == identity)
        #expect(relation.columns.isEmpty)
    }

    @Test func relationWithUnknownIdentityThrows() {
        let b = Bytes("R")
        b.u32(1).cString("s").cString("t").char("x").u16(0)
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(b.bytes) }
    }

    @Test func type() throws {
        let b = Bytes("Y")
        b.u32(70_000).cString("public").cString("mood")
        guard case .type(let oid, let schema, let name) = try PgOutputDecoder.decode(b.bytes) else { Issue.record("not type"); return }
        #expect(oid == 70_000)
        #expect(schema == "public")
        #expect(name == "mood")
    }

    @Test func insertWithNullToastTextAndBinaryCells() throws {
        let b = Bytes("I")
        b.u32(16_384).char("N").tuple([.text("7"), .null, .toast, .text(""), .text("héllo 👋"), .binary([0, 0xFF])])
        guard case .insert(let relationID, let new) = try PgOutputDecoder.decode(b.bytes) else { Issue.record("not insert"); return }
        #expect(relationID == 16_384)
        #expect(describe(new) == ["7", "<null>", "<toast>", "", "héllo 👋", "<binary:0,ff>"])
        #expect(new.text(at: 0) == "7")
        #expect(new.text(at: 1) == nil)
        #expect(new.text(at: 4) == "héllo 👋")
    }

    @Test func insertWithoutNMarkerThrows() {
        let b = Bytes("I")
        b.u32(1).char("K").tuple([.text("1")])
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(b.bytes) }
    }

    @Test func updateWithoutOldTuple() throws {
        let b = Bytes("U")
        b.u32(5).char("N").tuple([.text("1"), .text("new"), .toast])
        guard case .update(let relationID, let old, let keyOnly, let new) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not update"); return
        }
        #expect(relationID == 5)
        #expect(old == nil)
        #expect(keyOnly == false)
        #expect(describe(new) == ["1", "new", "<toast>"])
    }

    @Test func updateWithKeyTuple() throws {
        let b = Bytes("U")
        b.u32(5).char("K").tuple([.text("1"), .null, .null]).char("N").tuple([.text("2"), .text("x"), .null])
        guard case .update(_, let old, let keyOnly, let new) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not update"); return
        }
        let oldTuple = try #require(old)
        #expect(keyOnly)
        #expect(describe(oldTuple) == ["1", "<null>", "<null>"])
        #expect(describe(new) == ["2", "x", "<null>"])
    }

    @Test func updateWithOldTuple() throws {
        let b = Bytes("U")
        b.u32(5).char("O").tuple([.text("1"), .text("before")]).char("N").tuple([.text("1"), .text("after")])
        guard case .update(_, let old, let keyOnly, let new) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not update"); return
        }
        let oldTuple = try #require(old)
        #expect(!keyOnly)
        #expect(describe(oldTuple) == ["1", "before"])
        #expect(describe(new) == ["1", "after"])
    }

    @Test func updateWithBadMarkerThrows() {
        let b = Bytes("U")
        b.u32(5).char("X").tuple([.text("1")])
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(b.bytes) }
        let c = Bytes("U")
        c.u32(5).char("O").tuple([.text("1")]).char("O").tuple([.text("1")])
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(c.bytes) }
    }

    @Test func deleteWithKeyTuple() throws {
        let b = Bytes("D")
        b.u32(9).char("K").tuple([.text("42"), .null])
        guard case .delete(let relationID, let old, let keyOnly) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not delete"); return
        }
        #expect(relationID == 9)
        #expect(keyOnly)
        #expect(describe(old) == ["42", "<null>"])
    }

    @Test func deleteWithOldTuple() throws {
        let b = Bytes("D")
        b.u32(9).char("O").tuple([.text("42"), .text("gone")])
        guard case .delete(_, let old, let keyOnly) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not delete"); return
        }
        #expect(!keyOnly)
        #expect(describe(old) == ["42", "gone"])
    }

    @Test func deleteWithoutOldTupleThrows() {
        let b = Bytes("D")
        b.u32(9).char("N").tuple([.text("42")])
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(b.bytes) }
    }

    @Test(arguments: [(UInt8(0), false, false), (1, true, false), (2, false, true), (3, true, true)])
    func truncate(options: UInt8, cascade: Bool, restartIdentity: Bool) throws {
        let b = Bytes("T")
        b.u32(3).u8(options).u32(10).u32(20).u32(30)
        guard case .truncate(let ids, let isCascade, let isRestart) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not truncate"); return
        }
        #expect(ids == [10, 20, 30])
        #expect(isCascade == cascade)
        #expect(isRestart == restartIdentity)
    }

    @Test func transactionalMessage() throws {
        let b = Bytes("M")
        b.u8(1).u64(0x2_0000_0000).cString("sluice-heartbeat").u32(5).raw(Array("hello".utf8))
        guard case .message(let transactional, let lsn, let prefix, let content) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not message"); return
        }
        #expect(transactional)
        #expect(lsn == LSN(0x2_0000_0000))
        #expect(prefix == "sluice-heartbeat")
        #expect(content == Array("hello".utf8))
    }

    @Test func nonTransactionalMessageWithBinaryContent() throws {
        let b = Bytes("M")
        b.u8(0).u64(77).cString("p").u32(4).raw([0, 1, 0xFE, 0xFF])
        guard case .message(let transactional, let lsn, let prefix, let content) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not message"); return
        }
        #expect(!transactional)
        #expect(lsn == LSN(77))
        #expect(prefix == "p")
        #expect(content == [0, 1, 0xFE, 0xFF])
    }

    @Test func emptyMessageContent() throws {
        let b = Bytes("M")
        b.u8(0).u64(1).cString("").u32(0)
        guard case .message(_, _, let prefix, let content) = try PgOutputDecoder.decode(b.bytes) else {
            Issue.record("not message"); return
        }
        #expect(prefix == "")
        #expect(content.isEmpty)
    }

    // MARK: - Malformed input throws, never traps

    static func fixtures() -> [[UInt8]] {
        let begin = Bytes("B"); begin.u64(1).i64(2).u32(3)
        let commit = Bytes("C"); commit.u8(0).u64(1).u64(2).i64(3)
        let origin = Bytes("O"); origin.u64(1).cString("o")
        let relation = Bytes("R")
        relation.u32(1).cString("s").cString("t").char("d").u16(1).u8(1).cString("c").u32(23).i32(-1)
        let type = Bytes("Y"); type.u32(1).cString("s").cString("t")
        let insert = Bytes("I"); insert.u32(1).char("N").tuple([.text("abc"), .null, .toast, .binary([1])])
        let update = Bytes("U"); update.u32(1).char("O").tuple([.text("a")]).char("N").tuple([.text("b")])
        let delete = Bytes("D"); delete.u32(1).char("K").tuple([.text("a")])
        let truncate = Bytes("T"); truncate.u32(2).u8(0).u32(1).u32(2)
        let message = Bytes("M"); message.u8(1).u64(1).cString("p").u32(3).raw([1, 2, 3])
        return [begin, commit, origin, relation, type, insert, update, delete, truncate, message].map(\.bytes)
    }

    @Test func everyFixtureDecodes() throws {
        for fixture in Self.fixtures() {
            _ = try PgOutputDecoder.decode(fixture)
        }
    }

    @Test func everyTruncationThrows() {
        for fixture in Self.fixtures() {
            for length in 0..<fixture.count {
                #expect(throws: PgOutputError.self, "\(Character(Unicode.Scalar(fixture[0]))) cut to \(length) bytes") {
                    try PgOutputDecoder.decode(Array(fixture.prefix(length)))
                }
            }
        }
    }

    @Test func emptyInputThrows() {
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode([]) }
    }

    @Test func truncatedErrorText() {
        let b = Bytes("B")
        b.u64(1)
        do {
            _ = try PgOutputDecoder.decode(b.bytes)
            Issue.record("expected an error")
        } catch {
            #expect(String(describing: error) == "pgoutput: message ends early at byte 9 of 9")
        }
    }

    @Test func lengthsLargerThanTheMessageThrow() {
        let text = Bytes("I")
        text.u32(1).char("N").u16(1).char("t").u32(UInt32.max).raw([1, 2])
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(text.bytes) }
        let content = Bytes("M")
        content.u8(1).u64(1).cString("p").u32(UInt32.max)
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(content.bytes) }
        let truncate = Bytes("T")
        truncate.u32(UInt32.max).u8(0).u32(1)
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(truncate.bytes) }
        let columns = Bytes("R")
        columns.u32(1).cString("s").cString("t").char("d").u16(UInt16.max)
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(columns.bytes) }
        let cells = Bytes("I")
        cells.u32(1).char("N").u16(UInt16.max)
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode(cells.bytes) }
    }

    // MARK: - Protocol 2 (streamed transactions)

    @Test func streamStartStopCommitAbort() throws {
        guard case .streamStart(let xid, let first) = try PgOutputDecoder.decode(Bytes("S").u32(77).u8(1).bytes) else {
            Issue.record("not Stream Start"); return
        }
        #expect(xid == 77 && first)
        guard case .streamStop = try PgOutputDecoder.decode(Bytes("E").bytes) else { Issue.record("not Stream Stop"); return }
        guard case .streamCommit(let cx, let commitLSN, let endLSN, let ts) =
                try PgOutputDecoder.decode(Bytes("c").u32(77).u8(0).u64(0x100).u64(0x200).i64(42).bytes) else {
            Issue.record("not Stream Commit"); return
        }
        #expect(cx == 77 && commitLSN == LSN(0x100) && endLSN == LSN(0x200) && ts == 42)
        guard case .streamAbort(let ax, let sub) = try PgOutputDecoder.decode(Bytes("A").u32(77).u32(78).bytes) else {
            Issue.record("not Stream Abort"); return
        }
        #expect(ax == 77 && sub == 78)
    }

    @Test func streamedInsertCarriesItsSubtransactionXid() throws {
        let streamed = Bytes("I").u32(78).u32(16384).char("N").u16(1).char("t").u32(1).raw(Array("7".utf8)).bytes
        #expect(PgOutputDecoder.streamedXid(streamed) == 78)
        guard case .insert(let relation, let new) = try PgOutputDecoder.decode(streamed, streamed: true) else {
            Issue.record("not an insert"); return
        }
        #expect(relation == 16384)
        #expect(new.text(at: 0) == "7")
        #expect(PgOutputDecoder.streamedXid(Bytes("C").u8(0).u64(1).u64(2).i64(3).bytes) == nil)
    }

    @Test(arguments: ["Z", "b", "p", "s", "r"] as [Character])
    func unknownKindThrows(kind: Character) {
        let b = Bytes(kind)
        b.u64(0).u64(0)
        do {
            _ = try PgOutputDecoder.decode(b.bytes)
            Issue.record("expected an error for \(kind)")
        } catch {
            #expect(String(describing: error) == "pgoutput: unknown message kind \(kind.asciiValue!) (\(kind))")
        }
    }

    @Test func unknownKindByteAboveASCIIThrows() {
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode([0xFF, 0, 0]) }
        #expect(throws: PgOutputError.self) { try PgOutputDecoder.decode([0x00]) }
    }

    @Test func unknownTupleCellKindThrows() {
        let b = Bytes("I")
        b.u32(1).char("N").u16(1).char("x")
        do {
            _ = try PgOutputDecoder.decode(b.bytes)
            Issue.record("expected an error")
        } catch {
            #expect(String(describing: error) == "pgoutput: unknown tuple column kind 120")
        }
    }
}
