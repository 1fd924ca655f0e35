import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// Order within a group: pipelined runs of one topic and key, what waits for them, groups independent,
/// and order kept across a failure inside a run and across a producer replacement.
@Suite struct DeliveryStateMachineOrderTests {
    typealias F = DeliveryFixture

    @Test func pipelinesARunOfOneTopicAndKeyInCommitOrder() {
        var driver = DeliveryDriver(F.machine())
        for index in 1...5 {
            let actions = driver.submit(F.message(index))
            #expect(actions.produce.indexes == [index], "message \(index) goes to Kafka at once, behind the others")
            #expect(actions.counts.sent == 1)
        }
        #expect(driver.machine.inFlightCount == 5)
        #expect(driver.machine.groups["g"]?.inFlight.map(\.position.commitIndex) == [1, 2, 3, 4, 5])
        #expect(driver.machine.groups["g"]?.waiting.isEmpty == true)
        // Each attempt has its own delivery token.
        #expect(Set(driver.produced.map(\.deliveryID)).count == 5)
        #expect(Set(driver.machine.inFlightByID.keys) == Set(driver.produced.map(\.deliveryID)))

        driver.ackAll()
        #expect(driver.delivered.indexes == [1, 2, 3, 4, 5])
        #expect(driver.settled == [1001, 1002, 1003, 1004, 1005])
        #expect(driver.machine.groups.isEmpty, "an idle group is forgotten")
        #expect(driver.machine.inFlightCount == 0)
    }

    @Test func pipelineDepthBoundsARun() {
        var driver = DeliveryDriver(F.machine(depth: 2))
        for index in 1...5 { driver.submit(F.message(index)) }
        #expect(driver.produced.indexes == [1, 2])
        #expect(driver.machine.groups["g"]?.waiting.map(\.position.commitIndex) == [3, 4, 5])

        #expect(driver.ack(1).produce.indexes == [3])
        #expect(driver.ack(2).produce.indexes == [4])
        #expect(driver.ack(3).produce.indexes == [5])
        driver.ackAll()
        #expect(driver.delivered.indexes == [1, 2, 3, 4, 5])
    }

