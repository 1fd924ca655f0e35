import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// A user's retry-now and cancel of a failing message.
@Suite struct DeliveryStateMachineUserActionTests {
    typealias F = DeliveryFixture

    /// A group whose message 1 failed `failures` times (the last one now), parked and written; 2 behind it.
    static func failingGroup(failures: Int) -> DeliveryDriver {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1))
        driver.submit(F.message(2, key: "other")) // waiting
        driver.fail(1)
        driver.writeLedger()
        for _ in 1..<failures {
            guard let at = driver.machine.groups["g"]?.retryAt else { break }
            driver.now = at
            driver.tick()
            driver.fail(1)
            driver.writeLedger()
        }
        return driver
    }

    @Test func retryNowMakesABackedOffGroupDueNow() {
        var driver = Self.failingGroup(failures: 6)
        #expect(approx(driver.backoffLeft("g"), 32))
        #expect(driver.tick().retry.isEmpty)

        let accepted = driver.machine.retryNow(group: "g", now: driver.now)
        #expect(accepted)
        #expect(driver.machine.groups["g"]?.retryAt == driver.now)
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.indexes == [1], "the group's oldest message first")
    }

    @Test func retryNowIsRefusedForAGroupThatIsNotFailing() {
        var driver = DeliveryDriver(F.machine())
        let nobody = driver.machine.retryNow(group: "nobody", now: driver.now)
        #expect(!nobody)
        #expect(driver.machine.groups["nobody"] == nil, "asking does not make a group")
        driver.submit(F.message(1, group: "live"))
        let live = driver.machine.retryNow(group: "live", now: driver.now)
        #expect(!live, "in flight, nothing parked")
        #expect(driver.machine.groups["live"]?.retryAt == nil)
    }

    @Test func aCancelIsRefusedWhileTheMessageIsBeingDelivered() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        driver.seedLedger([F.parked(1), F.parked(2)])
        driver.tick()
        #expect(driver.inKafka.indexes == [1])
        #expect(driver.machine.cancelRequested(group: "g", position: F.position(1)) == .beingDelivered)
        #expect(driver.machine.cancelledPositions.isEmpty)
        // The message behind it is not being delivered: its cancel is accepted.
        #expect(driver.machine.cancelRequested(group: "g", position: F.position(2)) == nil)
        #expect(driver.machine.cancelledPositions == [F.position(2)])
    }

    @Test func aCancelledMessageIsNeverSentAgainEvenIfARetryBringsIt() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        driver.seedLedger([F.parked(1), F.parked(2)])
        #expect(driver.machine.cancelRequested(group: "g", position: F.position(1)) == nil)
        #expect(!driver.machine.shouldRetry(group: "g", position: F.position(1)))
        #expect(driver.machine.shouldRetry(group: "g", position: F.position(2)))

        // The ledger has not deleted it yet: a tick reads it, and does not send it.
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.isEmpty)
        // A retry that read the ledger before the cancel, and ran the stages, is dropped too.
        let late = driver.machine.retryLoaded(group: "g", .send(F.parked(1)), now: driver.now)
        #expect(late.produce.isEmpty && late.counts.sent == 0)
        #expect(driver.machine.inFlightCount == 0)
        #expect(driver.produced.isEmpty)
    }

    @Test func aRecordedCancelMovesTheGroupOn() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        driver.seedLedger([F.parked(1), F.parked(2)])
        #expect(driver.machine.cancelRequested(group: "g", position: F.position(1)) == nil)
        driver.removeFromLedger(1)
        let recorded = driver.machine.cancelRecorded(group: "g")
        #expect(recorded.counts.cancelledByUser == 1 && recorded.counts.parked == -1)
        #expect(recorded.wakeWorker)
        #expect(recorded.settle.isEmpty)
        #expect(driver.machine.groups["g"]?.parked == 1)

        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.indexes == [2])
        driver.ack(2)
        driver.writeLedger()
        #expect(driver.machine.groups["g"] == nil)
        #expect(driver.delivered.indexes == [2])
    }

    @Test func cancellingTheLastParkedMessageReturnsTheGroupToNormal() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 1]))
        driver.seedLedger([F.parked(1)])
        let accepted = driver.machine.retryNow(group: "g", now: driver.now)
        #expect(accepted)
        #expect(driver.machine.cancelRequested(group: "g", position: F.position(1)) == nil)
        driver.removeFromLedger(1)
        _ = driver.machine.cancelRecorded(group: "g")
        #expect(driver.machine.groups["g"] == nil)
        #expect(driver.machine.parkedCount == 0)
        #expect(driver.submit(F.message(3)).produce.indexes == [3])
    }

    /// Regression (fixed in 08d16d9): after a user cancelled a failing head, the next parked message
    /// waited out the cancelled one's backoff (up to 3 minutes), unlike after a delivery, a drop or a
    /// cancellation by Kafka, where the next one goes at once.
    @Test func aRecordedCancelDoesNotMakeTheNextMessageWaitOutTheCancelledOnesBackoff() {
        var driver = Self.failingGroup(failures: 8)
        #expect(approx(driver.backoffLeft("g"), 128))
        #expect(driver.machine.groups["g"]?.parked == 2)
        #expect(driver.machine.cancelRequested(group: "g", position: F.position(1)) == nil)
        driver.removeFromLedger(1)
        _ = driver.machine.cancelRecorded(group: "g")
        #expect(driver.machine.groups["g"]?.retryAt == nil)
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.indexes == [2])
    }

    /// Regression (fixed in 08d16d9): a user's cancel that landed while the worker ran the stages on the
    /// same parked head (outside the lock) was counted twice when the stages dropped it: the group's
    /// parked count went below zero and the group stalled for good.
    @Test func aHeadCancelledWhileItsRetryRunsTheStagesIsNotUnparkedTwice() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 1]))
        driver.seedLedger([F.parked(1)])
        // The worker's tick: the group is due; the worker reads its head from the ledger and checks it …
        #expect(driver.machine.tick(now: driver.now).retry == ["g"])
        #expect(driver.machine.shouldRetry(group: "g", position: F.position(1)))
        // … then runs the stages outside the lock. Meanwhile a user cancels the head (not in flight:
        // accepted) and the ledger deletes it …
        #expect(driver.machine.cancelRequested(group: "g", position: F.position(1)) == nil)
        driver.removeFromLedger(1)
        _ = driver.machine.cancelRecorded(group: "g")
        #expect(driver.machine.groups["g"] == nil)
        // … and the stages drop it.
        let dropped = driver.machine.retryLoaded(group: "g", .drop(F.parked(1)), now: driver.now)
        #expect(dropped.counts.parked == 0 && dropped.counts.filtered == 0)
        #expect(driver.machine.groups["g"] == nil, "parked must not go below zero")
        #expect(driver.machine.unwritten.unparks.isEmpty)
        #expect(driver.submit(F.message(3)).produce.indexes == [3], "the group must not stall")
    }

    /// The same race with a stage failing the cancelled head: no attempt is recorded for it, and the
    /// group's next message is not held back by a backoff of the cancelled one.
    @Test func aHeadCancelledWhileItsRetryRunsTheStagesRecordsNoAttemptWhenTheyFail() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        driver.seedLedger([F.parked(1), F.parked(2)])
        #expect(driver.machine.tick(now: driver.now).retry == ["g"])
        #expect(driver.machine.cancelRequested(group: "g", position: F.position(1)) == nil)
        driver.removeFromLedger(1)
        _ = driver.machine.cancelRecorded(group: "g")
        let failed = driver.machine.retryLoaded(group: "g", .failed(F.parked(1), stage: .function, error: "boom"), now: driver.now)
        #expect(failed.notices.isEmpty && failed.counts.failedAttempts == 0)
        #expect(driver.machine.unwritten.attempts.isEmpty)
        #expect(driver.machine.groups["g"]?.retryAt == nil)
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.indexes == [2])
    }
}
