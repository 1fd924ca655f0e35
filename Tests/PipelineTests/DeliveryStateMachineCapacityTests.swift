import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// Admission: `max_ack_pending` (messages handed to Kafka, not acknowledged) and `max_memory_mb`
/// (bytes of messages in flight or waiting), for new messages and for retries of parked groups.
@Suite struct DeliveryStateMachineCapacityTests {
    typealias F = DeliveryFixture

    @Test func maxAckPendingStopsAdmissionAtTheLimitAndAReportFreesRoom() {
        var driver = DeliveryDriver(F.machine(maxAckPending: 3))
        #expect(driver.machine.hasCapacity)
        driver.submit(F.message(1, group: "a"))
        driver.submit(F.message(2, group: "b"))
        #expect(driver.machine.hasCapacity)
        driver.submit(F.message(3, group: "c"))
        #expect(driver.machine.inFlightCount == 3)
        #expect(!driver.machine.hasCapacity, "3 of 3 in flight")
        driver.ack(2)
        #expect(driver.machine.hasCapacity)
        driver.submit(F.message(4, group: "d"))
        #expect(!driver.machine.hasCapacity)
        // A failure report frees room as well.
        driver.fail(1)
        #expect(driver.machine.hasCapacity)
    }

    @Test func waitingMessagesDoNotCountAgainstMaxAckPending() {
        var driver = DeliveryDriver(F.machine(maxAckPending: 2, depth: 1))
        for index in 1...5 { driver.submit(F.message(index)) }
        #expect(driver.machine.inFlightCount == 1)
        #expect(driver.machine.hasCapacity)
        #expect(driver.machine.memoryBytes == 50, "but they count against memory")
    }

    @Test func aTickRetriesOnlyAsManyGroupsAsMaxAckPendingLeavesRoomFor() {
        var driver = DeliveryDriver(F.machine(maxAckPending: 3, parkedGroups: ["a": 1, "b": 1, "c": 1, "d": 1]))
        driver.seedLedger([F.parked(1, group: "a"), F.parked(2, group: "b"), F.parked(3, group: "c"), F.parked(4, group: "d")])
        driver.submit(F.message(9, group: "live"))

        let first = driver.tick()
        #expect(first.retry == ["a", "b"], "room for 2 of 4, in name order")
        #expect(first.wakeAt.map { $0 <= driver.now.addingTimeInterval(0.05) } == true, "look again soon")
        #expect(driver.inKafka.indexes == [9, 1, 2])
        #expect(!driver.machine.hasCapacity)

        let full = driver.tick()
        #expect(full.retry.isEmpty)
        #expect(full.wakeAt.map { $0 <= driver.now.addingTimeInterval(0.05) } == true)

        driver.ack(9)
        let third = driver.tick()
        #expect(third.retry == ["c"])
        driver.ack(1)
        driver.ack(2)
        driver.writeLedger()
        let last = driver.tick()
        #expect(last.retry == ["d"])
        #expect(last.wakeAt == nil)
    }

    /// With Kafka away, tens of thousands of groups may be parked and due. A tick picks the few it has room
    /// for — the smallest names, as a full sort would — and, with no room at all, does not look at them.
    @Test func aTickWithManyDueGroupsTakesTheSmallestNamesItHasRoomFor() {
        let names = (0..<2_000).map { String(format: "g%05d", ($0 * 7_919) % 2_000) }
        var driver = DeliveryDriver(F.machine(maxAckPending: 7, parkedGroups: Dictionary(uniqueKeysWithValues: names.map { ($0, 1) })))
        driver.seedLedger(names.enumerated().map { F.parked($0.offset, group: $0.element) })
        let tick = driver.tick()
        #expect(tick.retry == (0..<7).map { String(format: "g%05d", $0) })
        #expect(tick.wakeAt == driver.now.addingTimeInterval(0.05), "the rest soon")
        let full = driver.tick()
        #expect(full.retry.isEmpty && full.wakeAt == driver.now.addingTimeInterval(0.05), "no room: none, and look again soon")
        #expect(driver.machine.retryCandidates.count == 2_000, "still candidates")
    }

    /// Regression (fixed in 08d16d9): with due groups held back by max_ack_pending and no backoff
    /// pending, tick's wakeAt was `min(now, now + 0.05)` = now, so the worker spun until room freed.
    @Test func aTickHeldBackByMaxAckPendingWakesIn50MillisecondsNotAtOnce() {
        var driver = DeliveryDriver(F.machine(maxAckPending: 1, parkedGroups: ["a": 1, "b": 1]))
        driver.seedLedger([F.parked(1, group: "a"), F.parked(2, group: "b")])
        let tick = driver.tick()
        #expect(tick.retry == ["a"])
        #expect(tick.wakeAt == driver.now.addingTimeInterval(0.05), "not now: the worker would spin")
        // With a backoff ending sooner than 50 ms, that one is the time to wake.
        var soon = DeliveryDriver(F.machine(maxAckPending: 1))
        soon.submit(F.message(1, group: "a"))
        soon.fail(1)
        soon.submit(F.message(2, group: "b"))
        soon.fail(2)
        soon.writeLedger()
        soon.advance(1)
        soon.submit(F.message(3, group: "c"))
        soon.fail(3)
        soon.writeLedger()
        soon.advance(0.99)
        let held = soon.tick()
        #expect(held.retry == ["a"])
        #expect(held.wakeAt == F.start.addingTimeInterval(2), "c's backoff ends in 10 ms")
    }

