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

        enum CodingKeys: String, CodingKey { case name, topic, counts, messagesPerSecond = "messages_per_second" }
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

    var database: Database
    var slot: Slot
    var sinks: [Sink]
}

extension StatusResponse {
    init(_ status: MessageInspector.Status) {
        self.init(
            database: Database(name: status.databaseName, connected: status.connected),
            slot: Slot(name: status.slotName, confirmedFlushLSN: status.confirmedFlushLSN.description, lagBytes: status.lagBytes),
            sinks: status.sinks.map { sink in
                Sink(name: sink.name, topic: sink.topic,
                     counts: Counts(inFlight: sink.inFlight, waiting: sink.waiting, failing: sink.failing, deliveredTotal: sink.deliveredTotal,
                                    cancelledTotal: sink.cancelledTotal, filteredTotal: sink.filteredTotal),
                     messagesPerSecond: JSONFragment(sink.messagesPerSecond, fractionDigits: 1))
            })
    }
}
