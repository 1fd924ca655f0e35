import Synchronization

/// Counters of one sink, readable from any thread (logs now; the console and /metrics later).
final class SinkMetrics: Sendable {
    let delivered = Atomic<Int>(0)
    let inFlight = Atomic<Int>(0)
    /// The most messages ever in flight at once (bounded by max_ack_pending).
    let inFlightPeak = Atomic<Int>(0)
    let parked = Atomic<Int>(0)
    let failedAttempts = Atomic<Int>(0)
    let cancelledTooLarge = Atomic<Int>(0)

    var summary: [String: Int] {
        ["delivered": delivered.load(ordering: .relaxed), "in_flight": inFlight.load(ordering: .relaxed),
         "in_flight_peak": inFlightPeak.load(ordering: .relaxed),
         "parked": parked.load(ordering: .relaxed), "failed_attempts": failedAttempts.load(ordering: .relaxed),
         "cancelled_too_large": cancelledTooLarge.load(ordering: .relaxed)]
    }
}
