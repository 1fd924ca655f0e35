import Foundation
import KafkaSink
import Ledger
import SluiceCore

/// What `DeliveryStateMachine` asks its owner to do after an event. Most fields are empty after most
/// events; the owner performs each one that is set, in the order they are declared here.
struct DeliveryActions {
    /// Hand these to Kafka, in this order.
    var produce: [OutgoingMessage] = []
    /// Record these as cancelled (too large for Kafka): log, count and keep them in the ledger.
    var cancel: [(outgoing: OutgoingMessage, error: KafkaError)] = []
    /// Checkpoint tokens whose messages are now safe (in Kafka, durably parked, filtered or cancelled).
    /// Settled even when empty after delivery reports: capacity may have been freed.
    var settle: [UInt] = []
    /// Wake the ledger worker now: ledger writes are queued, the producer must be replaced, or a
    /// group's retry time moved.
    var wakeWorker = false
    /// The producer failed (fatal error, or a failure with later messages of a group still in
    /// flight): replace it and purge the old one, whose messages then come back failed and park in order.
    var replaceProducer = false
    /// Load these groups' oldest parked message and try it now (answer with `retryLoaded`).
    var retry: [String] = []
    /// The next time a parked group's backoff ends, if one is waiting (answer with `tick`).
    var wakeAt: Date?
    /// Counter changes for the sink's metrics.
    var counts = DeliveryCounts()
    /// What to tell the operator.
    var notices: [DeliveryNotice] = []
}

/// Changes to a sink's counters, gathered while the state machine runs and recorded by its owner.
struct DeliveryCounts: Equatable {
    var sent = 0
    var reported = 0
    var delivered = 0
    var failedAttempts = 0
    var functionFailures = 0
    var filtered = 0
    var cancelledTooLarge = 0
    var cancelledByUser = 0
    /// Change of the number of parked messages (positive: parked, negative: unparked).
    var parked = 0
    /// Messages in flight after the event (set by events that change it): the gauge and its peak are
    /// recorded from this, not from `sent - reported`, since owners record counts after the lock,
    /// in no fixed order.
    var inFlight: Int?
    /// Seconds from the transaction's commit to Kafka's acknowledgement, per delivered message.
    var commitToAck: [Double] = []

    mutating func merge(_ other: DeliveryCounts) {
        sent += other.sent
        reported += other.reported
        delivered += other.delivered
        failedAttempts += other.failedAttempts
        functionFailures += other.functionFailures
        filtered += other.filtered
        cancelledTooLarge += other.cancelledTooLarge
        cancelledByUser += other.cancelledByUser
        parked += other.parked
        inFlight = other.inFlight ?? inFlight
        commitToAck += other.commitToAck
    }
}

/// A log line the state machine wants written (warnings about its own decisions).
enum DeliveryNotice: Equatable {
    /// Kafka failed a message: it and `messages - 1` behind it were parked.
    case deliveryFailed(table: String, key: String, messages: Int, error: String, category: String)
    /// A stage (`enrichment` or a function) failed a new message: it was parked with its group.
    case stageFailed(stage: FailedStage, table: String, key: String, error: String)
    /// A parked message's stage failed again on a retry.
    case retryFailed(stage: FailedStage, table: String, attempt: Int, error: String)
}

/// Which stage failed a message.
enum FailedStage: String, Equatable {
    case enrichment
    case function = "a function"
}

/// Writes to the ledger that the state machine decided on and the ledger worker performs.
struct LedgerWrites {
    /// Messages to keep as parked (as they were before the sink's functions).
    var parks: [OutgoingMessage] = []
    /// Parked messages that were delivered, cancelled as too large or filtered out on a retry.
    var unparks: [MessagePosition] = []
    /// Failed attempts of messages already parked.
    var attempts: [(position: MessagePosition, deliverCount: Int, error: String)] = []

    var isEmpty: Bool { parks.isEmpty && unparks.isEmpty && attempts.isEmpty }

    /// Puts `earlier` (writes that failed) back in front of these.
    mutating func prepend(_ earlier: LedgerWrites) {
        parks.insert(contentsOf: earlier.parks, at: 0)
        unparks.insert(contentsOf: earlier.unparks, at: 0)
        attempts.insert(contentsOf: earlier.attempts, at: 0)
    }
}

/// What the sink's stages made of a message on its way in (`submit`) or on a retry from the ledger.
enum StageResult {
    /// Deliver this (topic, key and value as the stages left them; `original` set where they changed it).
    case send(OutgoingMessage)
    /// The filter dropped it.
    case drop(OutgoingMessage)
    /// A stage failed: park the message as it was before the stages.
    case failed(OutgoingMessage, stage: FailedStage, error: String)
    /// Known too large for Kafka before it was written (`OutgoingMessage.unwrittenSize`): cancelled at
    /// once, as Kafka would refuse it; it never joins its group, so the group goes on.
    case tooLarge(OutgoingMessage, error: KafkaError)
}

/// Limits of one sink's delivery.
struct DeliveryLimits {
    /// Messages handed to Kafka and not yet acknowledged (`max_ack_pending`).
    var maxAckPending: Int
    /// Bytes of messages held in memory (`max_memory_mb`).
    var maxMemoryBytes: Int
    /// Messages of one group in flight at once (a hot row): enough to fill librdkafka's batches.
    var pipelineDepth: Int

    /// `delivery: exactly_once`: messages go into Kafka transactions, which commit or re-run whole, so
    /// a group's messages may all be in flight at once, to any topic and key.
    var transactional: Bool

    init(maxAckPending: Int, maxMemoryBytes: Int, pipelineDepth: Int? = nil, transactional: Bool = false) {
        self.maxAckPending = maxAckPending
        self.maxMemoryBytes = maxMemoryBytes
        self.pipelineDepth = pipelineDepth ?? min(maxAckPending, 1_000)
        self.transactional = transactional
    }
}

enum Backoff {
    /// The longest wait between two attempts of a parked group.
    static let capSeconds = 180.0

    /// Exponential backoff with jitter: 1 s, 2 s, 4 s … capped at 3 minutes; `jitter` in 0...1 takes
    /// up to a fifth off, so groups that failed together do not retry together.
    static func seconds(attempt: Int, jitter: Double) -> Double {
        let base = min(capSeconds, pow(2.0, Double(max(0, attempt - 1))))
        return base * (1.0 - 0.2 * min(1, max(0, jitter)))
    }
}
