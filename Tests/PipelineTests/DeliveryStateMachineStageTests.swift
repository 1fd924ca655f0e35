import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// What the sink's stages (filter, functions, enrichment) make of a message, on submit and on a retry.
@Suite struct DeliveryStateMachineStageTests {
    typealias F = DeliveryFixture

    @Test(arguments: [FailedStage.function, FailedStage.enrichment])
    func aStageFailingANewMessageParksItWithABackoffAndANotice(stage: FailedStage) {
        var driver = DeliveryDriver(F.machine(jitter: 0.5))
        let actions = driver.submit(.failed(F.message(1, size: 100), stage: stage, error: "boom"))
        #expect(actions.produce.isEmpty && actions.settle.isEmpty)
        #expect(actions.wakeWorker)
        #expect(actions.counts.functionFailures == 1 && actions.counts.parked == 1)
        #expect(actions.counts.sent == 0 && actions.counts.failedAttempts == 0)
        #expect(actions.notices == [.stageFailed(stage: stage, table: "public.t", key: "k", error: "boom")])

        let parks = driver.machine.unwritten.parks
        #expect(parks.indexes == [1])
        #expect(parks.first?.deliverCount == 1)
        #expect(parks.first?.lastError == "boom")
        #expect(parks.first?.isParked == true)
        #expect(driver.machine.groups["g"]?.parked == 1)
        #expect(driver.machine.memoryBytes == 0)
        #expect(approx(driver.backoffLeft("g"), 0.9), "attempt 1: 1 s less jitter 0.5 × a fifth")

        driver.writeLedger()
        #expect(driver.settled == [1001])
        driver.advance(0.89)
        let early = driver.tick()
        #expect(early.retry.isEmpty)
        #expect(early.wakeAt == F.start.addingTimeInterval(0.9))
        driver.advance(0.01)
        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.indexes == [1])
        #expect(driver.inKafka.first?.deliverCount == 1)
    }

    @Test func aStageFailingAgainOnARetryRecordsAnAttemptWithAGrowingBackoff() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(.failed(F.message(1), stage: .function, error: "boom"))
        driver.submit(F.message(2)) // parks behind
        driver.writeLedger()
        driver.retryStages = { .failed($0, stage: .function, error: "boom again") }

        var waited = 1.0
        for attempt in 2...6 {
            driver.advance(waited)
            let tick = driver.tick()
            #expect(tick.retry == ["g"])
            #expect(driver.inKafka.isEmpty)
            #expect(driver.counts.failedAttempts == attempt - 1)
            #expect(driver.counts.functionFailures == attempt) // the first failure, on submit, counted too
            #expect(driver.notices.last == .retryFailed(stage: .function, table: "public.t", attempt: attempt, error: "boom again"))
            #expect(driver.machine.unwritten.attempts.map(\.deliverCount) == [attempt])
            #expect(driver.machine.unwritten.attempts.map(\.position) == [F.position(1)])
            #expect(driver.machine.unwritten.parks.isEmpty)
            waited = pow(2, Double(attempt - 1))
            #expect(approx(driver.backoffLeft("g"), waited), "attempt \(attempt)")
            #expect(driver.machine.groups["g"]?.parked == 2)
            driver.writeLedger()
            #expect(driver.ledger[F.position(1)]?.deliverCount == attempt)
        }

        // The function is fixed: 1 then 2 go, in order.
        driver.retryStages = { .send($0) }
        driver.runUntilQuiet()
        #expect(driver.delivered.indexes == [1, 2])
    }

    @Test func aMessageDroppedOnSubmitSettlesAtOnce() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1))
        let dropped = driver.submit(.drop(F.message(2, size: 100)))
        #expect(dropped.settle == [1002], "nothing to deliver: safe now, even with 1 in flight")
        #expect(dropped.counts.filtered == 1 && dropped.counts.sent == 0)
        #expect(dropped.produce.isEmpty)
        #expect(driver.machine.memoryBytes == 10)
        #expect(driver.machine.groups["g"]?.inFlight.count == 1)
        #expect(driver.machine.groups["g"]?.waiting.isEmpty == true)
    }

    @Test func aMessageDroppedOnARetryIsUnparkedAndTheGroupGoesOn() {
        var driver = DeliveryDriver(F.machine(parkedGroups: ["g": 2]))
        driver.seedLedger([F.parked(1, deliverCount: 3), F.parked(2)])
        driver.retryStages = { .drop($0) }

        #expect(driver.tick().retry == ["g"])
        #expect(driver.inKafka.isEmpty)
        #expect(driver.counts.filtered == 1 && driver.counts.parked == -1)
        #expect(driver.settled.isEmpty, "its token was settled when it was parked")
        #expect(driver.machine.unwritten.unparks.indexes == [1])
        #expect(driver.machine.groups["g"]?.parked == 1)
        #expect(driver.machine.groups["g"]?.retryAt == nil)

        driver.writeLedger()
        driver.retryStages = { .send($0) }
        #expect(driver.tick().retry == ["g"], "the next one goes at once")
        #expect(driver.inKafka.indexes == [2])
        driver.ack(2)
        #expect(driver.machine.groups["g"] == nil)
        #expect(driver.delivered.indexes == [2])
    }

    @Test func aStageFailingBehindParkedMessagesParksInOrder() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1))
        driver.fail(1)
        let second = driver.submit(.failed(F.message(2), stage: .enrichment, error: "no row"))
        #expect(second.produce.isEmpty)
        #expect(driver.machine.unwritten.parks.indexes == [1, 2])
        #expect(driver.machine.groups["g"]?.parked == 2)
        driver.runUntilQuiet()
        #expect(driver.delivered.indexes == [1, 2])
    }

    /// Regression (fixed in 08d16d9): a stage failure parked the new message while older messages of
    /// its group still waited in memory, and its retry from the ledger overtook them.
    @Test func aStageFailureDoesNotLetTheParkedMessageOvertakeWaitingOnes() {
        var driver = DeliveryDriver(F.machine(depth: 1))
        driver.submit(F.message(1, size: 100))
        driver.submit(F.message(2, size: 100)) // waiting: depth 1
        let failed = driver.submit(.failed(F.message(3, size: 100), stage: .function, error: "boom"))
        #expect(driver.machine.unwritten.parks.indexes == [2, 3], "the older waiting message parks first")
        #expect(driver.machine.unwritten.parks.map(\.deliverCount) == [0, 1])
        #expect(failed.counts.parked == 2)
        #expect(driver.machine.groups["g"]?.waiting.isEmpty == true)
        #expect(driver.machine.memoryBytes == 100, "only 1, in flight, is still in memory")
        driver.runUntilQuiet()
        #expect(driver.delivered.indexes == [1, 2, 3])
    }

    /// The same with several keys in one group (configured group columns): a different key waits.
    @Test func aStageFailureBehindAnotherKeysWaitingMessagesKeepsTheGroupsOrder() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1, key: "a"))
        driver.submit(F.message(2, key: "a"))
        driver.submit(F.message(3, key: "b")) // waits for a's run
        driver.submit(.failed(F.message(4, key: "c"), stage: .enrichment, error: "no row"))
        driver.submit(F.message(5, key: "a")) // parks behind
        driver.runUntilQuiet()
        #expect(driver.delivered.indexes == [1, 2, 3, 4, 5])
    }

    /// Regression (fixed in 08d16d9): the acknowledgement of an earlier live message cleared the backoff
    /// of a message its group had just parked after a stage failure, so it was retried at once.
    @Test func aStageFailureBackoffIsNotCutShortByTheAckOfAnEarlierMessage() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1))
        driver.submit(.failed(F.message(2), stage: .function, error: "boom"))
        #expect(approx(driver.backoffLeft("g"), 1))
        driver.ack(1)
        driver.writeLedger()
        #expect(approx(driver.backoffLeft("g"), 1))
        #expect(driver.tick().retry.isEmpty, "1 s of backoff left")
        driver.advance(1)
        #expect(driver.tick().retry == ["g"])
    }
}
