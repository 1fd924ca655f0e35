import Foundation

/// A change as it leaves Sluice: Kafka key and the JSON value in Sequin's message shape.
public struct Message: Sendable {
    /// Primary-key values joined with `:`; nil when the table has no key.
    public var key: [UInt8]?
    public var value: [UInt8]
    public var topic: String
    /// The primary-key values as text, in column order.
    public var recordPKs: [String]
    /// Where the message's parts are in `value`, when Sluice encoded it; nil for a value from
    /// elsewhere (the ledger, a file) or one a transform made.
    public var layout: MessageLayout?

    public init(key: [UInt8]?, value: [UInt8], topic: String, recordPKs: [String], layout: MessageLayout? = nil) {
        self.key = key
        self.value = value
        self.topic = topic
        self.recordPKs = recordPKs
        self.layout = layout
    }
}

/// The byte ranges of a Sequin-shaped message's parts, as the encoder wrote them, so that functions
/// can reach `record`, `changes` and `metadata` without scanning the JSON. The ranges cover each
/// object from its `{` to its `}`; `metadata` ends one byte before the value does (its last `}`
/// closes the message), also after enrichment replaced the final `null`.
public struct MessageLayout: Sendable, Equatable {
    public var record: Range<Int32>
    public var recordFields: Int32
    /// nil when `changes` is null.
    public var changes: Range<Int32>?
    public var changesFields: Int32
    public var action: Action
    public var metadataStart: Int32

    public init(record: Range<Int32>, recordFields: Int32, changes: Range<Int32>?, changesFields: Int32, action: Action,
                metadataStart: Int32) {
        self.record = record
        self.recordFields = recordFields
        self.changes = changes
        self.changesFields = changesFields
        self.action = action
        self.metadataStart = metadataStart
    }

    /// The range of `metadata` in a value of `count` bytes.
    public func metadata(in count: Int) -> Range<Int> { Int(metadataStart)..<(count - 1) }
}

/// The `metadata.consumer` block: which sink produced a message.
public struct ConsumerIdentity: Sendable, Hashable {
    public var id: String
    public var name: String
    /// The sink's `annotations`, as JSON text.
    public var annotations: String

    /// The id is derived from the name, so it stays the same across restarts and machines.
    public init(name: String, annotations: String = "{}") {
        self.name = name
        self.id = StableUUID.make(from: "sluice-sink:" + name)
        self.annotations = annotations
    }
}

/// The `metadata.database` block: `{"id","name","annotations","database","hostname"}`.
public struct DatabaseIdentity: Sendable, Hashable {
    public var id: String
    public var name: String
    public var annotations: String
    public var database: String
    public var hostname: String

    /// `name` defaults to the database's own name; the id is derived from the name, like a consumer's.
    public init(name: String?, annotations: String = "{}", database: String, hostname: String) {
        self.name = name ?? database
        self.id = StableUUID.make(from: "sluice-database:" + self.name)
        self.annotations = annotations
        self.database = database
        self.hostname = hostname
    }
}

/// Writes changes as Sequin-shaped JSON:
/// `{"record":…,"changes":…,"action":…,"metadata":{…}}`.
public struct MessageEncoder: Sendable {
    public var consumer: ConsumerIdentity
    public var database: DatabaseIdentity
    public var valueFormat: ValueFormat
    /// Every change of a transaction has the same commit time: format it once.
    private let timestamps = CommitTimestampCache()
    /// The message's closing bytes: the consumer and database blocks and `"enrichment":null`, the same
    /// for every message of the sink, so written once. Enrichment replaces the final `null`.
    private let tail: [UInt8]