    @Test func aDifferentKeyWaitsUntilTheRunInFlightIsAcknowledged() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1, key: "a"))
        driver.submit(F.message(2, key: "a"))
        #expect(driver.submit(F.message(3, key: "b")).produce.isEmpty, "another partition: Kafka would not keep it behind 1 and 2")
        #expect(driver.submit(F.message(4, key: "b")).produce.isEmpty, "behind a waiting message")
        #expect(driver.submit(F.message(5, key: "a")).produce.isEmpty, "key a again, but behind waiting messages")
        #expect(driver.machine.groups["g"]?.waiting.map(\.position.commitIndex) == [3, 4, 5])

        #expect(driver.ack(1).produce.isEmpty, "2 is still in flight")
        // The run of key a is acknowledged: the run of key b goes, pipelined, then a's again.
        #expect(driver.ack(2).produce.indexes == [3, 4])
        #expect(driver.ack(3).produce.isEmpty, "4 is still in flight")
        #expect(driver.ack(4).produce.indexes == [5])
        driver.ackAll()
        #expect(driver.delivered.indexes == [1, 2, 3, 4, 5])
        #expect(driver.produced.indexes == [1, 2, 3, 4, 5])
    }

    @Test func theSameKeyOnAnotherTopicWaits() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1, topic: "t1"))
        #expect(driver.submit(F.message(2, topic: "t2")).produce.isEmpty)
        #expect(driver.submit(F.message(3, topic: "t2")).produce.isEmpty)
        #expect(driver.ack(1).produce.indexes == [2, 3])
    }

    @Test func messagesWithoutAKeyAreNeverPipelined() {
        var driver = DeliveryDriver(F.machine())
        #expect(driver.submit(F.message(1, key: nil)).produce.indexes == [1])
        #expect(driver.submit(F.message(2, key: nil)).produce.isEmpty, "no key: Kafka picks any partition")
        #expect(driver.ack(1).produce.indexes == [2])
        #expect(driver.submit(F.message(3, key: "k")).produce.isEmpty, "a keyed message behind a keyless one waits too")
        #expect(driver.ack(2).produce.indexes == [3])
    }

    @Test func acknowledgementsOutOfOrderStillReleaseTheNextRunOnlyAfterTheWholeRun() {
        var driver = DeliveryDriver(F.machine())
        driver.submit(F.message(1, key: "a"))
        driver.submit(F.message(2, key: "a"))
        driver.submit(F.message(3, key: "b"))
        #expect(driver.ack(2).produce.isEmpty, "1 is still in flight")
        #expect(driver.ack(1).produce.indexes == [3])
    }

    @Test func groupsAreIndependentOfEachOther() {
        var driver = DeliveryDriver(F.machine(depth: 1))
        driver.submit(F.message(1, group: "g1", key: "a"))
        #expect(driver.submit(F.message(2, group: "g1", key: "a")).produce.isEmpty, "depth 1: g1 has one in flight")
        // g2 goes at once, whatever g1 is waiting for, and its own acknowledgement does not release g1.
        #expect(driver.submit(F.message(3, group: "g2", key: "a")).produce.indexes == [3])
        #expect(driver.submit(F.message(4, group: "g3", key: "z")).produce.indexes == [4])
        #expect(driver.ack(3).produce.isEmpty)
        #expect(driver.machine.groups["g1"]?.waiting.count == 1)
        #expect(driver.ack(1).produce.indexes == [2])

        // A failure in g1 parks g1 only.
        driver.fail(2)
        #expect(driver.submit(F.message(5, group: "g1")).produce.isEmpty)
        #expect(driver.submit(F.message(6, group: "g2")).produce.indexes == [6])
        #expect(driver.machine.groups["g2"]?.parked == 0)
        #expect(driver.machine.groups["g1"]?.parked == 2)
    }

    @Test func aFailureInsideAPipelinedRunReplacesTheProducerAndParksTheRunInOrder() {
        var driver = DeliveryDriver(F.machine())
        for index in 1...3 { driver.submit(F.message(index, size: 100)) }

        let failed = driver.fail(1, code: KafkaCode.messageTimedOut)
        #expect(failed.replaceProducer, "2 and 3 are in flight behind 1: the producer must fail them so they cannot overtake 1")
        #expect(failed.wakeWorker)
        #expect(failed.produce.isEmpty && failed.settle.isEmpty)
        #expect(driver.machine.producerFailed)
        #expect(driver.machine.unwritten.parks.indexes == [1])
        #expect(driver.machine.groups["g"]?.parked == 1)
        #expect(driver.machine.groups["g"]?.inFlight.map(\.position.commitIndex) == [2, 3])

        // The old producer is purged: 2 and 3 come back failed and park behind 1, in order.
        let purged = driver.purgeAll()
        #expect(!purged.replaceProducer)
        #expect(driver.machine.unwritten.parks.indexes == [1, 2, 3])
        #expect(driver.machine.unwritten.parks.allSatisfy { $0.isParked })
        #expect(driver.machine.groups["g"]?.parked == 3)
        #expect(driver.machine.inFlightCount == 0)
        #expect(driver.machine.memoryBytes == 0)
        #expect(driver.settled.isEmpty, "nothing is durable yet")
        #expect(driver.replacements == 1)
    }

    @Test func afterAFailureInsideARunTheGroupIsDeliveredInCommitOrderOneAtATime() {
        var driver = DeliveryDriver(F.machine())
        for index in 1...3 { driver.submit(F.message(index)) }
        driver.fail(1)
        // Submitted while the replacement is under way: parks behind.
        #expect(driver.submit(F.message(4)).produce.isEmpty)
        driver.purgeAll()
        driver.machine.producerReplaced()
        #expect(driver.submit(F.message(5)).produce.isEmpty)

        driver.writeLedger()
        #expect(driver.ledger(group: "g").indexes == [1, 2, 3, 4, 5])
        #expect(Set(driver.settled) == [1001, 1002, 1003, 1004, 1005])
        let retriesBefore = driver.produced.count

        #expect(driver.tick().retry.isEmpty, "the backoff (1 s) has not ended")
        driver.advance(1)
        for expected in 1...5 {
            let tick = driver.tick()
            #expect(tick.retry == ["g"])
            #expect(driver.inKafka.indexes == [expected], "one parked message at a time, oldest first")
            #expect(driver.inKafka.first?.isParked == true)
            #expect(driver.tick().retry.isEmpty, "no second retry of the group while one is in flight")
            driver.ack(expected)
            if expected < 5 {
                #expect(driver.machine.groups["g"]?.parked == 5 - expected)
                #expect(driver.machine.groups["g"]?.retryAt == nil, "a retry got through: the next one may go at once")
            }
            driver.writeLedger()
        }
        #expect(driver.produced.dropFirst(retriesBefore).map(\.position.commitIndex) == [1, 2, 3, 4, 5])
        #expect(driver.delivered.indexes == [1, 2, 3, 4, 5])
        #expect(driver.ledger.isEmpty)
        #expect(driver.machine.groups["g"] == nil)
        #expect(driver.settled.count == 5, "each token settled once, when its park was written")

        // Back to normal: the next message goes live.
        #expect(driver.submit(F.message(6)).produce.indexes == [6])
    }

    @Test func purgedReportsDoNotRequestAnotherReplacement() {
        var driver = DeliveryDriver(F.machine())
        for index in 1...3 { driver.submit(F.message(index)) }
        driver.submit(F.message(4, group: "h"))

        let fatal = driver.machine.producerFatal()
        #expect(fatal.replaceProducer && fatal.wakeWorker)
        #expect(!driver.machine.producerFatal().replaceProducer, "already being replaced")
        driver.machine.producerReplaced()
        #expect(!driver.machine.producerFailed)

        // The old producer is purged after the new one took over; its reports must not start another round.
        #expect(!driver.fail(1, code: KafkaCode.purgeInflight).replaceProducer, "2 and 3 are in flight, but purged too")
        #expect(!driver.fail(2, code: KafkaCode.purgeQueue).replaceProducer)
        #expect(!driver.purgeAll().replaceProducer)
        #expect(driver.replacements == 0, "no report of the purged producer asked for another")
        #expect(!driver.machine.producerFailed)
        #expect(driver.machine.unwritten.parks.indexes == [1, 2, 3, 4])

        // A new fatal error after the replacement asks again.
        #expect(driver.machine.producerFatal().replaceProducer)
    }

    @Test func aFatalErrorRequestsAReplacementEvenWithNothingBehindIt() {
        var fatal = DeliveryDriver(F.machine())
        fatal.submit(F.message(1))
        let actions = fatal.fail(1, code: KafkaCode.outOfOrderSequence)
        #expect(actions.replaceProducer)
        #expect(fatal.machine.producerFailed)
        #expect(fatal.machine.unwritten.parks.indexes == [1])

        var retriable = DeliveryDriver(F.machine())
        retriable.submit(F.message(1))
        #expect(!retriable.fail(1, code: KafkaCode.requestTimedOut).replaceProducer, "nothing behind it can overtake it")
        #expect(!retriable.machine.producerFailed)
        #expect(retriable.machine.unwritten.parks.indexes == [1])
    }

    @Test func aProducerReplacementResendsWhatItHeldInOrderPerGroup() {
        var driver = DeliveryDriver(F.machine())
        for index in 1...3 { driver.submit(F.message(index, group: "g", key: "a")) }
        for index in 4...5 { driver.submit(F.message(index, group: "h", key: "b")) }
        driver.submit(F.message(6, group: "i", key: "c"))
        driver.submit(F.message(7, group: "i", key: "other")) // waiting behind 6

        #expect(driver.machine.producerFatal().replaceProducer)
        driver.machine.producerReplaced()
        driver.purgeAll()
        #expect(driver.machine.unwritten.parks.indexes == [1, 2, 3, 4, 5, 6, 7])
        #expect(driver.machine.parkedCount == 7)

        driver.runUntilQuiet()
        func order(_ group: String) -> [Int] {
            driver.delivered.filter { position in driver.produced.contains { $0.position == position && $0.group == group } }.indexes
        }
        #expect(order("g") == [1, 2, 3])
        #expect(order("h") == [4, 5])
        #expect(order("i") == [6, 7])
        #expect(driver.delivered.count == 7)
        // Each was sent once from the ledger.
        #expect(driver.produced.filter(\.isParked).indexes.sorted() == [1, 2, 3, 4, 5, 6, 7])
        // 1 to 6 were sent once before; 7 was waiting behind 6 and never was.
        let attempts = Dictionary(driver.produced.filter(\.isParked).map { ($0.position.commitIndex, $0.deliverCount) },
                                  uniquingKeysWith: { first, _ in first })
        #expect(attempts == [1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 0])
        #expect(driver.replacements == 0, "no purged report or retry asked for another producer")
        #expect(driver.machine.parkedCount == 0 && driver.ledger.isEmpty)
    }
}
