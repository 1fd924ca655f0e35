import Foundation
import SluiceCore

/// Where a message is in the change stream: unique per change and sink.
public struct MessagePosition: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var commitLSN: LSN
    public var commitIndex: Int

    public init(commitLSN: LSN, commitIndex: Int) {
        self.commitLSN = commitLSN
        self.commitIndex = commitIndex
    }

    public static func < (lhs: MessagePosition, rhs: MessagePosition) -> Bool {
        (lhs.commitLSN, lhs.commitIndex) < (rhs.commitLSN, rhs.commitIndex)
    }

    public var description: String { "\(commitLSN)#\(commitIndex)" }
}

/// A message held in the ledger because its group could not be delivered: the whole message,
/// so it can be sent from here after the slot moved past it.
public struct ParkedMessage: Sendable, Equatable {
    public var sink: String
    public var group: String
    public var position: MessagePosition
    public var table: String
    public var topic: String
    public var key: [UInt8]?
    public var value: [UInt8]
    public var deliverCount: Int
    public var lastError: String?
    public var parkedAt: Date
    public var lastAttemptAt: Date?

    public init(sink: String, group: String, position: MessagePosition, table: String, topic: String, key: [UInt8]?,
                value: [UInt8], deliverCount: Int = 0, lastError: String? = nil, parkedAt: Date = Date(),
                lastAttemptAt: Date? = nil) {
        self.sink = sink
        self.group = group
        self.position = position
        self.table = table
        self.topic = topic
        self.key = key
        self.value = value
        self.deliverCount = deliverCount
        self.lastError = lastError
        self.parkedAt = parkedAt
        self.lastAttemptAt = lastAttemptAt ?? (deliverCount > 0 ? parkedAt : nil)
    }
}

/// A message Kafka acknowledged (the ledger keeps the last 1,000 per sink).
public struct DeliveredMessage: Sendable, Equatable {
    public var sink: String
    public var group: String
    public var position: MessagePosition
    public var table: String
    public var topic: String
    public var key: String?
    public var size: Int
    public var partition: Int32
    public var offset: Int64
    public var deliverCount: Int
    public var deliveredAt: Date
    public var action: String?
    public var recordPKs: [String]
    /// The value as sent, while the running instance still holds it (never stored).
    public var value: [UInt8]?

    public init(sink: String, group: String, position: MessagePosition, table: String, topic: String, key: String?,
                size: Int, partition: Int32, offset: Int64, deliverCount: Int, deliveredAt: Date = Date(),
                action: String? = nil, recordPKs: [String] = [], value: [UInt8]? = nil) {
        self.sink = sink
        self.group = group
        self.position = position
        self.table = table
        self.topic = topic
        self.key = key
        self.size = size
        self.partition = partition
        self.offset = offset
        self.deliverCount = deliverCount
        self.deliveredAt = deliveredAt
        self.action = action
        self.recordPKs = recordPKs
        self.value = value
    }
}

/// A message that will never be sent, and why (too large for the broker, or cancelled by a user).
public struct CancelledMessage: Sendable, Equatable {
    public var sink: String
    public var group: String
    public var position: MessagePosition
    public var table: String
    public var topic: String
    public var key: String?
    public var size: Int
    public var reason: String
    public var error: String
    public var cancelledAt: Date
    public var action: String?
    public var recordPKs: [String]
    public var deliverCount: Int
    /// The message (as Sluice held it) for user cancels; too-large ones are not kept whole.
    public var value: [UInt8]?

    public init(sink: String, group: String, position: MessagePosition, table: String, topic: String, key: String?,
                size: Int, reason: String, error: String, cancelledAt: Date = Date(), action: String? = nil,
                recordPKs: [String] = [], deliverCount: Int = 1, value: [UInt8]? = nil) {
        self.sink = sink
        self.group = group
        self.position = position
        self.table = table
        self.topic = topic
        self.key = key
        self.size = size
        self.reason = reason
        self.error = error
        self.cancelledAt = cancelledAt
        self.action = action
        self.recordPKs = recordPKs
        self.deliverCount = deliverCount
        self.value = value
    }
}

extension CancelledMessage {
    /// A parked message given up (by a user): the whole message kept, with its last error.
    init(cancelling parked: ParkedMessage, reason: String, action: String?, recordPKs: [String]) {
        self.init(sink: parked.sink, group: parked.group, position: parked.position, table: parked.table, topic: parked.topic,
                  key: parked.key.map { String(decoding: $0, as: UTF8.self) }, size: parked.value.count, reason: reason,
                  error: parked.lastError ?? "", action: action, recordPKs: recordPKs, deliverCount: parked.deliverCount,
                  value: parked.value)
    }
}
