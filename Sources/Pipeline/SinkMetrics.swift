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

    /// Adds what one event of the delivery state machine changed.
    func record(_ counts: DeliveryCounts) {
        if counts.delivered > 0 {
            deliveredCount.add(counts.delivered, ordering: .relaxed)
            deliveredCounter.increment(by: Int64(counts.delivered))
        }
        if let inFlight = counts.inFlight {
            inFlightCount.store(inFlight, ordering: .relaxed)
            inFlightPeak.max(inFlight, ordering: .relaxed)
            inFlightGauge.record(inFlight)
        }
        add(counts.failedAttempts, to: failedAttempts, failedCounter)
        add(counts.filtered, to: filteredCount, filteredCounter)
        add(counts.functionFailures, to: functionFailures, functionFailureCounter)
        add(counts.cancelledByUser, to: cancelledByUserCount, cancelledByUserCounter)
        add(counts.cancelledTooLarge, to: cancelledTooLarge, cancelledCounter)
        if counts.parked != 0 { parkedGauge.record(parkedCount.add(counts.parked, ordering: .relaxed).newValue) }
        // PostgreSQL commit → Kafka acknowledgement.
        for seconds in counts.commitToAck { commitToAck.recordNanoseconds(Int64(max(0, seconds) * 1e9)) }
    }

    private func add(_ count: Int, to total: borrowing Atomic<Int>, _ counter: Counter) {
        guard count > 0 else { return }
        total.add(count, ordering: .relaxed)
        counter.increment(by: Int64(count))
    }

    var deliveredTotal: Int { deliveredCount.load(ordering: .relaxed) }
    var filteredTotal: Int { filteredCount.load(ordering: .relaxed) }

    /// Parked messages counted anew (at start, from the ledger).
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
