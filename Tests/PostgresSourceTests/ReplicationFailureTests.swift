@testable import PostgresSource
import SluiceCore
import Testing

/// PostgreSQL's refusals (as a PostgreSQL 15 server words them) map to one-line failures that stop
/// sluice; anything else is left to reconnecting.
@Suite struct ReplicationFailureTests {
    func classify(_ message: String, _ state: String?) -> ReplicationFailure? {
        ReplicationFailure.classify(PostgresError(.replication, message, sqlState: state), slot: "sluice", publication: "orders",
                                    confirmed: LSN(0x1949D90))
    }

    @Test func aMissingSlot() throws {
        let failure = try #require(classify(#"START_REPLICATION failed: ERROR:  replication slot "sluice" does not exist"#, "42704"))
        #expect(failure.kind == .slotMissing)
        #expect(failure.message.hasPrefix(#"replication slot "sluice" does not exist (dropped while sluice streamed?) — the changes after 0/1949D90"#))
        #expect(!failure.message.contains("\n"))
    }

    @Test func anInvalidatedSlot() throws {
        let failure = try #require(classify("""
            START_REPLICATION failed: ERROR:  cannot read from logical replication slot "sluice"
            DETAIL:  This slot has been invalidated because it exceeded the maximum reserved size.
            """, "55000"))
        #expect(failure.kind == .slotInvalidated)
        #expect(failure.message.contains("drop the slot (SELECT pg_drop_replication_slot('sluice'))"))
        #expect(classify("the server ended the replication stream: ERROR:  requested WAL segment 000000010000000000000003 has already been removed",
                         "58P01")?.kind == .slotInvalidated)
    }

    @Test func aDroppedPublicationDuringDecoding() throws {
        let failure = try #require(classify("""
            the server ended the replication stream: ERROR:  publication "orders" does not exist
            CONTEXT:  slot "sluice", output plugin "pgoutput", in the change callback, associated LSN 0/194A1D0
            """, "42704"))
        #expect(failure.kind == .publicationMissing)
        #expect(failure.message.hasPrefix(#"publication "orders" was dropped — slot "sluice" cannot decode changes made after that"#))
    }

    @Test func passingTroublesAreLeftToReconnecting() {
        #expect(classify("the server ended the replication stream: FATAL:  terminating connection due to administrator command", "57P01") == nil)
        #expect(classify(#"START_REPLICATION failed: ERROR:  replication slot "sluice" is active for PID 4242"#, "55006") == nil)
        #expect(classify("replication connection lost: server closed the connection unexpectedly", nil) == nil)
        // Another slot's or publication's name is not ours.
        #expect(classify(#"START_REPLICATION failed: ERROR:  replication slot "other" does not exist"#, "42704") == nil)
    }
}
