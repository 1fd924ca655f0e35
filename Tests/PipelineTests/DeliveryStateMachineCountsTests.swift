import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// Counters for the sink's metrics, the recently delivered list, and robustness against stray reports.
@Suite struct DeliveryStateMachineCountsTests {
    typealias F = DeliveryFixture

    @Test func countsAddUpOverAMixedRun() {
        var driver = DeliveryDriver(F.machine(depth: 2))
        for index in 1...4 { driver.submit(F.message(index, group: "a")) }
        for index in 5...7 { driver.submit(F.message(index, group: "b")) }
        driver.submit(F.message(8, group: "c"))
        driver.submit(.drop(F.message(9, group: "c")))
        driver.submit(.failed(F.message(10, group: "d"), stage: .function, error: "boom"))

        func check(_ when: String) {
            let counts = driver.counts
            #expect(counts.sent == driver.produced.count, "\(when)")
            #expect(counts.sent == counts.reported + driver.machine.inFlightCount, "\(when)")
            #expect(counts.reported == driver.produced.count - driver.inKafka.count, "\(when): every report counted once")
            #expect(counts.cancelledTooLarge == driver.cancelled.count, "\(when)")
            #expect(counts.parked == driver.machine.parkedCount, "\(when)")
            #expect(counts.delivered == driver.delivered.count, "\(when)")
            #expect(counts.inFlight == driver.machine.inFlightCount, "\(when): the in-flight gauge follows every change")
        }
        check("after submits")
        driver.ack(1)
        driver.fail(5)          // b: 6 in flight behind it → producer replaced
        driver.fail(8, code: KafkaCode.messageTooLarge)
        check("after the first reports")
        driver.purgeAll()
        driver.machine.producerReplaced()
        check("after the purge")
        driver.writeLedger()
        driver.retryStages = { message in
            message.position.commitIndex == 10 && message.deliverCount == 1
                ? .failed(message, stage: .function, error: "again") : .send(message)
        }
        driver.runUntilQuiet()
        check("at rest")

        let counts = driver.counts
        #expect(counts.delivered == 8, "all but the dropped and the too-large one")
        #expect(counts.filtered == 1 && counts.cancelledTooLarge == 1)
        #expect(counts.failedAttempts == 5, "5, then the purged 2, 6 and 3 in Kafka, and 10's retry in its stage")
        #expect(counts.functionFailures == 2)
        #expect(counts.parked == 0 && driver.machine.parkedCount == 0)
        #expect(counts.reported == counts.delivered + counts.cancelledTooLarge + counts.failedAttempts - 1,
                "every report is a delivery, a cancellation or a failed attempt (10's retry failed in its stage, not in Kafka)")
    }

    @Test func recentlyDeliveredKeepsTheLastThousand() {
        var machine = F.machine()
        for index in 1...1_005 {
            let sent = machine.submit(.send(F.message(index, group: "g\(index % 7)", size: 1)), now: F.start)
            _ = machine.delivered(sent.produce.map { F.ack($0, offset: Int64(index)) }, now: F.start)
        }
        #expect(machine.recentlyDelivered.count == 1_000)
        #expect(machine.recentlyDelivered.first?.position == F.position(6))
        #expect(machine.recentlyDelivered.last?.position == F.position(1_005))
        let unsaved = machine.takeUnsavedDeliveries()
        #expect(unsaved.count == 1_000, "the oldest five are gone")
        #expect(unsaved.first?.position == F.position(6))
    }

    @Test func unsavedDeliveriesAreTakenOnce() {
        var driver = DeliveryDriver(F.machine())
        #expect(driver.machine.takeUnsavedDeliveries().isEmpty)
        for index in 1...3 { driver.submit(F.message(index)) }
        driver.ack(1)
        driver.ack(2)
        #expect(driver.machine.takeUnsavedDeliveries().map(\.position) == [F.position(1), F.position(2)])
        #expect(driver.machine.takeUnsavedDeliveries().isEmpty)
        driver.ack(3)
        driver.submit(F.message(4))
        driver.fail(4, code: KafkaCode.messageTooLarge) // not a delivery
        #expect(driver.machine.takeUnsavedDeliveries().map(\.position) == [F.position(3)])
        #expect(driver.machine.recentlyDelivered.count == 3)
    }

    @Test func aDeliveryRecordsWhereKafkaPutItAndWhen() {
        var machine = F.machine()
        let sent = machine.submit(.send(F.message(1, topic: "orders", size: 42)), now: F.start)
        let later = F.start.addingTimeInterval(3)
        _ = machine.delivered([DeliveryReport(token: sent.produce[0].deliveryID, error: nil, topic: "orders", partition: 5,
                                              offset: 1_234, size: 42)], now: later)
        let recent = machine.recentlyDelivered.last
        #expect(recent?.topic == "orders" && recent?.partition == 5 && recent?.offset == 1_234 && recent?.size == 42)
        #expect(recent?.deliveredAt == later)
        #expect(recent?.outgoing.deliverCount == 1)
        #expect(recent?.outgoing.sentAt == F.start)
    }

    @Test func commitToAckLatencyIsMeasuredFromTheTransactionsCommit() {
        var machine = F.machine()
        // Commit at 2000-01-01 + 1,699,999,000 s (µs since 2000-01-01), acknowledged 2.5 s after F.start.
        let commitSeconds: Int64 = 1_700_000_000 - 946_684_800 - 1
        let sent = machine.submit(.send(F.message(1, commitTime: commitSeconds * 1_000_000)), now: F.start)
        let acked = machine.delivered([F.ack(sent.produce[0])], now: F.start.addingTimeInterval(2.5))
        #expect(acked.counts.commitToAck.count == 1)
        #expect(approx(acked.counts.commitToAck.first, 3.5))

        let unknown = machine.submit(.send(F.message(2, group: "h")), now: F.start)
        #expect(machine.delivered([F.ack(unknown.produce[0])], now: F.start).counts.commitToAck.isEmpty, "commit time unknown")
    }

    @Test func largeBodiesAreLetGoOfOnceNoLongerAmongTheRecentOnes() {
        var machine = F.machine()
        let big = RecentDelivery.valueKeptBytes + 1
        func deliver(_ index: Int, size: Int) {
            let sent = machine.submit(.send(F.message(index, group: "g\(index)", size: size)), now: F.start)
            _ = machine.delivered(sent.produce.map { F.ack($0) }, now: F.start)
        }
        deliver(1, size: big)
        for index in 2...StateLimits.recentBodiesKept { deliver(index, size: 1) }
        #expect(machine.recentlyDelivered.count == StateLimits.recentBodiesKept)
        #expect(machine.recentlyDelivered.first?.outgoing.message.value.count == big, "still among the last \(StateLimits.recentBodiesKept)")
        deliver(100, size: 1)
        #expect(machine.recentlyDelivered.first?.outgoing.message.value.isEmpty == true)
        #expect(machine.recentlyDelivered.first?.size == big, "the size is kept")
    }

    @Test func reportsForUnknownOrAlreadyReportedMessagesAreIgnored() {
        var machine = F.machine()
        let sent = machine.submit(.send(F.message(1, size: 100)), now: F.start)
        let report = F.ack(sent.produce[0])
        let first = machine.delivered([report], now: F.start)
        #expect(first.counts.delivered == 1 && first.settle == [1001])
        let again = machine.delivered([report, DeliveryReport(token: 999, error: nil, topic: "t", partition: 0, offset: 0, size: 0)],
                                      now: F.start)
        #expect(again.counts.reported == 0 && again.counts.delivered == 0 && again.counts.commitToAck.isEmpty)
        #expect(again.counts.inFlight == 0)
        #expect(again.settle.isEmpty)
        #expect(machine.memoryBytes == 0, "not released twice")
        #expect(machine.recentlyDelivered.count == 1)
    }

    @Test func aBatchOfReportsIsHandledInOrder() {
        var machine = F.machine(depth: 1)
        let sentA = machine.submit(.send(F.message(1, group: "a")), now: F.start)
        _ = machine.submit(.send(F.message(2, group: "a")), now: F.start) // waiting
        let sentB = machine.submit(.send(F.message(3, group: "b")), now: F.start)
        let batch = machine.delivered([F.ack(sentA.produce[0]), F.ack(sentB.produce[0])], now: F.start)
        #expect(batch.settle == [1001, 1003])
        #expect(batch.produce.indexes == [2])
        #expect(batch.counts.reported == 2 && batch.counts.delivered == 2 && batch.counts.sent == 1)
    }
}
