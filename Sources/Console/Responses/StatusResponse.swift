import Foundation
import Hummingbird
import Pipeline

/// `GET /api/status`: the database, the slot, and each sink's counts and rate.
struct StatusResponse: ResponseEncodable, Sendable {
    struct Database: Encodable, Sendable {
        var name: String
        var connected: Bool
    }

    struct Slot: Encodable, Sendable {
        var name: String
        /// As PostgreSQL writes an LSN: "0/16B3748".
        var confirmedFlushLSN: String
        var lagBytes: UInt64

        enum CodingKeys: String, CodingKey { case name, confirmedFlushLSN = "confirmed_flush_lsn", lagBytes = "lag_bytes" }
    }

    struct Sink: Encodable, Sendable {
        var name: String
        var topic: String
        var counts: Counts
        /// One digit after the point ("12.3", "3.0").
        var messagesPerSecond: JSONFragment
        var delivery: String
        /// Exactly-once sinks only.
        var transactions: Transactions?

        /// (`transactions` is left out for at-least-once sinks: the synthesized encoding skips a nil.)
        enum CodingKeys: String, CodingKey {
            case name, topic, counts, messagesPerSecond = "messages_per_second", delivery, transactions
        }
    }

    /// An exactly-once sink's Kafka transactions.
    struct Transactions: Encodable, Sendable {
        var transactionalID: String
        var offsetsTopic: String
        /// The newest stream position committed: `{"commit_lsn": "0/16B3748", "commit_idx": 3}`, or null.
        @NullEncodable var committed: Position?
        var state: String
        @NullEncodable var lastError: String?

        struct Position: Encodable, Sendable {
            var commitLSN: String
            var commitIndex: Int
            enum CodingKeys: String, CodingKey { case commitLSN = "commit_lsn", commitIndex = "commit_idx" }
        }

        enum CodingKeys: String, CodingKey {
            case transactionalID = "transactional_id", offsetsTopic = "offsets_topic", committed, state, lastError = "last_error"
        }
    }

    struct Counts: Encodable, Sendable {
        var inFlight: Int
        var waiting: Int
        var failing: Int
        var deliveredTotal: Int
        var cancelledTotal: Int
        var filteredTotal: Int

        enum CodingKeys: String, CodingKey {
            case inFlight = "in_flight", waiting, failing, deliveredTotal = "delivered_total", cancelledTotal = "cancelled_total"
            case filteredTotal = "filtered_total"
        }
    }

    /// This instance among the instances of its slot.
    struct Leader: Encodable, Sendable {
        var instance: String
        var term: Int64
        /// When the leader's lease runs out unless renewed (ISO 8601, the database's clock); null without HA.
        @NullEncodable var leaseExpiresAt: String?

        enum CodingKeys: String, CodingKey { case instance, term, leaseExpiresAt = "lease_expires_at" }
    }

    var role: String
    var instance: String
    /// The slot's leader (this instance when it leads); null while no instance holds the slot.
    @NullEncodable var leader: Leader?
    /// Null on a standby: it does not stream.
    @NullEncodable var database: Database?
    @NullEncodable var slot: Slot?
    var sinks: [Sink]
}

extension StatusResponse {
    /// A standby's answer: who leads, and nothing of a stream it does not run.
    init(standby ha: HAStatus.Snapshot) {
        self.init(role: ha.role.rawValue, instance: ha.instance, leader: Self.leader(ha), database: nil, slot: nil, sinks: [])
    }

    static func leader(_ ha: HAStatus.Snapshot) -> Leader? {
        if let holder = ha.leader {
            return Leader(instance: holder.instance, term: holder.term, leaseExpiresAt: InspectedMessage.timestamp(holder.expiresAt))
        }
        return ha.electing ? nil : Leader(instance: ha.instance, term: 0, leaseExpiresAt: nil)
    }

    init(_ status: MessageInspector.Status, ha: HAStatus.Snapshot) {
        self.init(
            role: ha.role.rawValue, instance: ha.instance, leader: Self.leader(ha),
            database: Database(name: status.databaseName, connected: status.connected),
            slot: Slot(name: status.slotName, confirmedFlushLSN: status.confirmedFlushLSN.description, lagBytes: status.lagBytes),
            sinks: status.sinks.map { sink in
                Sink(name: sink.name, topic: sink.topic,
                     counts: Counts(inFlight: sink.inFlight, waiting: sink.waiting, failing: sink.failing, deliveredTotal: sink.deliveredTotal,
                                    cancelledTotal: sink.cancelledTotal, filteredTotal: sink.filteredTotal),
                     messagesPerSecond: JSONFragment(sink.messagesPerSecond, fractionDigits: 1), delivery: sink.delivery,
                     transactions: sink.transactions.map { transactions in
                         Transactions(transactionalID: transactions.transactionalID, offsetsTopic: transactions.offsetsTopic,
                                      committed: transactions.committedPosition.map {
                                          Transactions.Position(commitLSN: $0.commitLSN.description, commitIndex: $0.commitIndex)
                                      },
                                      state: transactions.state, lastError: transactions.lastError)
                     })
            })
    }
}
