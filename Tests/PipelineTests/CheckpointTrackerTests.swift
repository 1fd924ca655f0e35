import Testing
import Pipeline
import SluiceCore

@Suite("CheckpointTracker")
struct CheckpointTrackerTests {
    @Test func startsAtTheGivenPosition() {
        #expect(CheckpointTracker().confirmed == .zero)
        #expect(CheckpointTracker(confirmed: LSN(500)).confirmed == LSN(500))
        #expect(CheckpointTracker().outstanding == 0)
    }

    @Test func advancesOnlyWhenCommittedAndAcknowledged() {
        var tracker = CheckpointTracker(confirmed: LSN(10))
        tracker.begin()
        let a = tracker.addMessage()
        let b = tracker.addMessage()
        #expect(tracker.outstanding == 2)
        tracker.acknowledge(a)
        tracker.acknowledge(b)
        // Every message acked, but the transaction is still open.
        #expect(tracker.confirmed == LSN(10))
        #expect(tracker.outstanding == 0)
        tracker.commit(endLSN: LSN(100))
        #expect(tracker.confirmed == LSN(100))
    }

    @Test func committedButUnacknowledgedDoesNotAdvance() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let a = tracker.addMessage()
        let b = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        #expect(tracker.confirmed == .zero)
        tracker.acknowledge(a)
        #expect(tracker.confirmed == .zero)
        #expect(tracker.outstanding == 1)
        tracker.acknowledge(b)
        #expect(tracker.confirmed == LSN(100))
        #expect(tracker.outstanding == 0)
    }

    @Test func laterAckDoesNotPassAnEarlierUnackedTransaction() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let first = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        tracker.begin()
        let second = tracker.addMessage()
        tracker.commit(endLSN: LSN(200))
        tracker.begin()
        let third = tracker.addMessage()
        tracker.commit(endLSN: LSN(300))
        #expect(first != second && second != third)

        tracker.acknowledge(third)
        tracker.acknowledge(second)
        #expect(tracker.confirmed == .zero)
        #expect(tracker.outstanding == 1)
        tracker.acknowledge(first)
        // All three settle at once.
        #expect(tracker.confirmed == LSN(300))
        #expect(tracker.outstanding == 0)
    }

    @Test func advancesTransactionByTransaction() {
        var tracker = CheckpointTracker()
        var tokens: [UInt] = []
        for end in [100, 200, 300] {
            tracker.begin()
            tokens.append(tracker.addMessage())
            tracker.commit(endLSN: LSN(UInt64(end)))
        }
        tracker.acknowledge(tokens[0])
        #expect(tracker.confirmed == LSN(100))
        tracker.acknowledge(tokens[1])
        #expect(tracker.confirmed == LSN(200))
        tracker.acknowledge(tokens[2])
        #expect(tracker.confirmed == LSN(300))
    }

    @Test func emptyTransactionAdvancesAtCommit() {
        var tracker = CheckpointTracker()
        tracker.begin()
        tracker.commit(endLSN: LSN(50))
        #expect(tracker.confirmed == LSN(50))
        tracker.begin()
        #expect(tracker.confirmed == LSN(50))
        tracker.commit(endLSN: LSN(60))
        #expect(tracker.confirmed == LSN(60))
    }

    @Test func emptyTransactionWaitsBehindAnUnackedOne() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let token = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        tracker.begin()
        tracker.commit(endLSN: LSN(150))
        #expect(tracker.confirmed == .zero)
        tracker.acknowledge(token)
        #expect(tracker.confirmed == LSN(150))
    }

    @Test func neverMovesBackwards() {
        var tracker = CheckpointTracker(confirmed: LSN(1_000))
        tracker.begin()
        tracker.commit(endLSN: LSN(500))
        #expect(tracker.confirmed == LSN(1_000))
        tracker.caughtUp(to: LSN(700))
        #expect(tracker.confirmed == LSN(1_000))
    }

    @Test func caughtUpAdvancesWhenIdle() {
        var tracker = CheckpointTracker(confirmed: LSN(10))
        tracker.caughtUp(to: LSN(400))
        #expect(tracker.confirmed == LSN(400))
        tracker.caughtUp(to: LSN(300))
        #expect(tracker.confirmed == LSN(400))
    }

    @Test func caughtUpIgnoredWhileATransactionIsOpen() {
        var tracker = CheckpointTracker()
        tracker.begin()
        tracker.caughtUp(to: LSN(400))
        #expect(tracker.confirmed == .zero)
        tracker.commit(endLSN: LSN(100))
        // The keepalive arrived mid-transaction; it must not count afterwards either.
        #expect(tracker.confirmed == LSN(100))
    }

    @Test func caughtUpWhilePendingAppliesOnceDrained() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let token = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        tracker.caughtUp(to: LSN(400))
        #expect(tracker.confirmed == .zero)
        tracker.acknowledge(token)
        #expect(tracker.confirmed == LSN(400))
    }

    @Test func caughtUpWhilePendingWaitsForAnOpenTransactionToo() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let first = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        tracker.caughtUp(to: LSN(150))
        tracker.begin()
        let second = tracker.addMessage()
        tracker.acknowledge(first)
        // The earlier transaction is done; the keepalive position is past it, but a transaction is open.
        #expect(tracker.confirmed == LSN(100))
        tracker.acknowledge(second)
        #expect(tracker.confirmed == LSN(100))
        tracker.commit(endLSN: LSN(300))
        #expect(tracker.confirmed == LSN(300))
    }

    @Test func abandonOpenNeverAdvancesForTheAbandonedTransaction() {
        var tracker = CheckpointTracker(confirmed: LSN(10))
        tracker.begin()
        let token = tracker.addMessage()
        tracker.abandonOpen()
        #expect(tracker.confirmed == LSN(10))
        tracker.acknowledge(token)
        #expect(tracker.confirmed == LSN(10))
        #expect(tracker.outstanding == 0)
        // The stream restarts; the replayed transaction counts normally.
        tracker.begin()
        let again = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        tracker.acknowledge(again)
        #expect(tracker.confirmed == LSN(100))
    }

    @Test func abandonedTransactionStillHoldsBackLaterOnesUntilItsMessagesSettle() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let abandoned = tracker.addMessage()
        tracker.abandonOpen()
        tracker.begin()
        let replayed = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        tracker.acknowledge(replayed)
        #expect(tracker.confirmed == .zero)
        tracker.acknowledge(abandoned)
        #expect(tracker.confirmed == LSN(100))
    }

    @Test func abandonedAfterEarlierCommittedOnesAdvancesOnlyToThem() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let first = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        tracker.begin()
        let second = tracker.addMessage()
        tracker.abandonOpen()
        tracker.acknowledge(second)
        tracker.acknowledge(first)
        #expect(tracker.confirmed == LSN(100))
    }

    @Test func beginWhileOpenAbandonsTheOpenTransaction() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let lost = tracker.addMessage()
        tracker.begin()
        let next = tracker.addMessage()
        tracker.commit(endLSN: LSN(200))
        tracker.acknowledge(next)
        tracker.acknowledge(lost)
        #expect(tracker.confirmed == LSN(200))
        #expect(tracker.outstanding == 0)
    }

    @Test func abandonOrCommitWithNothingOpenIsHarmless() {
        var tracker = CheckpointTracker(confirmed: LSN(5))
        tracker.abandonOpen()
        tracker.commit(endLSN: LSN(100))
        #expect(tracker.confirmed == LSN(5))
        #expect(tracker.outstanding == 0)
    }

    @Test func unknownAndDuplicateTokensAreIgnored() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let first = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        tracker.begin()
        let second = tracker.addMessage()
        _ = tracker.addMessage()
        tracker.commit(endLSN: LSN(200))

        tracker.acknowledge(0)
        tracker.acknowledge(first + 1_000)
        #expect(tracker.outstanding == 3)
        #expect(tracker.confirmed == .zero)

        tracker.acknowledge(first)
        #expect(tracker.confirmed == LSN(100))
        // A token whose transaction is settled and gone.
        tracker.acknowledge(first)
        #expect(tracker.outstanding == 2)

        tracker.acknowledge(second)
        tracker.acknowledge(second)
        #expect(tracker.outstanding == 0)
        #expect(tracker.confirmed == LSN(200))
        // More acks than messages: ignored, the count does not go negative.
        tracker.acknowledge(second)
        #expect(tracker.outstanding == 0)
        #expect(tracker.confirmed == LSN(200))
    }

    /// A corrupt or foreign token must be ignored, not trap (run in a child process so a trap
    /// fails this test only).
    @Test func hugeUnknownTokenIsIgnored() async {
        await #expect(processExitsWith: .success) {
            var tracker = CheckpointTracker()
            tracker.begin()
            _ = tracker.addMessage()
            tracker.commit(endLSN: LSN(100))
            tracker.acknowledge(UInt.max)
            tracker.acknowledge(UInt(Int.max) + 2)
            precondition(tracker.outstanding == 1 && tracker.confirmed == .zero)
        }
    }

    @Test func extraAckOfASettledTransactionDoesNotStealAnotherTransactionsAck() {
        var tracker = CheckpointTracker()
        tracker.begin()
        let first = tracker.addMessage()
        tracker.commit(endLSN: LSN(100))
        tracker.begin()
        let second = tracker.addMessage()
        tracker.commit(endLSN: LSN(200))
        tracker.acknowledge(second)
        tracker.acknowledge(second) // duplicate delivery report
        #expect(tracker.outstanding == 1)
        #expect(tracker.confirmed == .zero)
        tracker.acknowledge(first)
        #expect(tracker.confirmed == LSN(200))
    }

    @Test func outstandingCounts() {
        var tracker = CheckpointTracker()
        tracker.begin()
        var tokens: [UInt] = []
        for _ in 0..<10 { tokens.append(tracker.addMessage()) }
        #expect(Set(tokens).count == 1) // one token per transaction
        #expect(tracker.outstanding == 10)
        tracker.commit(endLSN: LSN(1))
        tracker.begin()
        let other = tracker.addMessage()
        #expect(other != tokens[0])
        #expect(tracker.outstanding == 11)
        for token in tokens.prefix(4) { tracker.acknowledge(token) }
        #expect(tracker.outstanding == 7)
        tracker.acknowledge(other)
        #expect(tracker.outstanding == 6)
    }

    @Test func manyTransactionsAcknowledgedInOrder() {
        var tracker = CheckpointTracker()
        var pending: [(UInt, LSN)] = []
        for index in 1...5_000 {
            tracker.begin()
            let token = tracker.addMessage()
            _ = tracker.addMessage()
            let end = LSN(UInt64(index) * 100)
            tracker.commit(endLSN: end)
            pending.append((token, end))
            // Keep a window of 50 unacknowledged transactions, then settle the oldest.
            if pending.count > 50 {
                let (oldest, oldestEnd) = pending.removeFirst()
                tracker.acknowledge(oldest)
                tracker.acknowledge(oldest)
                #expect(tracker.confirmed == oldestEnd)
            }
        }
        #expect(tracker.outstanding == 100)
        for (token, _) in pending {
            tracker.acknowledge(token)
            tracker.acknowledge(token)
        }
        #expect(tracker.outstanding == 0)
        #expect(tracker.confirmed == LSN(500_000))
    }

    @Test func manyTransactionsAcknowledgedOutOfOrder() {
        var tracker = CheckpointTracker()
        var tokens: [UInt] = []
        for index in 1...5_000 {
            tracker.begin()
            tokens.append(tracker.addMessage())
            tracker.commit(endLSN: LSN(UInt64(index)))
        }
        // Everything but the first, newest first.
        for token in tokens.dropFirst().reversed() { tracker.acknowledge(token) }
        #expect(tracker.confirmed == .zero)
        #expect(tracker.outstanding == 1)
        tracker.acknowledge(tokens[0])
        #expect(tracker.confirmed == LSN(5_000))
        #expect(tracker.outstanding == 0)
    }

    @Test func tokensStayValidAcrossCompaction() {
        var tracker = CheckpointTracker()
        // A slow first transaction holds the head while thousands of later ones settle behind it.
        tracker.begin()
        let stuck = tracker.addMessage()
        tracker.commit(endLSN: LSN(1))
        var tokens: [Int: UInt] = [1: stuck]
        for index in 2...3_000 {
            tracker.begin()
            let token = tracker.addMessage()
            tracker.commit(endLSN: LSN(UInt64(index)))
            tokens[index] = token
            if index != 2_000 && index != 2_900 { tracker.acknowledge(token) }
        }
        #expect(tracker.outstanding == 3)
        #expect(tracker.confirmed == .zero)
        // Settling the first moves ~2,000 transactions at once (the tracker compacts its storage here).
        tracker.acknowledge(stuck)
        #expect(tracker.confirmed == LSN(1_999))
        #expect(tracker.outstanding == 2)
        // Stale tokens from before the compaction change nothing.
        tracker.acknowledge(stuck)
        tracker.acknowledge(tokens[5]!)
        tracker.acknowledge(tokens[1_999]!)
        #expect(tracker.outstanding == 2)
        #expect(tracker.confirmed == LSN(1_999))
        // Tokens handed out before the compaction still name their transactions.
        tracker.acknowledge(tokens[2_900]!)
        #expect(tracker.confirmed == LSN(1_999))
        #expect(tracker.outstanding == 1)
        // And tokens handed out after it.
        tracker.begin()
        let late = tracker.addMessage()
        tracker.commit(endLSN: LSN(3_001))
        tracker.acknowledge(tokens[2_000]!)
        #expect(tracker.confirmed == LSN(3_000))
        tracker.acknowledge(late)
        #expect(tracker.confirmed == LSN(3_001))
        #expect(tracker.outstanding == 0)
        tracker.caughtUp(to: LSN(1_000_000))
        #expect(tracker.confirmed == LSN(1_000_000))
    }
}
