import SluiceCore
import Synchronization

/// The group a sink's message belongs to: table plus primary key, or the configured group columns.
/// A group's messages reach Kafka in commit order; groups are independent of each other.
final class MessageGrouping: Sendable {
    private let sink: SinkConfig
    private let ungroupedCounter = Atomic<UInt64>(0)

    init(sink: SinkConfig) {
        self.sink = sink
    }

    /// Ungrouped messages (grouping off, or a table without a key) each get a group of their own.
    func groupKey(for change: Change, message: Message) -> String {
        if sink.messageGrouping {
            if !sink.groupColumns.isEmpty,
               let columns = sink.groupColumns[TableName(schema: change.relation.schema, name: change.relation.name)] {
                let row = (change.action == .delete ? change.old : change.new) ?? change.old
                let values = columns.map { name in
                    change.relation.columns.firstIndex { $0.name == name }.flatMap { row?.text(at: $0) } ?? ""
                }
                return change.relation.qualifiedName + "\u{1F}" + values.joined(separator: "\u{1F}")
            }
            if !message.recordPKs.isEmpty {
                var key = change.relation.qualifiedName
                key.reserveCapacity(message.recordPKs.reduce(key.utf8.count) { $0 + 1 + $1.utf8.count })
                for pk in message.recordPKs {
                    key.append("\u{1F}")
                    key.append(pk)
                }
                return key
            }
        }
        return "\u{0}\(ungroupedCounter.add(1, ordering: .relaxed).newValue)"
    }
}