    public init(consumer: ConsumerIdentity, database: DatabaseIdentity, valueFormat: ValueFormat = .sluice) {
        self.consumer = consumer
        self.database = database
        self.valueFormat = valueFormat
        var json = JSONWriter(capacity: 256)
        json.raw(",\"consumer\":{\"id\":")
        json.string(consumer.id)
        json.raw(",\"name\":")
        json.string(consumer.name)
        json.raw(",\"annotations\":")
        json.raw(consumer.annotations.utf8)
        json.raw("},\"database\":{\"id\":")
        json.string(database.id)
        json.raw(",\"name\":")
        json.string(database.name)
        json.raw(",\"annotations\":")
        json.raw(database.annotations.utf8)
        json.raw(",\"database\":")
        json.string(database.database)
        json.raw(",\"hostname\":")
        json.string(database.hostname)
        json.raw("},\"enrichment\":null}}")
        tail = json.bytes
    }

    /// The bytes a message ends with when it has no enrichment: `null}}`.
    public static let enrichmentPlaceholder: [UInt8] = Array("null}}".utf8)

    /// The message value with `metadata.enrichment` set to `json` (which must be valid JSON).
    public static func enriched(_ value: [UInt8], with json: [UInt8]) -> [UInt8] {
        guard value.count >= enrichmentPlaceholder.count,
              value.suffix(enrichmentPlaceholder.count).elementsEqual(enrichmentPlaceholder) else { return value }
        var result = value
        result.removeLast(enrichmentPlaceholder.count)
        result.append(contentsOf: json)
        result.append(contentsOf: "}}".utf8)
        return result
    }

    @inline(__always) private func kind(_ column: Column) -> ValueKind {
        valueFormat == .sluice ? column.kind : column.sequinKind
    }

