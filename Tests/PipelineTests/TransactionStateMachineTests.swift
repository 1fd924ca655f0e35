import Foundation
import KafkaSink
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// The Kafka transactions of an exactly-once sink, without Kafka: whole PostgreSQL transactions per Kafka
/// transaction, splits at `maxMessages`, nothing released before a commit, aborts re-run in order,
/// too-large messages leave, a fenced producer never commits again.
@Suite struct TransactionStateMachineTests {
    typealias Machine = TransactionStateMachine
    static let start = Date(timeIntervalSince1970: 1_700_000_000)

    static func position(_ lsn: UInt64, _ index: Int) -> MessagePosition { MessagePosition(commitLSN: LSN(lsn), commitIndex: index) }

    static func message(_ token: UInt, key: String = "k") -> Message {
        Message(key: Array(key.utf8), value: Array("value \(token)".utf8), topic: "t", recordPKs: [key])
    }

    static func ack(_ token: UInt, offset: Int64 = 0) -> DeliveryReport {
        DeliveryReport(token: token, error: nil, topic: "t", partition: 0, offset: offset, size: 10)
    }

    static func failure(_ token: UInt, code: Int32) -> DeliveryReport {
        DeliveryReport(token: token, error: KafkaError(code: code), topic: "t", partition: -1, offset: -1, size: 10)
    }

    /// The token of the offsets record's report.
    static let offsetsToken = UInt.max

    static let abortable = KafkaTransactionError(error: KafkaError(code: KafkaCode.requestTimedOut), requiresAbort: true)
    static let fenced = KafkaTransactionError(error: KafkaError(code: -144, fatal: true), isFatal: true)

    /// Hands message `token` of PostgreSQL transaction `lsn` (its index within it: `index`).
    @discardableResult
    static func hand(_ machine: inout Machine, _ token: UInt, lsn: UInt64 = 100, index: Int = 0, retry: Bool = false) -> Machine.Actions {
        machine.hand(message(token), token: token, position: position(lsn, index), isRetry: retry, now: start)
    }

