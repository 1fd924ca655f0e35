import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// Backoff between attempts of a parked group: 1 s, 2 s, 4 s … capped at 180 s, jitter taking up to a
/// fifth off; checked on `Backoff` directly and through the state machine with the injected clock.
@Suite struct DeliveryStateMachineBackoffTests {
    typealias F = DeliveryFixture

    /// The full wait before attempt `attempt + 1`.
    static func base(_ attempt: Int) -> Double { min(180, pow(2, Double(max(0, attempt - 1)))) }

    @Test func backoffDoublesFromOneSecondUpToTheCap() {
        let expected: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 180, 180]
        #expect((1...10).map { Backoff.seconds(attempt: $0, jitter: 0) } == expected)
        #expect(Backoff.capSeconds == 180)
        for attempt in 9...30 {
            #expect(Backoff.seconds(attempt: attempt, jitter: 0) == 180, "attempt \(attempt)")
        }
    }

    @Test func backoffStaysCappedAndFiniteForHugeAttemptNumbers() {
        for attempt in [31, 63, 64, 65, 1_023, 1_024, 1_025, 10_000, Int(Int32.max), Int.max / 2, Int.max - 1, Int.max] {
            let full = Backoff.seconds(attempt: attempt, jitter: 0)
            let least = Backoff.seconds(attempt: attempt, jitter: 1)
            #expect(full == 180, "attempt \(attempt)")
            #expect(approx(least, 144), "attempt \(attempt)")
            #expect(full.isFinite && !full.isNaN && least.isFinite)
        }
    }

    @Test func jitterTakesUpToAFifthOff() {
        for attempt in 1...30 {
            let base = Self.base(attempt)
            #expect(Backoff.seconds(attempt: attempt, jitter: 0) == base)
            #expect(approx(Backoff.seconds(attempt: attempt, jitter: 1), 0.8 * base))
            #expect(approx(Backoff.seconds(attempt: attempt, jitter: 0.5), 0.9 * base))
            for jitter in stride(from: 0.0, through: 1.0, by: 0.125) {
                let seconds = Backoff.seconds(attempt: attempt, jitter: jitter)
                #expect(seconds >= 0.8 * base - 1e-9 && seconds <= base, "attempt \(attempt), jitter \(jitter)")
            }
        }
        // More jitter, shorter wait.
        #expect(Backoff.seconds(attempt: 4, jitter: 0.25) > Backoff.seconds(attempt: 4, jitter: 0.75))
    }

    @Test func jitterOutsideItsRangeIsClamped() {
        #expect(Backoff.seconds(attempt: 3, jitter: -1) == 4)
        #expect(approx(Backoff.seconds(attempt: 3, jitter: 5), 3.2))
        #expect(Backoff.seconds(attempt: 30, jitter: -.infinity) == 180)
        #expect(approx(Backoff.seconds(attempt: 30, jitter: .infinity), 144))
        let withNaN = Backoff.seconds(attempt: 3, jitter: .nan)
        #expect(withNaN.isFinite && withNaN >= 3.2 && withNaN <= 4)
    }

    @Test func noAttemptYetWaitsOneSecond() {
        for attempt in [0, -1, -1_000] {
            #expect(Backoff.seconds(attempt: attempt, jitter: 0) == 1, "attempt \(attempt)")
        }
    }

    @Test func aParkedMessageFailingAgainAndAgainBacksOffUpTo180Seconds() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1))
        driver.fail(1)
        driver.writeLedger()
        for attempt in 1...14 {
            let wait = Self.base(attempt)
            let failedAt = driver.now
            #expect(approx(driver.backoffLeft("g"), wait), "after attempt \(attempt)")
            #expect(driver.machine.groups["g"]?.retryAt == failedAt.addingTimeInterval(wait))

            // Not due a moment before the backoff ends, and the tick says when to look again.
            driver.now = failedAt.addingTimeInterval(wait - 0.001)
            let early = driver.tick()
            #expect(early.retry.isEmpty, "after attempt \(attempt)")
            #expect(early.wakeAt == failedAt.addingTimeInterval(wait))
            #expect(driver.inKafka.isEmpty)

            // Due when it ends.
            driver.now = failedAt.addingTimeInterval(wait)
            #expect(driver.tick().retry == ["g"], "after attempt \(attempt)")
            #expect(driver.inKafka.first?.deliverCount == attempt)
            driver.fail(1)
            driver.writeLedger()
            #expect(driver.ledger[F.position(1)]?.deliverCount == attempt + 1)
        }
        #expect(approx(driver.backoffLeft("g"), 180), "capped")
    }

    @Test func theInjectedJitterShortensEachBackoffWithinItsBounds() {
        let jitter = JitterSequence([0, 1, 0.5, 1, 0.25, 1, 1, 1, 1, 0, 1])
        var driver = DeliveryDriver(DeliveryStateMachine(limits: F.limits(), jitter: { jitter.next() }))
        driver.submit(F.message(1))
        driver.fail(1)
        driver.writeLedger()
        let factors: [Double] = [1, 0.8, 0.9, 0.8, 0.95, 0.8, 0.8, 0.8, 0.8, 1, 0.8]
        for (index, factor) in factors.enumerated() {
            let attempt = index + 1
            let wait = Self.base(attempt) * factor
            #expect(approx(driver.backoffLeft("g"), wait), "attempt \(attempt)")
            #expect(jitter.drawn == attempt, "one jitter per backoff")
            driver.advance(wait - 0.001)
            #expect(driver.tick().retry.isEmpty)
            driver.advance(0.001)
            #expect(driver.tick().retry == ["g"])
            driver.fail(1)
            driver.writeLedger()
        }
    }

    @Test func aTickWakesAtTheEarliestBackoffEnd() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1, group: "g"))
        driver.submit(F.message(2, group: "h"))
        driver.fail(1) // g: due at 1 s
        driver.advance(0.5)
        driver.fail(2) // h: due at 1.5 s
        driver.writeLedger()

        let first = driver.tick()
        #expect(first.retry.isEmpty)
        #expect(first.wakeAt == F.start.addingTimeInterval(1))
        driver.now = F.start.addingTimeInterval(1)
        let second = driver.tick()
        #expect(second.retry == ["g"])
        #expect(second.wakeAt == F.start.addingTimeInterval(1.5), "h still waits; g is in flight")
        driver.ack(1)
        driver.writeLedger()
        #expect(driver.tick().wakeAt == F.start.addingTimeInterval(1.5))
        driver.now = F.start.addingTimeInterval(1.5)
        #expect(driver.tick().retry == ["h"])
        #expect(driver.tick().wakeAt == nil, "nothing left waiting")
    }

    @Test func aPipelinedRunFailingBacksOffFromItsFirstAttempt() {
        var driver = DeliveryDriver(F.machine(jitter: 1))
        for index in 1...3 { driver.submit(F.message(index)) }
        driver.fail(1)
        driver.purgeAll()
        #expect(approx(driver.backoffLeft("g"), 0.8), "1 s less a fifth")
    }
}
