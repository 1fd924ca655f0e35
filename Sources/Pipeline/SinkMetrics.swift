import Metrics
import Synchronization

/// Counters of one sink: kept as atomics (for the totals logged at shutdown and for tests) and
/// reported through swift-metrics (Prometheus `/metrics` on the console).
final class SinkMetrics: Sendable {
    private let deliveredCount = Atomic<Int>(0)
    private let inFlightCount = Atomic<Int>(0)
    private let inFlightPeak = Atomic<Int>(0)
    private let parkedCount = Atomic<Int>(0)
    private let failedAttempts = Atomic<Int>(0)
    private let cancelledTooLarge = Atomic<Int>(0)
    private let filteredCount = Atomic<Int>(0)
    private let cancelledByUserCount = Atomic<Int>(0)
    private let functionFailures = Atomic<Int>(0)

    private let deliveredCounter: Counter
    private let failedCounter: Counter
    private let cancelledCounter: Counter
    private let filteredCounter: Counter
    private let functionFailureCounter: Counter
    private let cancelledByUserCounter: Counter
    private let commitToAck: Metrics.Timer
    private let inFlightGauge: Gauge
    private let parkedGauge: Gauge

    init(sink: String) {
        let dimensions = [("sink", sink)]
        deliveredCounter = Counter(label: "sluice_messages_delivered_total", dimensions: dimensions)
        failedCounter = Counter(label: "sluice_delivery_failures_total", dimensions: dimensions)
        cancelledCounter = Counter(label: "sluice_messages_cancelled_total", dimensions: dimensions + [("reason", "too_large")])
        cancelledByUserCounter = Counter(label: "sluice_messages_cancelled_total", dimensions: dimensions + [("reason", "user")])
        commitToAck = Metrics.Timer(label: "sluice_commit_to_ack_seconds", dimensions: dimensions)
        filteredCounter = Counter(label: "sluice_messages_filtered_total", dimensions: dimensions)
        functionFailureCounter = Counter(label: "sluice_function_failures_total", dimensions: dimensions)
        inFlightGauge = Gauge(label: "sluice_messages_in_flight", dimensions: dimensions)
        parkedGauge = Gauge(label: "sluice_messages_parked", dimensions: dimensions)
        inFlightGauge.record(0)
        parkedGauge.record(0)
    }

    func delivered() {
        deliveredCount.add(1, ordering: .relaxed)
        deliveredCounter.increment()
    }

    func sent() {
        let now = inFlightCount.add(1, ordering: .relaxed).newValue
        inFlightPeak.max(now, ordering: .relaxed)
        inFlightGauge.record(now)
    }

    func reported() {
        inFlightGauge.record(inFlightCount.subtract(1, ordering: .relaxed).newValue)
    }

    func failedAttempt() {
        failedAttempts.add(1, ordering: .relaxed)
        failedCounter.increment()
    }

    /// A filter function dropped a change.
    func filtered() {
        filteredCount.add(1, ordering: .relaxed)
        filteredCounter.increment()
    }

    /// A function raised, ran out of budget or returned the wrong type.
    func functionFailed() {
        functionFailures.add(1, ordering: .relaxed)
        functionFailureCounter.increment()
    }

    /// PostgreSQL commit → Kafka acknowledgement.
    func committedToAcked(seconds: Double) {
        commitToAck.recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }

    func cancelledByUser() {
        cancelledByUserCount.add(1, ordering: .relaxed)
        cancelledByUserCounter.increment()
    }

    var deliveredTotal: Int { deliveredCount.load(ordering: .relaxed) }
    var filteredTotal: Int { filteredCount.load(ordering: .relaxed) }

    func cancelled() {
        cancelledTooLarge.add(1, ordering: .relaxed)
        cancelledCounter.increment()
    }

    /// Parked messages went up (or down, with a negative change), or were counted anew.
    func parked(change: Int) { parkedGauge.record(parkedCount.add(change, ordering: .relaxed).newValue) }

    func parked(total: Int) {
        parkedCount.store(total, ordering: .relaxed)
        parkedGauge.record(total)
    }

    var summary: [String: Int] {
        ["delivered": deliveredCount.load(ordering: .relaxed), "in_flight": inFlightCount.load(ordering: .relaxed),
         "in_flight_peak": inFlightPeak.load(ordering: .relaxed), "parked": parkedCount.load(ordering: .relaxed),
         "failed_attempts": failedAttempts.load(ordering: .relaxed),
         "cancelled_too_large": cancelledTooLarge.load(ordering: .relaxed),
         "filtered": filteredCount.load(ordering: .relaxed), "function_failures": functionFailures.load(ordering: .relaxed)]
    }
}