    @Test func theFirstMessageBeginsATransactionAndIsProducedAtOnce() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        let actions = Self.hand(&machine, 1)
        #expect(actions.begin && actions.produce.map(\.token) == [1] && actions.commit == nil)
        let next = Self.hand(&machine, 2, index: 1)
        #expect(!next.begin && next.produce.map(\.token) == [2])
        #expect(machine.phase == .open)
    }

    @Test func nothingCommitsBeforeThePostgresTransactionEnds() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        for token: UInt in 1...3 { #expect(Self.hand(&machine, token, index: Int(token)).commit == nil) }
        let ended = machine.transactionEnded(now: Self.start)
        #expect(ended.commit == Machine.Commit(count: 3, position: Self.position(100, 3), retried: []))
        #expect(machine.phase == .committing(count: 3))
    }

    @Test func reportsAreReleasedOnlyWhenTheTransactionCommits() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1)
        Self.hand(&machine, 2, index: 1)
        _ = machine.delivered([Self.ack(1, offset: 7), Self.ack(2, offset: 8)], offsetsToken: Self.offsetsToken)
        let ended = machine.transactionEnded(now: Self.start)
        #expect(ended.release.isEmpty, "acknowledged is not committed")
        let committed = machine.commitSucceeded(now: Self.start)
        #expect(committed.release.map(\.token) == [1, 2] && committed.release.map(\.offset) == [7, 8])
        #expect(committed.release.allSatisfy { $0.error == nil })
        #expect(committed.committed?.messages == 2 && committed.committed?.position == Self.position(100, 1))
        #expect(machine.committedPosition == Self.position(100, 1) && machine.held.isEmpty && machine.phase == .idle)
    }

    @Test func commitIsCalledOnlyOnceKafkaAcknowledgedTheMessagesAndTheOffsetsRecord() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1)
        Self.hand(&machine, 2, index: 1)
        _ = machine.delivered([Self.ack(1)], offsetsToken: Self.offsetsToken)
        let decided = machine.transactionEnded(now: Self.start)
        #expect(decided.commit?.count == 2 && !decided.callCommit, "the offsets record is written; the commit waits")
        #expect(!machine.delivered([Self.ack(2)], offsetsToken: Self.offsetsToken).callCommit, "the offsets record is not acknowledged yet")
        let ready = machine.delivered([Self.ack(Self.offsetsToken)], offsetsToken: Self.offsetsToken)
        #expect(ready.callCommit)
        #expect(!machine.delivered([Self.ack(2)], offsetsToken: Self.offsetsToken).callCommit, "called once")
    }

    @Test func aFailedMessageStillLetsTheCommitBeCalledSoThatItFailsAndAborts() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1)
        _ = machine.delivered([Self.failure(1, code: KafkaCode.messageTimedOut), Self.ack(Self.offsetsToken)], offsetsToken: Self.offsetsToken)
        #expect(machine.transactionEnded(now: Self.start).callCommit == false, "the offsets record was written after the report")
        #expect(machine.delivered([Self.ack(Self.offsetsToken)], offsetsToken: Self.offsetsToken).callCommit)
        #expect(machine.lastError?.code == KafkaCode.messageTimedOut)
    }

    @Test func aRefusedOffsetsRecordAbortsTheTransaction() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1)
        _ = machine.transactionEnded(now: Self.start)
        let refused = machine.offsetsRecordRefused(KafkaError(code: KafkaCode.requestTimedOut), now: Self.start)
        #expect(refused.abort && machine.phase == .aborting)
    }

    @Test func aTransactionLingersBeforeItCommitsUnlessItIsFull() {
        var machine = Machine(maxMessages: 3, committedPosition: nil, linger: 0.025)
        machine.hand(Self.message(1), token: 1, position: Self.position(100, 0), isRetry: false, now: Self.start)
        let early = machine.transactionEnded(now: Self.start.addingTimeInterval(0.01))
        #expect(early.commit == nil && early.wakeAt == Self.start.addingTimeInterval(0.025))
        machine.hand(Self.message(2), token: 2, position: Self.position(200, 0), isRetry: false, now: Self.start.addingTimeInterval(0.015))
        _ = machine.transactionEnded(now: Self.start.addingTimeInterval(0.02))
        #expect(machine.tick(now: Self.start.addingTimeInterval(0.025)).commit?.count == 2, "both share one transaction")
        _ = machine.commitSucceeded(now: Self.start.addingTimeInterval(0.03))
        for token: UInt in 3...5 {
            let actions = machine.hand(Self.message(token), token: token, position: Self.position(300, Int(token)), isRetry: false,
                                       now: Self.start.addingTimeInterval(0.031))
            #expect((actions.commit != nil) == (token == 5), "a full transaction commits at once")
        }
    }

    @Test func aCommittedMessageWithoutItsReportYetIsReleasedAsDelivered() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1)
        _ = machine.transactionEnded(now: Self.start)
        let committed = machine.commitSucceeded(now: Self.start)
        #expect(committed.release.map(\.token) == [1] && committed.release.first?.error == nil)
    }

    @Test func messagesHandedDuringACommitGoIntoTheNextTransaction() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1)
        _ = machine.transactionEnded(now: Self.start)
        let during = Self.hand(&machine, 2, lsn: 200)
        #expect(during.produce.isEmpty && !during.begin, "the committing transaction takes nothing more")
        #expect(machine.transactionEnded(now: Self.start).commit == nil, "one commit at a time")
        let committed = machine.commitSucceeded(now: Self.start)
        #expect(committed.release.map(\.token) == [1])
        #expect(committed.begin && committed.produce.map(\.token) == [2])
        #expect(committed.commit == Machine.Commit(count: 1, position: Self.position(200, 0), retried: []),
                "its PostgreSQL transaction ended meanwhile: committed at once")
    }

    @Test func aHalfHandedPostgresTransactionWaitsForItsEnd() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1)
        _ = machine.transactionEnded(now: Self.start)
        Self.hand(&machine, 2, lsn: 200) // its transaction goes on
        let committed = machine.commitSucceeded(now: Self.start)
        #expect(committed.produce.map(\.token) == [2] && committed.commit == nil)
        Self.hand(&machine, 3, lsn: 200, index: 1)
        #expect(machine.transactionEnded(now: Self.start).commit?.count == 2)
    }

    @Test func aPostgresTransactionLargerThanMaxMessagesIsSplitThere() {
        var machine = Machine(maxMessages: 3, committedPosition: nil)
        #expect(Self.hand(&machine, 1).commit == nil)
        #expect(Self.hand(&machine, 2, index: 1).commit == nil)
        let third = Self.hand(&machine, 3, index: 2)
        #expect(third.commit == Machine.Commit(count: 3, position: Self.position(100, 2), retried: []))
        Self.hand(&machine, 4, index: 3)
        let committed = machine.commitSucceeded(now: Self.start)
        #expect(committed.committed?.position == Self.position(100, 2), "a restart skips only what was committed")
        #expect(committed.produce.map(\.token) == [4] && committed.commit == nil)
        #expect(machine.transactionEnded(now: Self.start).commit?.position == Self.position(100, 3))
    }

    @Test func severalSmallPostgresTransactionsMayShareOneKafkaTransaction() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1, lsn: 100)
        _ = machine.transactionEnded(now: Self.start)
        for (token, lsn) in [(UInt(2), UInt64(200)), (3, 300)] {
            Self.hand(&machine, token, lsn: lsn)
            #expect(machine.transactionEnded(now: Self.start).commit == nil)
        }
        let committed = machine.commitSucceeded(now: Self.start)
        #expect(committed.commit == Machine.Commit(count: 2, position: Self.position(300, 0), retried: []))
    }

    @Test func aRetriableFailureAbortsAndRunsTheSameMessagesAgainInOrderAfterABackoff() {
        var machine = Machine(maxMessages: 100, committedPosition: nil, jitter: { 0 })
        for token: UInt in 1...3 { Self.hand(&machine, token, index: Int(token)) }
        _ = machine.transactionEnded(now: Self.start)
        _ = machine.delivered([Self.ack(1), Self.failure(2, code: KafkaCode.requestTimedOut)], offsetsToken: Self.offsetsToken)
        let failed = machine.commitFailed(Self.abortable, now: Self.start)
        #expect(failed.abort && failed.release.isEmpty && machine.phase == .aborting)
        let aborted = machine.abortFinished(now: Self.start)
        #expect(aborted.release.isEmpty, "nothing is released: the dispatcher's groups all wait")
        #expect(aborted.wakeAt == Self.start.addingTimeInterval(1) && aborted.aborted != nil)
        #expect(machine.tick(now: Self.start.addingTimeInterval(0.5)).produce.isEmpty)
        let again = machine.tick(now: Self.start.addingTimeInterval(1))
        #expect(again.begin && again.produce.map(\.token) == [1, 2, 3])
        #expect(again.commit?.count == 3, "the whole PostgreSQL transaction, again")
        #expect(machine.held.allSatisfy { $0.placed == nil }, "acknowledgements of the aborted run do not count")
    }

    @Test func theBackoffDoublesPerAbortAndStopsAtThreeMinutes() {
        var machine = Machine(maxMessages: 100, committedPosition: nil, jitter: { 0 })
        Self.hand(&machine, 1)
        _ = machine.transactionEnded(now: Self.start)
        var now = Self.start
        var waits: [Double] = []
        for _ in 1...10 {
            _ = machine.commitFailed(Self.abortable, now: now)
            let aborted = machine.abortFinished(now: now)
            let wake = aborted.wakeAt ?? now
            waits.append(wake.timeIntervalSince(now))
            now = wake
            #expect(machine.tick(now: now).commit != nil)
        }
        #expect(waits == [1, 2, 4, 8, 16, 32, 64, 128, 180, 180])
        _ = machine.commitSucceeded(now: now)
        #expect(machine.attempt == 0, "a commit resets the backoff")
    }

    @Test func aTooLargeMessageLeavesAndTheTransactionRunsAgainAtOnceWithoutIt() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        for token: UInt in 1...3 { Self.hand(&machine, token, index: Int(token)) }
        _ = machine.transactionEnded(now: Self.start)
        _ = machine.delivered([Self.ack(1), Self.failure(2, code: KafkaCode.messageTooLarge), Self.ack(3)], offsetsToken: Self.offsetsToken)
        _ = machine.commitFailed(Self.abortable, now: Self.start)
        let aborted = machine.abortFinished(now: Self.start)
        #expect(aborted.release.map(\.token) == [2] && aborted.release.first?.error?.category == .messageTooLarge)
        #expect(aborted.begin && aborted.produce.map(\.token) == [1, 3] && aborted.commit?.count == 2, "no backoff")
        let committed = machine.commitSucceeded(now: Self.start)
        #expect(committed.release.map(\.token) == [1, 3])
    }

    @Test func aRefusedProduceLeavesTheTransaction() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1)
        Self.hand(&machine, 2, index: 1)
        machine.refused(token: 2)
        #expect(machine.held.map(\.token) == [1] && machine.produced == 1)
        #expect(machine.transactionEnded(now: Self.start).commit?.count == 1)
    }

    @Test func aFencedProducerNeverCommitsAgain() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1)
        _ = machine.transactionEnded(now: Self.start)
        let fenced = machine.commitFailed(Self.fenced, now: Self.start)
        #expect(fenced.stopped != nil && !fenced.abort && fenced.release.isEmpty && machine.isStopped)
        let later = Self.hand(&machine, 2, lsn: 200)
        #expect(later.produce.isEmpty && !later.begin && later.commit == nil)
        #expect(machine.transactionEnded(now: Self.start).commit == nil)
        #expect(machine.tick(now: Self.start.addingTimeInterval(600)).commit == nil)
        #expect(machine.commitSucceeded(now: Self.start).release.isEmpty)
    }

    /// Until an abort succeeds the Kafka transaction is still open: a failed abort (retriable or not, but not
    /// fatal) is called again after a backoff, and nothing begins or is produced before it succeeds.
    @Test(arguments: [true, false])
    func anAbortThatFailsIsCalledAgainBeforeTheTransactionRunsAgain(retriable: Bool) {
        var machine = Machine(maxMessages: 100, committedPosition: nil, jitter: { 0 })
        for token: UInt in 1...2 { Self.hand(&machine, token, index: Int(token)) }
        _ = machine.transactionEnded(now: Self.start)
        #expect(machine.commitFailed(Self.abortable, now: Self.start).abort)
        let error = KafkaTransactionError(error: KafkaError(code: KafkaCode.requestTimedOut), isRetriable: retriable)
        let failed = machine.abortFinished(now: Self.start, error: error)
        #expect(!failed.begin && failed.produce.isEmpty && failed.aborted == nil, "not aborted yet")
        #expect(failed.wakeAt == Self.start.addingTimeInterval(1) && machine.phase == .aborting)
        let early = machine.tick(now: Self.start.addingTimeInterval(0.5))
        #expect(!early.abort && !early.begin && early.wakeAt == Self.start.addingTimeInterval(1))
        let again = machine.tick(now: Self.start.addingTimeInterval(1))
        #expect(again.abort && !again.begin && again.produce.isEmpty, "the abort is called again, nothing begins")
        let aborted = machine.abortFinished(now: Self.start.addingTimeInterval(1))
        #expect(aborted.aborted != nil && aborted.wakeAt == Self.start.addingTimeInterval(3), "then the usual backoff, doubled")
        let rerun = machine.tick(now: Self.start.addingTimeInterval(3))
        #expect(rerun.begin && rerun.produce.map(\.token) == [1, 2])
    }

    @Test func aCommitThatMayBeRetriedIsCalledAgainWithoutAnAbort() {
        var machine = Machine(maxMessages: 100, committedPosition: nil, jitter: { 0 })
        Self.hand(&machine, 1)
        _ = machine.transactionEnded(now: Self.start)
        let retriable = KafkaTransactionError(error: KafkaError(code: KafkaCode.requestTimedOut), isRetriable: true)
        let failed = machine.commitFailed(retriable, now: Self.start)
        #expect(!failed.abort && failed.wakeAt == Self.start.addingTimeInterval(1))
        #expect(machine.tick(now: Self.start.addingTimeInterval(1)).callCommit, "the same commit, called again")
    }

    @Test func theCommittedPositionNeverGoesBackAndRetriesDoNotMoveIt() {
        var machine = Machine(maxMessages: 100, committedPosition: Self.position(500, 2))
        let commit = Self.hand(&machine, 1, lsn: 50, retry: true).commit
        #expect(commit == Machine.Commit(count: 1, position: Self.position(500, 2), retried: [Self.position(50, 0)]))
        _ = machine.commitSucceeded(now: Self.start)
        #expect(machine.committedPosition == Self.position(500, 2))
    }

    @Test func aRetriedParkedMessageCommitsOnItsOwnWhenNoPostgresTransactionIsHalfHandedOver() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        let retried = Self.hand(&machine, 1, lsn: 50, retry: true)
        #expect(retried.commit?.retried == [Self.position(50, 0)])
        _ = machine.commitSucceeded(now: Self.start)
        Self.hand(&machine, 2, lsn: 200)
        #expect(Self.hand(&machine, 3, lsn: 60, retry: true).commit == nil, "inside a half-handed PostgreSQL transaction: waits")
        #expect(machine.transactionEnded(now: Self.start).commit?.count == 2)
    }

    @Test func aCommittedRetryIsNamedByEveryCommitUntilTheLedgerLetItGo() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1, lsn: 50, retry: true)
        _ = machine.commitSucceeded(now: Self.start)
        Self.hand(&machine, 2, lsn: 200)
        #expect(machine.transactionEnded(now: Self.start).commit?.retried == [Self.position(50, 0)], "a crash now must still find it")
        _ = machine.commitSucceeded(now: Self.start)
        machine.unparksWritten([Self.position(50, 0)])
        Self.hand(&machine, 3, lsn: 300)
        #expect(machine.transactionEnded(now: Self.start).commit?.retried == [])
    }

    @Test func aBackfillPagesCursorCommitsWithItsRowsAndStaysUntilTheBackfillEnds() {
        var machine = Machine(maxMessages: 100, committedPosition: nil, committedCursors: ["old": ["9"]])
        Self.hand(&machine, 1, lsn: 400)
        Self.hand(&machine, 2, lsn: 400, index: 1)
        let page = machine.transactionEnded(backfill: BackfillCursor(backfillID: "b", cursor: ["2"]), now: Self.start)
        #expect(page.commit?.backfills == ["old": ["9"], "b": ["2"]])
        _ = machine.commitSucceeded(now: Self.start)
        #expect(machine.committedCursors == ["old": ["9"], "b": ["2"]])
        machine.backfillEnded("old")
        Self.hand(&machine, 3, lsn: 500)
        #expect(machine.transactionEnded(now: Self.start).commit?.backfills == ["b": ["2"]], "carried by later commits")
    }

    @Test func aPagesCursorWhoseOnlyMessageWasTooLargeGoesWithTheNextCommit() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        Self.hand(&machine, 1, lsn: 400)
        _ = machine.transactionEnded(backfill: BackfillCursor(backfillID: "b", cursor: ["1"]), now: Self.start)
        _ = machine.delivered([Self.failure(1, code: KafkaCode.messageTooLarge)], offsetsToken: Self.offsetsToken)
        _ = machine.commitFailed(Self.abortable, now: Self.start)
        let aborted = machine.abortFinished(now: Self.start)
        #expect(aborted.release.map(\.token) == [1] && aborted.commit == nil && machine.held.isEmpty)
        Self.hand(&machine, 2, lsn: 500)
        #expect(machine.transactionEnded(now: Self.start).commit?.backfills == ["b": ["1"]])
    }

    @Test func aPurgeReturnsEverythingHeldAsFailedInOrder() {
        var machine = Machine(maxMessages: 100, committedPosition: nil)
        for token: UInt in 1...3 { Self.hand(&machine, token, index: Int(token)) }
        let purged = machine.purge(with: KafkaError(code: KafkaCode.purgeQueue))
        #expect(purged.release.map(\.token) == [1, 2, 3] && purged.release.allSatisfy { $0.error?.isPurged == true })
        #expect(machine.held.isEmpty && machine.phase == .idle)
        #expect(Self.hand(&machine, 4).begin, "the next message begins a new transaction")
    }
}
