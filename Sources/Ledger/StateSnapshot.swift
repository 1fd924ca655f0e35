import Foundation
import SluiceCore

/// All of a store's state at one moment, as `sluice state copy` moves it from one store to another:
/// every row with its position and timestamps, in an order both stores give alike (so two snapshots of
/// the same state are equal).
public struct StateSnapshot: Sendable, Equatable {
    /// One failed attempt of a message (of a parked one, or of one delivered or cancelled since).
    public struct AttemptError: Sendable, Equatable {
        public var sink: String
        public var position: MessagePosition
        public var at: Date
        public var error: String

        public init(sink: String, position: MessagePosition, at: Date, error: String) {
            self.sink = sink
            self.position = position
            self.at = at
            self.error = error
        }
    }

    /// A sink that has run (its `initial_backfill` does not run again).
    public struct SeenSink: Sendable, Equatable {
        public var sink: String
        public var firstSeenAt: Date

        public init(sink: String, firstSeenAt: Date) {
            self.sink = sink
            self.firstSeenAt = firstSeenAt
        }
    }

    /// Parked messages, by sink and then stream order.
    public var parked: [ParkedMessage]
    /// Attempt errors, by sink and position, oldest first per message.
    public var attemptErrors: [AttemptError]
    /// Delivered messages, oldest first (the order they were recorded in).
    public var delivered: [DeliveredMessage]
    /// Cancelled messages, oldest first.
    public var cancelled: [CancelledMessage]
    /// Kept bodies per sink, oldest first.
    public var recentBodies: [String: [[UInt8]]]
    /// Backfills, by id.
    public var backfills: [BackfillRecord]
    /// Seen sinks, by name.
    public var seenSinks: [SeenSink]

    public init(parked: [ParkedMessage] = [], attemptErrors: [AttemptError] = [], delivered: [DeliveredMessage] = [],
                cancelled: [CancelledMessage] = [], recentBodies: [String: [[UInt8]]] = [:], backfills: [BackfillRecord] = [],
                seenSinks: [SeenSink] = []) {
        self.parked = parked
        self.attemptErrors = attemptErrors
        self.delivered = delivered
        self.cancelled = cancelled
        self.recentBodies = recentBodies
        self.backfills = backfills
        self.seenSinks = seenSinks
    }

    /// The same state in the canonical order (stores read rows in their own order; the ones with an
    /// insertion order — delivered, cancelled, errors of one message, bodies — keep it).
    func sorted() -> StateSnapshot {
        var snapshot = self
        snapshot.parked.sort { ($0.sink, $0.position) < ($1.sink, $1.position) }
        // A stable sort: errors of one message stay oldest first.
        snapshot.attemptErrors = attemptErrors.enumerated()
            .sorted { ($0.element.sink, $0.element.position, $0.offset) < ($1.element.sink, $1.element.position, $1.offset) }
            .map(\.element)
        snapshot.backfills.sort { $0.id < $1.id }
        snapshot.seenSinks.sort { $0.sink < $1.sink }
        return snapshot
    }

    /// How many rows it holds, for messages (`sluice state copy`).
    public var summary: String {
        "\(parked.count) parked, \(attemptErrors.count) attempt errors, \(delivered.count) delivered, "
            + "\(cancelled.count) cancelled, \(recentBodies.values.map(\.count).reduce(0, +)) recent bodies, "
            + "\(backfills.count) backfills, \(seenSinks.count) seen sinks"
    }
}
