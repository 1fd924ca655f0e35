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
    /// `metadata.database_name` as JSON.
    private let databaseNameJSON: [UInt8]

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
        var name = JSONWriter(capacity: 32)
        name.string(database.database)
        databaseNameJSON = name.bytes
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

    @inline(__always) private func kind(_ columns: [Column], _ index: Int) -> ValueKind {
        valueFormat == .sluice ? columns[index].kind : columns[index].sequinKind
    }

    /// The bytes the JSON of `change` takes at least: its text and JSON values, which are written whole
    /// (escapes only add). A row whose value alone is beyond Kafka's limit is known too large without
    /// writing it, which would hold a 100 MB value once more.
    public func valueBytesAtLeast(_ change: Change) -> Int {
        guard let row = change.action == .delete ? change.old : change.new else { return 0 }
        let columns = change.relation.columns
        var total = 0
        for (index, cell) in row.cells.enumerated() where index < columns.count {
            guard case .text(let range) = cell else { continue }
            switch kind(columns, index) {
            case .text, .json: total += range.count
            default: continue
            }
        }
        return total
    }

    /// The message of `change` without its value: key, topic and primary keys, for a message cancelled
    /// before it was written.
    public func unwritten(_ change: Change, topic: String) -> Message {
        let row = change.action == .delete ? change.old : change.new
        let recordPKs = change.action == .truncate ? [] : change.relation.keyColumnIndexes.map { index in
            row?.text(at: index) ?? change.old?.text(at: index) ?? ""
        }
        return Message(key: MessageKey.make(recordPKs), value: [], topic: topic, recordPKs: recordPKs)
    }

    public func encode(_ change: Change, topic: String) -> Message {
        change.relation.columnKeysJSON.withUnsafeBufferPointer { encode(change, topic: topic, keyBytes: $0) }
    }

    private func encode(_ change: Change, topic: String, keyBytes: UnsafeBufferPointer<UInt8>) -> Message {
        let relation = change.relation
        let columns = relation.columns
        let keyRanges = relation.columnKeyRanges
        @inline(__always) func key(_ index: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: keyBytes[keyRanges[index]]) }
        // The row to show: the new one, or for deletes the old one.
        let row: Tuple = (change.action == .delete ? change.old : change.new) ?? Tuple(bytes: [], cells: [])
        let oldRow = change.old
        let keyIndexes = relation.keyColumnIndexes

        var recordPKs: [String] = []
        recordPKs.reserveCapacity(keyIndexes.count)
        for index in keyIndexes where change.action != .truncate {
            recordPKs.append(row.text(at: index) ?? oldRow?.text(at: index) ?? "")
        }

        // Sized for the whole message, so the buffer is allocated once (a buffer that grows mid-message
        // is copied and doubled, and the doubled capacity is then held while the message is in flight):
        // the fixed parts, the column keys, metadata head and sink's tail as they are, values at up to
        // twice their text (escapes) plus a few bytes each (quotes, `true`), the old row's values once
        // more for an update's `changes`.
        let values = { (tuple: Tuple?) in (tuple?.bytes.count ?? 0) * 2 + columns.count * 4 }
        var json = JSONWriter(capacity: 384 + databaseNameJSON.count + relation.metadataHeadJSON.count + tail.count
                                  + keyBytes.count + values(row)
                                  + (change.action == .update ? keyBytes.count + values(oldRow) : 0))
        var unchangedToast: [String] = []

        // record
        json.raw("{\"record\":")
        let recordStart = json.bytes.count
        json.raw(UInt8(ascii: "{"))
        var recordFields: Int32 = 0
        // One field of the record, from `tuple` (the row, or the old row for an unchanged TOAST value).
        func field(_ index: Int, _ cell: Cell, of tuple: Tuple) {
            if recordFields > 0 { json.raw(UInt8(ascii: ",")) }
            recordFields += 1
            json.raw(key(index))
            ValueConverter.write(cell, of: tuple, kind: kind(columns, index), to: &json)
        }
        for index in columns.indices where index < row.cells.count {
            let cell = row.cells[index]
            // A delete under REPLICA IDENTITY DEFAULT carries only the key columns.
            if change.action == .delete, relation.replicaIdentity != .full,
               !columns[index].isReplicaIdentity, case .null = cell {
                continue
            }
            if case .unchangedToast = cell {
                // Fill an unchanged TOAST value from the old row when the server sent it (FULL);
                // otherwise leave the column out and say so, never send a placeholder as data.
                guard let oldRow, index < oldRow.cells.count, case .text = oldRow.cells[index] else {
                    unchangedToast.append(columns[index].name)
                    continue
                }
                field(index, oldRow.cells[index], of: oldRow)
            } else {
                field(index, cell, of: row)
            }
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
                for index in columns.indices where index < oldRow.cells.count && index < newRow.cells.count {
                    if case .unchangedToast = newRow.cells[index] { continue }
                    if case .unchangedToast = oldRow.cells[index] { continue }
                    // Under DEFAULT identity the old key tuple has NULLs for non-key columns.
                    if relation.replicaIdentity != .full, !columns[index].isReplicaIdentity { continue }
                    if oldRow.sameValue(at: index, as: newRow) { continue }
                    if changesFields > 0 { json.raw(UInt8(ascii: ",")) }
                    changesFields += 1
                    json.raw(key(index))
                    ValueConverter.write(oldRow.cells[index], of: oldRow, kind: kind(columns, index), to: &json)
                }
            }
            json.raw(UInt8(ascii: "}"))
            changesRange = Int32(truncatingIfNeeded: changesStart)..<Int32(truncatingIfNeeded: json.bytes.count)
        } else {
            json.null()
        }

        switch change.action {
        case .insert: json.raw(",\"action\":\"insert\"")
        case .update: json.raw(",\"action\":\"update\"")
        case .delete: json.raw(",\"action\":\"delete\"")
        case .read: json.raw(",\"action\":\"read\"")
        case .truncate: json.raw(",\"action\":\"truncate\"")
        }

        // metadata
        let transaction = change.transaction
        json.raw(",\"metadata\":")
        let metadataStart = json.bytes.count
        json.raw(relation.metadataHeadJSON)
        json.raw(",\"commit_timestamp\":")
        json.raw(timestamps.json(for: transaction.commitTimestamp))
        json.raw(",\"commit_lsn\":")
        json.number(transaction.commitLSN.rawValue)
        json.raw(",\"commit_idx\":")
        json.number(change.commitIndex)
        json.raw(",\"idempotency_key\":")
        if let backfill = change.backfillID {
            // `<backfill id>:<pk>[:<pk>…]`
            var text = Array(backfill.utf8)
            text.append(UInt8(ascii: ":"))
            for (position, pk) in recordPKs.enumerated() {
                if position > 0 { text.append(UInt8(ascii: ":")) }
                text.append(contentsOf: pk.utf8)
            }
            text.withUnsafeBufferPointer { json.base64String($0) }
        } else {
            // `<commit lsn>:<commit idx>`
            var text: [UInt8] = []
            text.reserveCapacity(42)
            JSONWriter.appendDigits(transaction.commitLSN.rawValue, to: &text)
            text.append(UInt8(ascii: ":"))
            if change.commitIndex < 0 { text.append(UInt8(ascii: "-")) }
            JSONWriter.appendDigits(UInt64(change.commitIndex.magnitude), to: &text)
            text.withUnsafeBufferPointer { json.base64String($0) }
        }
        json.raw(",\"database_name\":")
        json.raw(databaseNameJSON)
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
        guard let first = recordPKs.first else { return nil }
        if recordPKs.count == 1 { return Array(first.utf8) }
        var key: [UInt8] = []
        key.reserveCapacity(recordPKs.reduce(recordPKs.count) { $0 + $1.utf8.count })
        for (position, pk) in recordPKs.enumerated() {
            if position > 0 { key.append(UInt8(ascii: ":")) }
            key.append(contentsOf: pk.utf8)
        }
        return key
    }
}

/// The last commit timestamp formatted as a JSON string, per encoder. An encoder is used by one thread
/// at a time (the replication thread), which is why the lock is cheap and uncontended.
final class CommitTimestampCache: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64 = .min
    private var formatted: [UInt8] = []

    func json(for microseconds: Int64) -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        if microseconds != value {
            value = microseconds
            var json = JSONWriter(capacity: 32)
            json.string(PostgresTime.iso8601(microsecondsSince2000: microseconds))
            formatted = json.bytes
        }
        return formatted
    }
}
