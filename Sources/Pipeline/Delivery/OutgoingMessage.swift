import DequeModule
import Foundation
import Ledger
import SluiceCore

/// One message on its way to Kafka, with what the dispatcher knows about it.
struct OutgoingMessage: Sendable {
    /// What a message is, shared by its copies: queues, flights and reports pass one reference around
    /// instead of retaining every string and buffer. Replaced, never changed, when one of them is set.
    final class Content: Sendable {
        let group: String
        let table: String
        let message: Message
        let original: Message?

        init(group: String, table: String, message: Message, original: Message?) {
            self.group = group
            self.table = table
            self.message = message
            self.original = original
        }
    }

    private var content: Content
    var position: MessagePosition
    var group: String { content.group }
    var table: String { content.table }
    /// The message as it goes to Kafka (after the sink's functions).
    var message: Message {
        get { content.message }
        set { content = Content(group: content.group, table: content.table, message: newValue, original: content.original) }
    }
    /// The message as Sluice encoded it, before the sink's functions, when they changed it: this is
    /// what the ledger keeps, so a retry runs the functions again (fixed ones, after a restart).
    var original: Message? {
        get { content.original }
        set { content = Content(group: content.group, table: content.table, message: content.message, original: newValue) }
    }
    /// The checkpoint token to acknowledge once the message is safe; 0 once it was settled by parking.
    var checkpointToken: UInt
    var deliverCount = 0
    var lastError: String?
    /// The message lives in the ledger and must be removed from it once delivered or cancelled.
    var isParked = false
    var action: Action = .insert
    /// The transaction's commit time (µs since 2000-01-01), for the commit → ack latency; 0 if unknown.
    var commitTime: Int64 = 0
    /// When it was last handed to Kafka.
    var sentAt: Date?
    /// The token of its current attempt, matching the delivery report.
    var deliveryID: UInt = 0

    /// Sets the message and the one from before the functions (or enrichment) at once.
    mutating func replace(message: Message, original: Message?) {
        content = Content(group: content.group, table: content.table, message: message, original: original)
    }

    /// What the ledger keeps of it.
    var beforeFunctions: Message { content.original ?? content.message }

    /// For a message too large for Kafka by its values alone: the bytes it would have at least. Its
    /// value was never written (it would hold a huge row once more) and it is cancelled as it arrives.
    var unwrittenSize: Int?

    /// Its size in bytes, as Kafka would see it (at least, for an unwritten one).
    var size: Int { unwrittenSize ?? message.value.count }

    /// Bytes held in memory for it: also the copy before functions when a transform made a new value
    /// (filters and routing share the encoded bytes). Set once, at submit.
    var memoryCost = 0

    init(position: MessagePosition, group: String, table: String, message: Message, original: Message? = nil,
         checkpointToken: UInt, deliverCount: Int = 0, lastError: String? = nil, isParked: Bool = false,
         action: Action = .insert, commitTime: Int64 = 0) {
        content = Content(group: group, table: table, message: message, original: original)
        self.position = position
        self.checkpointToken = checkpointToken
        self.deliverCount = deliverCount
        self.lastError = lastError
        self.isParked = isParked
        self.action = action
        self.commitTime = commitTime
    }
}

/// A delivered message as the dispatcher remembers it, with where Kafka put it.
struct RecentDelivery: Sendable {
    var outgoing: OutgoingMessage
    var topic: String
    var partition: Int32
    var offset: Int64
    var size: Int
    var deliveredAt: Date
    /// Bodies larger than the console shows: let go of once the message is no longer recent.
    let valueTooLarge: Bool
    let originalTooLarge: Bool
    var hasLargeBodies: Bool { valueTooLarge || originalTooLarge }

    /// Values of delivered messages up to this size stay in memory for the console.
    static let valueKeptBytes = 64 * 1024

    init(outgoing: OutgoingMessage, topic: String, partition: Int32, offset: Int64, size: Int, deliveredAt: Date) {
        self.outgoing = outgoing
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.size = size
        self.deliveredAt = deliveredAt
        valueTooLarge = outgoing.message.value.count > RecentDelivery.valueKeptBytes
        originalTooLarge = (outgoing.original?.value.count ?? 0) > RecentDelivery.valueKeptBytes
    }

    var position: MessagePosition { outgoing.position }

    /// Lets go of bodies larger than the console shows, once the message is no longer among the few
    /// whose bodies `sluice fn test --recent` needs (each entry passes that point once).
    mutating func dropLargeBodies() {
        if valueTooLarge { outgoing.message.value = [] }
        if originalTooLarge { outgoing.original = nil }
    }

    func delivered(sink: String) -> DeliveredMessage {
        let value = outgoing.message.value
        return DeliveredMessage(
            sink: sink, group: outgoing.group, position: outgoing.position, table: outgoing.table, topic: topic,
            key: outgoing.message.key.map { String(decoding: $0, as: UTF8.self) }, size: size, partition: partition,
            offset: offset, deliverCount: outgoing.deliverCount, deliveredAt: deliveredAt, action: outgoing.action.rawValue,
            recordPKs: outgoing.message.recordPKs, value: valueTooLarge ? nil : value)
    }
}

/// A group's messages in flight, oldest first. Most groups have one message in flight at a time (a row
/// changed once), so the first is kept inline and only a pipelined hot row's further messages take a
/// Deque's storage: a new group costs no allocation of its own.
struct FlightQueue: RandomAccessCollection {
    /// nil only when the queue is empty.
    private var head: OutgoingMessage?
    private var rest = Deque<OutgoingMessage>()

    var startIndex: Int { 0 }
    var endIndex: Int { head == nil ? 0 : 1 + rest.count }

    subscript(position: Int) -> OutgoingMessage {
        precondition(position >= 0 && position < endIndex, "FlightQueue index out of range")
        return position == 0 ? head.unsafelyUnwrapped : rest[position - 1]
    }

    mutating func append(_ outgoing: OutgoingMessage) {
        if head == nil { head = outgoing } else { rest.append(outgoing) }
    }

    @discardableResult
    mutating func remove(at position: Int) -> OutgoingMessage {
        precondition(position >= 0 && position < endIndex, "FlightQueue index out of range")
        guard position == 0 else { return rest.remove(at: position - 1) }
        let first = head.unsafelyUnwrapped
        head = rest.popFirst()
        return first
    }
}
