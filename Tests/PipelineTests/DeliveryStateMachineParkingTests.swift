import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// A failing message parks its group and everything behind it; parked groups are retried from the
/// ledger, oldest first, one message at a time, also after a restart.
@Suite struct DeliveryStateMachineParkingTests {
    typealias F = DeliveryFixture

    @Test func aFailingMessageParksItsGroupAndTheWaitingMessagesInCommitOrder() {
        var driver = DeliveryDriver(F.machine(depth: 1))
        for index in 1...3 { driver.submit(F.message(index, size: 100)) }
        #expect(driver.machine.memoryBytes == 300)
        #expect(driver.machine.groups["g"]?.waiting.count == 2)

        let failed = driver.fail(1, code: KafkaCode.requestTimedOut)
        let error = KafkaError(code: KafkaCode.requestTimedOut)
        #expect(failed.produce.isEmpty, "2 and 3 must not go once 1 failed")
        #expect(!failed.replaceProducer, "nothing of the group was in flight behind 1")
        #expect(failed.settle.isEmpty)
        #expect(failed.wakeWorker)
        #expect(failed.counts.failedAttempts == 1 && failed.counts.reported == 1 && failed.counts.parked == 3)
        #expect(failed.notices == [.deliveryFailed(table: "public.t", key: "k", messages: 3, error: error.description,
                                                   category: "retriable")])

        let parks = driver.machine.unwritten.parks
        #expect(parks.indexes == [1, 2, 3])
        #expect(parks.allSatisfy { $0.isParked })
        #expect(parks.map(\.deliverCount) == [1, 0, 0])
        #expect(parks[0].lastError == error.description)
        let group = driver.machine.groups["g"]
        #expect(group?.parked == 3)
        #expect(group?.waiting.isEmpty == true && group?.inFlight.isEmpty == true)
        #expect(driver.machine.memoryBytes == 0, "parked messages live in the ledger, not in memory")
        #expect(driver.machine.parkedCount == 3)
    }

    @Test func newMessagesOfAParkedGroupParkBehindIt() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1))
        driver.fail(1)

        let second = driver.submit(F.message(2, size: 500))
        #expect(second.produce.isEmpty)
        #expect(second.counts.parked == 1 && second.wakeWorker)
        #expect(second.settle.isEmpty)
        #expect(driver.machine.unwritten.parks.indexes == [1, 2])
        #expect(driver.machine.memoryBytes == 0)

        // Still parked once the parks are written (another key does not matter either).
        driver.writeLedger()
        #expect(driver.submit(F.message(3, key: "other")).produce.isEmpty)
        #expect(driver.machine.unwritten.parks.indexes == [3])
        #expect(driver.machine.groups["g"]?.parked == 3)
        #expect(driver.machine.groups["g"]?.waiting.isEmpty == true)
    }

    @Test func otherGroupsKeepFlowingWhileOneIsParked() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1, group: "g"))
        driver.fail(1)
        driver.writeLedger()

        for index in 2...4 {
            #expect(driver.submit(F.message(index, group: "h", key: "h")).produce.indexes == [index])
        }
        driver.ackAll()
        #expect(driver.delivered.indexes == [2, 3, 4])
        #expect(driver.settled.suffix(3) == [1002, 1003, 1004])
        #expect(driver.machine.groups["h"] == nil)
        #expect(driver.machine.groups["g"]?.parked == 1)
        #expect(driver.ledger(group: "g").indexes == [1])
    }

    @Test func aParkedGroupIsRetriedOnlyOnceItsParksAreWritten() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1))
        driver.fail(1)
        driver.advance(60) // far past the backoff

        let early = driver.tick()
        #expect(early.retry.isEmpty, "the ledger does not hold it yet")
        #expect(driver.inKafka.isEmpty)

        driver.writeLedger()
        #expect(driver.machine.retryCandidates == ["g"])
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.indexes == [1])
        #expect(driver.inKafka.first?.isParked == true)
        #expect(driver.inKafka.first?.deliverCount == 1)
    }

    @Test func parkedGroupsFromBeforeARestartAreRetriedOldestFirstOneAtATime() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 3, "empty": 0]))
        driver.seedLedger([F.parked(1), F.parked(2, deliverCount: 4), F.parked(3, deliverCount: 0)])
        #expect(driver.machine.parkedCount == 3)
        #expect(driver.machine.groups["empty"] == nil)
        #expect(driver.machine.retryCandidates == ["g"])

        let first = driver.tick()
        #expect(first.retry == ["g"])
        #expect(driver.inKafka.indexes == [1])
        #expect(driver.tick().retry.isEmpty, "its head is in flight")
        #expect(!driver.machine.shouldRetry(group: "g", position: F.position(2)), "nothing while the head is in flight")

        let acked = driver.ack(1)
        #expect(acked.settle.isEmpty, "a parked message's token was settled when it was parked")
        #expect(acked.counts.parked == -1 && acked.counts.delivered == 1)
        #expect(acked.wakeWorker)
        #expect(driver.machine.groups["g"]?.parked == 2)
        #expect(driver.machine.unwritten.unparks.indexes == [1])
        // The ledger still holds 1 until the unpark is written: a retry reading it now must not send it again.
        #expect(!driver.machine.shouldRetry(group: "g", position: F.position(1)))
        #expect(driver.machine.shouldRetry(group: "g", position: F.position(2)))

        driver.writeLedger()
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.indexes == [2])
        driver.ack(2)
        driver.writeLedger()
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.indexes == [3])
        driver.ack(3)
        #expect(driver.machine.groups["g"] == nil, "nothing parked any more")
        driver.writeLedger()
        #expect(driver.tick().retry.isEmpty)
        #expect(driver.machine.retryCandidates.isEmpty)
        #expect(driver.delivered.indexes == [1, 2, 3])
        #expect(driver.submit(F.message(4)).produce.indexes == [4], "back to normal")
    }

    @Test func aRetryLoadedWhileTheGroupHasAMessageInFlightIsNotSent() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        driver.seedLedger([F.parked(1), F.parked(2)])
        driver.tick()
        #expect(driver.inKafka.indexes == [1])
        // A second, stale retry of the same group must not put a second parked message in flight.
        let stale = driver.machine.retryLoaded(group: "g", .send(F.parked(2)), now: driver.now)
        #expect(stale.produce.isEmpty)
        #expect(driver.machine.groups["g"]?.inFlight.count == 1)
        #expect(driver.machine.inFlightCount == 1)
    }

    @Test func newMessagesOfAGroupParkedBeforeARestartParkBehindTheLedger() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 1]))
        driver.seedLedger([F.parked(1)])
        #expect(driver.submit(F.message(5)).produce.isEmpty)
        driver.runUntilQuiet()
        #expect(driver.delivered.indexes == [1, 5])
        #expect(driver.settled == [1005])
    }

    @Test func anEmptyLedgerReturnsTheGroupToNormal() {
        // The ledger said the group had parked messages, but there are none left (a replayed duplicate).
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.isEmpty)
        #expect(driver.machine.groups["g"] == nil)
        #expect(driver.machine.parkedCount == 0)
        #expect(driver.submit(F.message(7)).produce.indexes == [7])
    }

    @Test func anEmptyLedgerReadDoesNotUnparkAGroupWithParksStillToWriteOrAMessageInFlight() {
        var writing = DeliveryDriver(F.machine(parkedGroups: ["g": 1]))
        writing.submit(F.message(5)) // parked, not written yet
        _ = writing.machine.retryLoaded(group: "g", nil, now: writing.now)
        #expect(writing.machine.groups["g"]?.parked == 2)
        #expect(writing.submit(F.message(6)).produce.isEmpty, "still parked")

        var flying = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        flying.seedLedger([F.parked(1), F.parked(2)])
        flying.tick()
        _ = flying.machine.retryLoaded(group: "g", nil, now: flying.now)
        #expect(flying.machine.groups["g"]?.parked == 2)
        #expect(flying.submit(F.message(6)).produce.isEmpty)
    }

    @Test func aParkedMessageFailingAgainRecordsAnAttemptAndStaysTheHead() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        driver.seedLedger([F.parked(1, deliverCount: 1), F.parked(2)])
        driver.tick()

        let failed = driver.fail(1, code: KafkaCode.messageTimedOut)
        #expect(failed.produce.isEmpty)
        #expect(!failed.replaceProducer)
        #expect(failed.counts.failedAttempts == 1 && failed.counts.parked == 0)
        #expect(failed.wakeWorker)
        #expect(failed.notices.isEmpty, "the group was reported when it parked")
        #expect(driver.machine.unwritten.parks.isEmpty, "it is in the ledger already")
        let attempts = driver.machine.unwritten.attempts
        #expect(attempts.map(\.position) == [F.position(1)])
        #expect(attempts.map(\.deliverCount) == [2])
        #expect(attempts.first?.error == KafkaError(code: KafkaCode.messageTimedOut).description)
        #expect(driver.machine.groups["g"]?.parked == 2)
        #expect(approx(driver.backoffLeft("g"), 2), "second attempt: 2 s")

        driver.writeLedger()
        #expect(driver.ledger[F.position(1)]?.deliverCount == 2)
        driver.advance(2)
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.indexes == [1], "the head again, not the message behind it")
        #expect(driver.inKafka.first?.deliverCount == 2)
    }
}