    public func encode(_ change: Change, topic: String) -> Message {
        let relation = change.relation
        let columns = relation.columns
        // The row to show: the new one, or for deletes the old one.
        let row: Tuple = (change.action == .delete ? change.old : change.new) ?? Tuple(bytes: [], cells: [])
        let oldRow = change.old
        let keyIndexes = relation.keyColumnIndexes

        var recordPKs: [String] = []
        recordPKs.reserveCapacity(keyIndexes.count)
        for index in keyIndexes where change.action != .truncate {
            recordPKs.append(row.text(at: index) ?? oldRow?.text(at: index) ?? "")
        }

        var json = JSONWriter(capacity: 256 + row.bytes.count * 2)
        var unchangedToast: [String] = []

        // record
        json.raw("{\"record\":")
        let recordStart = json.bytes.count
        json.raw(UInt8(ascii: "{"))
        var recordFields: Int32 = 0
        var first = true
        for index in columns.indices where index < row.cells.count {
            // A delete under REPLICA IDENTITY DEFAULT carries only the key columns.
            if change.action == .delete, relation.replicaIdentity != .full,
               !columns[index].isReplicaIdentity, case .null = row.cells[index] {
                continue
            }
            var source = row
            if case .unchangedToast = row.cells[index] {
                // Fill an unchanged TOAST value from the old row when the server sent it (FULL);
                // otherwise leave the column out and say so, never send a placeholder as data.
                if let oldRow, index < oldRow.cells.count, case .text = oldRow.cells[index] {
                    source = oldRow
                } else {
                    unchangedToast.append(columns[index].name)
                    continue
                }
            }
            if !first { json.raw(UInt8(ascii: ",")) }
            first = false
            recordFields += 1
            json.key(columns[index].name)
            ValueConverter.write(source.cells[index], of: source, kind: kind(columns[index]), to: &json)
        }
        json.raw(UInt8(ascii: "}"))
        let recordEnd = json.bytes.count

        // changes: the old values of the columns an update changed.
        json.raw(",\"changes\":")
        var changesRange: Range<Int32>?
        var changesFields: Int32 = 0
        if change.action == .update {
            let changesStart = json.bytes.count
            json.raw(UInt8(ascii: "{"))
            if let oldRow, let newRow = change.new {
                var firstChange = true
                for index in columns.indices where index < oldRow.cells.count && index < newRow.cells.count {
                    if case .unchangedToast = newRow.cells[index] { continue }
                    if case .unchangedToast = oldRow.cells[index] { continue }
                    // Under DEFAULT identity the old key tuple has NULLs for non-key columns.
                    if relation.replicaIdentity != .full, !columns[index].isReplicaIdentity { continue }
                    if oldRow.sameValue(at: index, as: newRow) { continue }
                    if !firstChange { json.raw(UInt8(ascii: ",")) }
                    firstChange = false
                    changesFields += 1
                    json.key(columns[index].name)
                    ValueConverter.write(oldRow.cells[index], of: oldRow, kind: kind(columns[index]), to: &json)
                }
            }
            json.raw(UInt8(ascii: "}"))
            changesRange = Int32(truncatingIfNeeded: changesStart)..<Int32(truncatingIfNeeded: json.bytes.count)
        } else {
            json.null()
        }

        json.raw(",\"action\":")
        json.string(change.action.rawValue)

        // metadata
        let transaction = change.transaction
        json.raw(",\"metadata\":")
        let metadataStart = json.bytes.count
        json.raw("{\"table_schema\":")
        json.string(relation.schema)
        json.raw(",\"table_name\":")
        json.string(relation.name)
        json.raw(",\"commit_timestamp\":")
        json.string(timestamps.text(for: transaction.commitTimestamp))
        json.raw(",\"commit_lsn\":")
        json.number(transaction.commitLSN.rawValue)
        json.raw(",\"commit_idx\":")
        json.number(change.commitIndex)
        json.raw(",\"idempotency_key\":")
        if let backfill = change.backfillID {
            json.string(Base64.encode(Array("\(backfill):\(recordPKs.joined(separator: ":"))".utf8)))
        } else {
            json.string(Base64.encode(Array("\(transaction.commitLSN.rawValue):\(change.commitIndex)".utf8)))
        }
        json.raw(",\"database_name\":")
        json.string(database.database)
        json.raw(",\"transaction_annotations\":")
        if let annotations = change.transactionAnnotations { json.raw(annotations) } else { json.null() }
        json.raw(",\"record_pks\":[")
        for (position, pk) in recordPKs.enumerated() {
            if position > 0 { json.raw(UInt8(ascii: ",")) }
            json.string(pk)
        }
        json.raw(UInt8(ascii: "]"))
        if !unchangedToast.isEmpty {
            json.raw(",\"unchanged_toast_columns\":[")
            for (position, name) in unchangedToast.enumerated() {
                if position > 0 { json.raw(UInt8(ascii: ",")) }
                json.string(name)
            }
            json.raw(UInt8(ascii: "]"))
        }
        json.raw(tail)

        // (Offsets fit in 32 bits for every message Kafka could take; a larger one goes without.)
        let layout = json.bytes.count >= Int(Int32.max) ? nil : MessageLayout(
            record: Int32(truncatingIfNeeded: recordStart)..<Int32(truncatingIfNeeded: recordEnd), recordFields: recordFields,
            changes: changesRange, changesFields: changesFields, action: change.action,
            metadataStart: Int32(truncatingIfNeeded: metadataStart))
        return Message(key: MessageKey.make(recordPKs), value: json.bytes, topic: topic, recordPKs: recordPKs, layout: layout)
    }
}

/// The default Kafka key: primary-key values in column order, as text, joined with `:`.
public enum MessageKey {
    public static func make(_ recordPKs: [String]) -> [UInt8]? {
        recordPKs.isEmpty ? nil : Array(recordPKs.joined(separator: ":").utf8)
    }
}

/// The last commit timestamp formatted, per encoder. An encoder is used by one thread at a time
/// (the replication thread), which is why the lock is cheap and uncontended.
final class CommitTimestampCache: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64 = .min
    private var formatted = ""

    func text(for microseconds: Int64) -> String {
        lock.lock()
        defer { lock.unlock() }
        if microseconds != value {
            value = microseconds
            formatted = PostgresTime.iso8601(microsecondsSince2000: microseconds)
        }
        return formatted
    }
}
