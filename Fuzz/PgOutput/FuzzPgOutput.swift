import FuzzSupport
import PostgresSource
import SluiceCore

/// Fuzz target: one pgoutput message (the payload of an XLogData message) → `PgOutputDecoder`,
/// as a plain message and as one inside a streamed transaction. A row change that decodes is encoded
/// as a Sequin-shaped message against a fixed relation (any tuple the server might send: too few or
/// too many cells, TOAST markers, binary cells), and the message must be JSON with a consistent layout.
enum PgOutputTarget {
    static let columns = [
        Column(name: "id", typeOID: 20, isReplicaIdentity: true, isPrimaryKey: true),
        Column(name: "name", typeOID: 25),
        Column(name: "price", typeOID: 1700),
        Column(name: "paid", typeOID: 16),
        Column(name: "at", typeOID: 1184),
        Column(name: "tags", typeOID: 1009),
        Column(name: "span", typeOID: 1186),
        Column(name: "ratio", typeOID: 701),
        Column(name: "day", typeOID: 1082),
        Column(name: "local", typeOID: 1114),
        Column(name: "row", typeOID: 0, kind: .composite(fields: [
            .init(name: "n", kind: .integer), .init(name: "ts", kind: .array(element: .timestamptz, delimiter: 44))])),
    ]
    /// Relation ids choose the identity: even ids DEFAULT, odd ones FULL.
    static let relations = [
        Relation(id: 16384, schema: "public", name: "orders", replicaIdentity: .default, columns: columns),
        Relation(id: 16385, schema: "public", name: "orders_full", replicaIdentity: .full, columns: columns),
    ]
    static let encoders = ValueFormat.allCases.map { format in
        MessageEncoder(consumer: ConsumerIdentity(name: "fuzz"),
                       database: DatabaseIdentity(name: nil, database: "app", hostname: "localhost"), valueFormat: format)
    }

    static func run(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        _ = PgOutputDecoder.streamedXid(bytes)
        for streamed in [false, true] {
            guard let message = try? PgOutputDecoder.decode(bytes, streamed: streamed) else { continue }
            check(message)
        }
    }

    static func check(_ message: PgOutputMessage) {
        let transaction = TransactionInfo(xid: 7, commitLSN: LSN(0x16_B374_D848), commitTimestamp: 849_261_600_123_456)
        switch message {
        case .insert(let id, let new):
            encode(Change(action: .insert, relation: relations[Int(id % 2)], new: new, old: nil, transaction: transaction, commitIndex: 0))
        case .update(let id, let old, _, let new):
            encode(Change(action: .update, relation: relations[Int(id % 2)], new: new, old: old, transaction: transaction, commitIndex: 1))
        case .delete(let id, let old, _):
            encode(Change(action: .delete, relation: relations[Int(id % 2)], new: nil, old: old, transaction: transaction, commitIndex: 2))
        case .truncate(let ids, _, _):
            for id in ids.prefix(4) {
                encode(Change(action: .truncate, relation: relations[Int(id % 2)], new: nil, old: nil, transaction: transaction, commitIndex: 3))
            }
        case .relation(let description):
            // As the catalog would make it (without the catalog's look-ups): names become JSON keys.
            let relation = Relation(id: description.id, schema: description.schema, name: description.name,
                                    replicaIdentity: description.replicaIdentity,
                                    columns: description.columns.map {
                                        Column(name: $0.name, typeOID: $0.typeOID, typeModifier: $0.typeModifier,
                                               isReplicaIdentity: $0.isKey)
                                    })
            var keys = Array("{".utf8)
            for (index, range) in relation.columnKeyRanges.enumerated() {
                if index > 0 { keys.append(UInt8(ascii: ",")) }
                keys += relation.columnKeysJSON[range] + Array("0".utf8)
            }
            keys.append(UInt8(ascii: "}"))
            FuzzRun.require(JSONValidator.problem(in: keys) == nil, "column keys are not JSON: \(JSONValidator.problem(in: keys)!)")
            let head = relation.metadataHeadJSON + Array("}".utf8)
            FuzzRun.require(JSONValidator.problem(in: head) == nil, "metadata head is not JSON: \(JSONValidator.problem(in: head)!)")
        default:
            break
        }
    }

    static func encode(_ change: Change) {
        for encoder in encoders {
            let message = encoder.encode(change, topic: "orders")
            let value = message.value
            // Text values pass through byte for byte (a SQL_ASCII database can send any bytes), so
            // UTF-8 is not demanded here; the structure is.
            if let problem = JSONValidator.problem(in: value, requireUTF8: false) {
                FuzzRun.require(false, "\(change.action) message is not JSON: \(problem): \(String(decoding: value, as: UTF8.self))")
            }
            guard let layout = message.layout else { continue }
            let record = Int(layout.record.lowerBound)..<Int(layout.record.upperBound)
            FuzzRun.require(record.upperBound <= value.count && value[record.lowerBound] == UInt8(ascii: "{")
                                && value[record.upperBound - 1] == UInt8(ascii: "}"), "layout.record is not the record object")
            let metadata = layout.metadata(in: value.count)
            FuzzRun.require(value[metadata.lowerBound] == UInt8(ascii: "{") && value[metadata.upperBound - 1] == UInt8(ascii: "}"),
                            "layout.metadata is not the metadata object")
        }
    }
}

// scripts/fuzz builds with -DSLUICE_LIBFUZZER and `--sanitize fuzzer`: libFuzzer brings `main` and calls
// this for every input. Without it (a plain `swift build`) the target is a replay tool.
#if SLUICE_LIBFUZZER
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    PgOutputTarget.run(FuzzRun.buffer(data, size))
    return 0
}
#else
@main
enum FuzzPgOutputMain {
    static func main() { FuzzRun.replay(PgOutputTarget.run) }
}
#endif
