import Foundation
import Ledger
import SluiceCore

/// One vocabulary for the console, the API, `sluice messages` and the README.
public enum MessageState: String, Sendable, CaseIterable {
    /// Handed to Kafka, not acknowledged.
    case inFlight = "in_flight"
    /// In memory behind its group's in-flight message.
    case waiting
    /// A delivery or function attempt failed; parked in the ledger until its next attempt.
    case failing
    /// Acknowledged by Kafka (the last 1,000 per sink).
    case delivered
    /// Too large, or given up by a user.
    case cancelled
}

/// A message as the console and the API show it; fields that do not apply are nil (JSON null).
public struct InspectedMessage: Sendable {
    public var position: MessagePosition
    public var state: MessageState
    public var table: String
    public var action: String?
    public var recordPKs: [String]
    public var key: String?
    public var topic: String
    public var deliverCount: Int
    public var lastError: String?
    public var lastAttemptAt: Date?
    public var nextAttemptAt: Date?
    public var sizeBytes: Int
    public var partition: Int32?
    public var offset: Int64?
    public var reason: String?
    /// Detail only: the message JSON where Sluice still holds it, and the attempts' errors (newest first).
    public var value: [UInt8]?
    public var errors: [(at: Date, error: String)]?

    /// Opaque and stable across restarts: the change's place in the stream.
    public var id: String { Self.id(of: position) }

    public static func id(of position: MessagePosition) -> String { "\(position.commitLSN.rawValue)-\(position.commitIndex)" }

    public static func position(fromID id: String) -> MessagePosition? {
        let parts = id.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let lsn = UInt64(parts[0]), let index = Int(parts[1]), index >= 0 else { return nil }
        return MessagePosition(commitLSN: LSN(lsn), commitIndex: index)
    }

    /// ISO 8601, UTC, milliseconds.
    public static func timestamp(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let microseconds = (milliseconds - 946_684_800_000) * 1000
        let text = PostgresTime.iso8601(microsecondsSince2000: microseconds)  // …:SS.000000Z
        if text.hasSuffix("Z"), let dot = text.lastIndex(of: ".") {
            return String(text[..<dot]) + "." + text[text.index(after: dot)...].prefix(3) + "Z"
        }
        return text
    }
}

// MARK: - From what the dispatcher and the ledger hold

extension InspectedMessage {
    init(live outgoing: OutgoingMessage, state: MessageState, nextAttemptAt: Date?) {
        self.init(position: outgoing.position, state: state, table: outgoing.table, action: outgoing.action.rawValue,
                  recordPKs: outgoing.message.recordPKs, key: outgoing.message.key.map { String(decoding: $0, as: UTF8.self) },
                  topic: outgoing.message.topic, deliverCount: outgoing.deliverCount, lastError: outgoing.lastError,
                  lastAttemptAt: outgoing.sentAt, nextAttemptAt: nextAttemptAt, sizeBytes: outgoing.message.value.count,
                  partition: nil, offset: nil, reason: nil, value: outgoing.message.value)
    }

    init(parked: ParkedMessage, nextAttemptAt: Date?) {
        let summary = MessageSummary(json: parked.value)
        self.init(position: parked.position, state: .failing, table: parked.table, action: summary.action?.rawValue,
                  recordPKs: summary.recordPKs, key: parked.key.map { String(decoding: $0, as: UTF8.self) }, topic: parked.topic,
                  deliverCount: parked.deliverCount, lastError: parked.lastError, lastAttemptAt: parked.lastAttemptAt,
                  nextAttemptAt: nextAttemptAt, sizeBytes: parked.value.count, partition: nil, offset: nil, reason: nil,
                  value: parked.value)
    }

    init(delivered: DeliveredMessage) {
        self.init(position: delivered.position, state: .delivered, table: delivered.table, action: delivered.action,
                  recordPKs: delivered.recordPKs, key: delivered.key, topic: delivered.topic, deliverCount: delivered.deliverCount,
                  lastError: nil, lastAttemptAt: delivered.deliveredAt, nextAttemptAt: nil, sizeBytes: delivered.size,
                  partition: delivered.partition, offset: delivered.offset, reason: nil, value: delivered.value)
    }

    init(cancelled: CancelledMessage) {
        self.init(position: cancelled.position, state: .cancelled, table: cancelled.table, action: cancelled.action,
                  recordPKs: cancelled.recordPKs, key: cancelled.key, topic: cancelled.topic, deliverCount: cancelled.deliverCount,
                  lastError: cancelled.error.isEmpty ? nil : cancelled.error, lastAttemptAt: cancelled.cancelledAt,
                  nextAttemptAt: nil, sizeBytes: cancelled.size, partition: nil, offset: nil, reason: cancelled.reason,
                  value: cancelled.value)
    }
}
