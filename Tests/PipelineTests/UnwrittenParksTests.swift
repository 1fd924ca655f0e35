import Foundation
import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// Parks the state file cannot take (a full disk) stay in memory until written: they count against
/// max_memory_mb, so reading pauses instead of memory growing, and their checkpoint tokens stay unsettled.
@Suite struct UnwrittenParksTests {
    let start = Date(timeIntervalSince1970: 1_000_000)

    func message(_ index: Int, bytes: Int) -> OutgoingMessage {
        OutgoingMessage(position: MessagePosition(commitLSN: LSN(100), commitIndex: index), group: "public.t\u{1F}\(index)",
                        table: "public.t", message: Message(key: Array("\(index)".utf8), value: Array(repeating: 0x78, count: bytes),
                                                            topic: "t", recordPKs: ["\(index)"]),
                        checkpointToken: UInt(index + 1))
    }

    @Test func failingParksHoldCapacityUntilWrittenAndSettleOnlyThen() {
        var machine = DeliveryStateMachine(limits: DeliveryLimits(maxAckPending: 100, maxMemoryBytes: 10_000), jitter: { 0 })
        // Three messages of 4 KB fail in a function: parked, waiting for the ledger.
        for index in 0..<3 {
            let actions = machine.submit(.failed(message(index, bytes: 4_000), stage: .function, error: "boom"), now: start)
            #expect(actions.settle.isEmpty)
        }
        #expect(!machine.hasCapacity, "12 KB of parks not yet written exceed the 10 KB limit")

        // The write fails (disk full): nothing settles, the capacity stays taken.
        let writes = machine.takeLedgerWrites()
        #expect(writes.parks.count == 3)
        machine.ledgerWriteFailed(writes)
        #expect(!machine.hasCapacity)

        // The disk has room again: the retried write settles the three tokens and frees the memory.
        let retried = machine.takeLedgerWrites()
        #expect(retried.parks.map(\.position.commitIndex) == [0, 1, 2])
        #expect(!machine.hasCapacity, "taken by the worker, still in memory until written")
        let written = machine.ledgerWritten(retried)
        #expect(written.settle == [1, 2, 3])
        #expect(machine.hasCapacity)
    }
}

/// The log says a state-file problem at the first failure of each kind of write, then once a minute;
/// `/readyz` shows it until every kind of write works again.
@Suite struct LedgerHealthTests {
    @Test func logsTheFirstFailureThenOnceAMinuteAndRecoversWhenEveryWriteWorks() {
        let health = LedgerHealth(logInterval: 60)
        let t0 = Date(timeIntervalSince1970: 1_000)
        #expect(health.failed(.parks, "disk full", now: t0))
        #expect(!health.failed(.parks, "disk full", now: t0.addingTimeInterval(1)))
        #expect(health.failed(.delivered, "disk full", now: t0.addingTimeInterval(2)), "the first failure of each kind is said")
        #expect(!health.failed(.delivered, "disk full", now: t0.addingTimeInterval(3)))
        #expect(health.failed(.parks, "disk full still", now: t0.addingTimeInterval(61)))
        #expect(health.problem == "disk full still" && health.isFailing(.delivered))

        // A small write fitting does not end it while the parks still fail.
        #expect(health.succeeded(.delivered, now: t0.addingTimeInterval(62)) == nil)
        #expect(health.problem == "disk full still")
        #expect(health.succeeded(.parks, now: t0.addingTimeInterval(70)) == 70)
        #expect(health.problem == nil)
        #expect(health.succeeded(.parks, now: t0.addingTimeInterval(71)) == nil)
        #expect(health.failed(.parks, "again", now: t0.addingTimeInterval(72)), "a new outage is logged at once")
    }
}
