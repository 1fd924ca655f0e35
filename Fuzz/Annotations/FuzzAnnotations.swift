import Foundation
import FuzzSupport
import Logging
import PostgresSource
import SluiceCore

/// Fuzz target: the content of a `sequin:transaction_annotations.set` logical message →
/// `TransactionPosition.apply`. Content it accepts is embedded as is into `metadata.transaction_annotations`
/// of every following message, so the message must then be valid JSON (UTF-8 included: the rest of
/// it is ASCII); content it refuses leaves no annotations. The first byte chooses the prefix (set with
/// Sequin's or Sluice's prefix, or a clear after the set).
enum AnnotationsTarget {
    static let logger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })
    static let relation = Relation(id: 16384, schema: "public", name: "orders", replicaIdentity: .default, columns: [
        Column(name: "id", typeOID: 20, isReplicaIdentity: true, isPrimaryKey: true),
    ])
    static let encoder = MessageEncoder(consumer: ConsumerIdentity(name: "fuzz"),
                                        database: DatabaseIdentity(name: nil, database: "app", hostname: "localhost"))

    static func run(_ input: UnsafeRawBufferPointer) {
        guard let first = input.first else { return }
        let content = Array(input.dropFirst())
        let prefix = TransactionPosition.prefixes[Int(first & 1)]
        var position = TransactionPosition()
        position.apply(prefix: prefix + "set", content: content, xid: 7, logger: logger)
        if let annotations = position.annotations {
            FuzzRun.require(annotations == content, "annotations differ from the content that set them")
            var change = Change(action: .insert, relation: relation, new: Tuple(texts: ["1"]), old: nil,
                                transaction: TransactionInfo(xid: 7, commitLSN: LSN(1), commitTimestamp: 0), commitIndex: 0)
            change.transactionAnnotations = annotations
            let value = encoder.encode(change, topic: "orders").value
            if let problem = JSONValidator.problem(in: value) {
                FuzzRun.require(false, "annotations \(content) made a message that is not JSON: \(problem)")
            }
            // A second opinion on the whole message, from a parser that shares no code with the check.
            FuzzRun.require((try? JSONSerialization.jsonObject(with: Data(value))) != nil,
                            "annotations \(content) made a message Foundation cannot read")
        }
        if first & 2 != 0 {
            position.apply(prefix: prefix + "clear", content: content, xid: 7, logger: logger)
            FuzzRun.require(position.annotations == nil, "clear left annotations")
        }
    }
}

// scripts/fuzz builds with -DSLUICE_LIBFUZZER and `--sanitize fuzzer`: libFuzzer brings `main` and calls
// this for every input. Without it (a plain `swift build`) the target is a replay tool.
#if SLUICE_LIBFUZZER
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    AnnotationsTarget.run(FuzzRun.buffer(data, size))
    return 0
}
#else
@main
enum FuzzAnnotationsMain {
    static func main() { FuzzRun.replay(AnnotationsTarget.run) }
}
#endif
