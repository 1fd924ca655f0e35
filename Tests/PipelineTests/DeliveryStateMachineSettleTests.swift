import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// A checkpoint token settles once its message is safe: acknowledged, durably parked, filtered or
/// cancelled; never while it is in flight or waiting, never twice.
@Suite struct DeliveryStateMachineSettleTests {
    typealias F = DeliveryFixture

    @Test func aTokenSettlesOnlyOnceItsMessageIsAcknowledged() {
        var driver = DeliveryDriver(F.machine(depth: 1))
        #expect(driver.submit(F.message(1)).settle.isEmpty, "in flight")
        #expect(driver.submit(F.message(2)).settle.isEmpty, "waiting")
        #expect(driver.submit(F.message(3, key: "other")).settle.isEmpty, "waiting")
        #expect(driver.ack(1).settle == [1001], "2 went into flight: its token stays")
        #expect(driver.ack(2).settle == [1002])
        #expect(driver.ack(3).settle == [1003])
        #expect(driver.settled == [1001, 1002, 1003])
    }

    @Test func parkedTokensSettleOnlyAfterTheLedgerWriteNeverAtParkTime() {
        var driver = DeliveryDriver(F.machine(depth: 1))
        for index in 1...3 { driver.submit(F.message(index)) }
        #expect(driver.fail(1).settle.isEmpty, "failed and parked (with 2 and 3), but not written yet")
        #expect(driver.submit(F.message(4)).settle.isEmpty, "parked behind, not written yet")
        #expect(driver.submit(.failed(F.message(5, group: "h"), stage: .function, error: "boom")).settle.isEmpty)
        #expect(driver.settled.isEmpty)

        let writes = driver.machine.takeLedgerWrites()
        #expect(writes.parks.map(\.checkpointToken) == [1001, 1002, 1003, 1004, 1005])
        #expect(driver.machine.unwritten.isEmpty)
        #expect(driver.settled.isEmpty, "taken is not written")
        let written = driver.machine.ledgerWritten(writes)
        #expect(written.settle == [1001, 1002, 1003, 1004, 1005])
        #expect(driver.machine.retryCandidates == ["g", "h"])
    }

