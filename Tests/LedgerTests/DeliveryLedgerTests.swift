import Foundation
import Ledger
import SluiceCore
import Testing

struct DeliveryLedgerTests {
    func temporaryLedger() throws -> SQLiteStateStore {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString).sqlite").path
        return try SQLiteStateStore(path: path)
    }

    func message(_ group: String, _ lsn: UInt64, _ index: Int, sink: String = "s") -> ParkedMessage {
        ParkedMessage(sink: sink, group: group, position: MessagePosition(commitLSN: LSN(lsn), commitIndex: index),
                      table: "public.t", topic: "t", key: Array(group.utf8), value: Array("{\"v\":\(lsn)}".utf8))
    }

    @Test func parkedMessagesComeBackInStreamOrderPerGroup() throws {
        let ledger = try temporaryLedger()
        try ledger.park([message("a", 200, 0), message("b", 100, 1), message("a", 100, 0), message("a", 100, 2)])
        #expect(try ledger.parkedGroups(sink: "s") == ["a": 3, "b": 1])
        #expect(try ledger.firstParked(sink: "s", group: "a")?.position == MessagePosition(commitLSN: LSN(100), commitIndex: 0))
        try ledger.unpark(sink: "s", position: MessagePosition(commitLSN: LSN(100), commitIndex: 0))
        #expect(try ledger.firstParked(sink: "s", group: "a")?.position == MessagePosition(commitLSN: LSN(100), commitIndex: 2))
        #expect(try ledger.parked(sink: "s").map(\.position.commitLSN.rawValue) == [100, 100, 200])
    }

    @Test func parkingTheSameChangeTwiceKeepsOneCopy() throws {
        let ledger = try temporaryLedger()
        try ledger.park([message("a", 100, 0)])
        try ledger.recordAttempt(sink: "s", position: MessagePosition(commitLSN: LSN(100), commitIndex: 0), deliverCount: 3, error: "boom")
        try ledger.park([message("a", 100, 0)]) // replayed from the WAL after a restart
        let parked = try ledger.parked(sink: "s")
        #expect(parked.count == 1)
        #expect(parked.first?.deliverCount == 3)
        #expect(parked.first?.lastError == "boom")
        #expect(parked.first?.value == Array("{\"v\":100}".utf8))
    }

    @Test func survivesReopening() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString).sqlite").path
        try SQLiteStateStore(path: path).park([message("a", 1, 0), message("a", 2, 0, sink: "other")])
        let reopened = try SQLiteStateStore(path: path)
        #expect(try reopened.parkedCount(sink: "s") == 1)
        #expect(try reopened.parkedCount(sink: "other") == 1)
    }

    @Test func keepsTheLastThousandDelivered() throws {
        let ledger = try temporaryLedger()
        for batch in 0..<3 {
            try ledger.recordDelivered((0..<500).map { index in
                DeliveredMessage(sink: "s", group: "g", position: MessagePosition(commitLSN: LSN(UInt64(batch * 500 + index)), commitIndex: 0),
                                 table: "public.t", topic: "t", key: "k", size: 10, partition: 0, offset: Int64(batch * 500 + index),
                                 deliverCount: 1)
            })
        }
        let recent = try ledger.recentlyDelivered(sink: "s", limit: 5_000)
        #expect(recent.count == 1_000)
        #expect(recent.first?.offset == 1_499)
        #expect(recent.last?.offset == 500)
    }

    @Test func cancelledMessagesKeepTheirReason() throws {
        let ledger = try temporaryLedger()
        try ledger.recordCancelled(CancelledMessage(sink: "s", group: "g", position: MessagePosition(commitLSN: LSN(5), commitIndex: 1),
                                                    table: "public.t", topic: "t", key: "7", size: 2_000_000,
                                                    reason: "too_large", error: "Broker: Message size too large"))
        let cancelled = try ledger.cancelled(sink: "s")
        #expect(cancelled.count == 1)
        #expect(cancelled.first?.reason == "too_large")
        #expect(cancelled.first?.size == 2_000_000)
    }
}