    @Test func aTickRetriesEveryDueGroupWhenThereIsRoom() {
        var driver = DeliveryDriver(F.machine(maxAckPending: 10, parkedGroups: ["c": 1, "a": 2, "b": 1]))
        driver.seedLedger([F.parked(1, group: "a"), F.parked(2, group: "a"), F.parked(3, group: "b"), F.parked(4, group: "c")])
        let tick = driver.tick()
        #expect(tick.retry == ["a", "b", "c"])
        #expect(tick.wakeAt == nil)
        #expect(driver.inKafka.indexes == [1, 3, 4], "one message per group")
    }

    @Test func memoryCountsMessagesInFlightAndWaitingAgainstMaxMemory() {
        var driver = DeliveryDriver(F.machine(maxMemoryBytes: 250, depth: 1))
        driver.submit(F.message(1, size: 100))
        #expect(driver.machine.memoryBytes == 100 && driver.machine.hasCapacity)
        driver.submit(F.message(2, size: 100)) // waiting
        #expect(driver.machine.memoryBytes == 200 && driver.machine.hasCapacity)
        driver.submit(F.message(3, size: 100)) // waiting
        #expect(driver.machine.memoryBytes == 300)
        #expect(!driver.machine.hasCapacity, "past max_memory_mb")
        #expect(driver.machine.inFlightCount == 1)

        driver.ack(1)
        #expect(driver.machine.memoryBytes == 200 && driver.machine.hasCapacity)
        driver.ackAll()
        #expect(driver.machine.memoryBytes == 0)
    }

    @Test func memoryAtExactlyTheLimitIsFull() {
        var machine = F.machine(maxMemoryBytes: 200)
        _ = machine.submit(.send(F.message(1, group: "a", size: 100)), now: F.start)
        #expect(machine.hasCapacity)
        _ = machine.submit(.send(F.message(2, group: "b", size: 100)), now: F.start)
        #expect(machine.memoryBytes == 200)
        #expect(!machine.hasCapacity)
    }

    @Test func memoryIsReleasedWhenMessagesPark() {
        var driver = DeliveryDriver(F.machine(maxMemoryBytes: 250, depth: 1))
        for index in 1...3 { driver.submit(F.message(index, size: 100)) }
        driver.submit(F.message(4, group: "h", size: 30))
        #expect(!driver.machine.hasCapacity)
        driver.fail(1)
        #expect(driver.machine.memoryBytes == 30, "1 and its two waiting messages are on their way to the ledger")
        #expect(!driver.machine.hasCapacity, "until the ledger has them, their bytes still count (a full disk pauses reading)")
        driver.writeLedger()
        #expect(driver.machine.hasCapacity, "written: they live in the ledger now")
        // Messages parking behind them take memory only until they are written.
        driver.submit(F.message(5, size: 1_000))
        #expect(driver.machine.memoryBytes == 30)
        driver.writeLedger()
        #expect(driver.machine.hasCapacity)
    }

    @Test func retriedParkedMessagesTakeNoMemoryAndReleaseNone() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        driver.seedLedger([F.parked(1, size: 500), F.parked(2, size: 500)])
        driver.submit(F.message(3, group: "h", size: 100))
        driver.tick()
        #expect(driver.machine.memoryBytes == 100)
        driver.ack(1)
        #expect(driver.machine.memoryBytes == 100)
        driver.writeLedger()
        driver.tick()
        driver.fail(2)
        #expect(driver.machine.memoryBytes == 100)
        driver.ack(3)
        #expect(driver.machine.memoryBytes == 0)
    }

    @Test func memoryCountsTheCopyBeforeFunctions() {
        var machine = F.machine()
        var transformed = F.message(1, size: 10)
        transformed.original = Message(key: Array("k".utf8), value: [UInt8](repeating: 0, count: 40), topic: "t", recordPKs: ["k"])
        transformed.memoryCost = 40 // what the functions stage charges for the copy it made
        let sent = machine.submit(.send(transformed), now: F.start)
        #expect(machine.memoryBytes == 50)
        _ = machine.delivered([F.ack(sent.produce[0])], now: F.start)
        #expect(machine.memoryBytes == 0)
    }
}