    @Test func aParkedMessageDeliveredLaterDoesNotSettleItsTokenAgain() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1))
        driver.submit(F.message(2))
        driver.fail(1)
        driver.purgeAll()
        driver.writeLedger()
        #expect(driver.settled == [1001, 1002])

        driver.advance(1)
        driver.tick()
        // A message read back from the ledger carries no token, and its ack settles nothing.
        let retried = driver.inKafka.first
        #expect(retried?.checkpointToken == 0)
        #expect(driver.ack(1).settle.isEmpty)
        driver.runUntilQuiet()
        #expect(driver.delivered.indexes == [1, 2])
        #expect(driver.settled == [1001, 1002])
    }

    @Test func aParkedMessageWithATokenStillSettlesNothingWhenDelivered() {
        // Robustness: whatever token a retried message carries, its ack does not settle it (it was settled by parking).
        var machine = F.machine(parkedGroups: ["g": 1])
        var retried = F.parked(1)
        retried.checkpointToken = 77
        let sent = machine.retryLoaded(group: "g", .send(retried), now: F.start)
        #expect(sent.produce.count == 1)
        let acked = machine.delivered([F.ack(sent.produce[0])], now: F.start)
        #expect(acked.settle.isEmpty)
        #expect(acked.counts.delivered == 1)
        #expect(machine.unwritten.unparks == [F.position(1)])
    }

    @Test func failedLedgerWritesKeepTheirTokensUnsettledAndComeBackFirst() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1))
        driver.fail(1)
        let first = driver.machine.takeLedgerWrites()
        #expect(first.parks.indexes == [1])

        // Meanwhile another message parks behind; then the write fails.
        driver.submit(F.message(2))
        driver.machine.ledgerWriteFailed(first)
        #expect(driver.settled.isEmpty)
        #expect(driver.machine.unwritten.parks.indexes == [1, 2], "the failed writes go first")
        driver.advance(5)
        #expect(driver.tick().retry.isEmpty, "not in the ledger: not retried")

        let second = driver.writeLedger()
        #expect(second.settle == [1001, 1002])
        #expect(driver.ledger(group: "g").indexes == [1, 2])
        #expect(driver.tick().retry == ["g"])
    }

    @Test func failedUnparksAndAttemptsAlsoComeBackFirst() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 1, "h": 1, "i": 1, "j": 1]))
        driver.seedLedger([F.parked(1, group: "g"), F.parked(2, group: "h"), F.parked(3, group: "i"), F.parked(4, group: "j")])
        driver.tick()
        #expect(driver.inKafka.indexes == [1, 2, 3, 4])
        driver.ack(1)   // unpark 1
        driver.fail(2)  // attempt of 2
        let first = driver.machine.takeLedgerWrites()
        #expect(first.unparks.indexes == [1] && first.attempts.map(\.position) == [F.position(2)])

        // While the worker writes, more reports come in; then the write fails.
        driver.ack(3)   // unpark 3
        driver.fail(4)  // attempt of 4
        driver.machine.ledgerWriteFailed(first)
        #expect(driver.machine.unwritten.unparks.indexes == [1, 3])
        #expect(driver.machine.unwritten.attempts.map(\.position) == [F.position(2), F.position(4)])
        #expect(!driver.machine.shouldRetry(group: "g", position: F.position(1)))
    }

    @Test func everyTokenSettlesExactlyOnceWhateverBecameOfItsMessage() {
        var driver = DeliveryDriver(F.machine(depth: 2))
        // a: acked; b: fails, parked with what waits behind; c: too large; d: dropped; e: stage failure.
        for index in 1...3 { driver.submit(F.message(index, group: "a")) }
        for index in 4...6 { driver.submit(F.message(index, group: "b")) }
        driver.submit(F.message(7, group: "c", key: "c1"))
        driver.submit(F.message(8, group: "c", key: "c2")) // waits: another key
        driver.submit(.drop(F.message(9, group: "d")))
        driver.submit(.failed(F.message(10, group: "e"), stage: .enrichment, error: "gone"))
        driver.submit(F.message(11, group: "e"))

        driver.fail(7, code: KafkaCode.messageTooLarge) // cancelled; 8 goes
        driver.fail(4) // 5 in flight behind it: the producer is replaced
        driver.purgeAll() // everything the old producer held comes back
        driver.machine.producerReplaced()
        driver.runUntilQuiet()

        #expect(driver.settled.sorted() == (1...11).map { UInt(1_000 + $0) })
        #expect(Set(driver.settled).count == driver.settled.count, "no token twice")
        #expect(driver.machine.parkedCount == 0 && driver.machine.inFlightCount == 0 && driver.ledger.isEmpty)
    }

    @Test func aTooLargeMessageIsCancelledAndItsTokenSettled() {
        var driver = DeliveryDriver(F.machine(depth: 1))
        for index in 1...3 { driver.submit(F.message(index, size: 100)) }
        let cancelled = driver.fail(1, code: KafkaCode.messageTooLarge)
        #expect(cancelled.cancel.map(\.outgoing.position) == [F.position(1)])
        #expect(cancelled.cancel.first?.error.code == KafkaCode.messageTooLarge)
        #expect(cancelled.cancel.first?.outgoing.deliverCount == 1)
        #expect(cancelled.counts.cancelledTooLarge == 1 && cancelled.counts.failedAttempts == 0 && cancelled.counts.delivered == 0)
        #expect(cancelled.settle == [1001])
        #expect(cancelled.produce.indexes == [2], "the group goes on")
        #expect(!cancelled.replaceProducer)
        #expect(driver.machine.unwritten.isEmpty)
        #expect(driver.machine.groups["g"]?.parked == 0)
        #expect(driver.machine.memoryBytes == 200)
        #expect(driver.machine.recentlyDelivered.isEmpty)
        driver.ackAll()
        #expect(driver.delivered.indexes == [2, 3])
    }

    @Test func aMessageKnownTooLargeBeforeWritingIsCancelledAtOnceAndItsGroupGoesOn() {
        var driver = DeliveryDriver(F.machine(depth: 1))
        driver.submit(F.message(1))
        let error = KafkaError.messageTooLarge("its values alone are 104857600 bytes")
        var huge = F.message(2, size: 0)
        huge.unwrittenSize = 104_857_600
        let cancelled = driver.submit(.tooLarge(huge, error: error))
        #expect(cancelled.cancel.map(\.outgoing.position) == [F.position(2)])
        #expect(cancelled.cancel.first?.outgoing.size == 104_857_600 && cancelled.cancel.first?.error.category == .messageTooLarge)
        #expect(cancelled.settle == [1002] && cancelled.produce.isEmpty)
        #expect(cancelled.counts.cancelledTooLarge == 1 && cancelled.counts.inFlight == nil, "nothing went into flight")
        #expect(driver.machine.memoryBytes == 10, "an unwritten message holds no memory")
        #expect(driver.submit(F.message(3)).produce.isEmpty, "waits behind 1, as before")
        driver.ackAll()
        #expect(driver.delivered.indexes == [1, 3])
        #expect(driver.machine.groups.isEmpty && driver.machine.unwritten.isEmpty && driver.machine.memoryBytes == 0)
    }

    @Test func aTooLargeMessageInsideARunNeitherParksNorReplacesTheProducer() {
        var driver = DeliveryDriver(F.machine())
        for index in 1...3 { driver.submit(F.message(index)) }
        let cancelled = driver.fail(1, code: KafkaCode.messageTooLarge)
        #expect(!cancelled.replaceProducer)
        #expect(cancelled.settle == [1001])
        #expect(driver.machine.groups["g"]?.parked == 0)
        #expect(driver.submit(F.message(4)).produce.indexes == [4], "still pipelined behind 2 and 3")
        driver.ackAll()
        #expect(driver.delivered.indexes == [2, 3, 4])
    }

    @Test func aParkedTooLargeMessageIsUnparkedAndTheGroupGoesOn() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        driver.seedLedger([F.parked(1, deliverCount: 2), F.parked(2)])
        driver.tick()
        let cancelled = driver.fail(1, code: KafkaCode.messageTooLarge)
        #expect(cancelled.cancel.map(\.outgoing.position) == [F.position(1)])
        #expect(cancelled.counts.cancelledTooLarge == 1 && cancelled.counts.parked == -1)
        #expect(cancelled.settle.isEmpty, "settled when it was parked")
        #expect(cancelled.wakeWorker)
        #expect(driver.machine.unwritten.unparks.indexes == [1])
        #expect(driver.machine.unwritten.parks.isEmpty && driver.machine.unwritten.attempts.isEmpty)
        #expect(driver.machine.groups["g"]?.parked == 1)
        driver.writeLedger()
        #expect(driver.tick().retry == ["g"], "no backoff after a cancellation by Kafka")
        #expect(driver.inKafka.indexes == [2])
    }
}
