import Foundation
import Logging
import SluiceCore

/// Where the stream is inside one transaction: the next change's index, and the annotations that
/// `pg_logical_emit_message(true, 'sequin:transaction_annotations.set', '<json>')` set for the changes
/// that follow it (`….clear` clears them; the prefix `sluice:` works the same). Public for the
/// fuzz target that feeds it hostile message content.
public struct TransactionPosition {
    public var commitIndex = 0
    /// Valid JSON text, or nil for none.
    public private(set) var annotations: [UInt8]?
    /// An invalid `set` is logged once per transaction.
    var warnedInvalid = false

    public static let prefixes = ["sequin:transaction_annotations.", "sluice:transaction_annotations."]

    public init() {}

    /// Applies a transactional logical message; messages with other prefixes are left alone.
    public mutating func apply(prefix: String, content: [UInt8], xid: UInt32, logger: Logger) {
        guard let base = Self.prefixes.first(where: { prefix.hasPrefix($0) }) else { return }
        switch prefix.dropFirst(base.count) {
        case "set":
            if Self.isJSON(content) {
                annotations = content
            } else {
                // Sequin's behaviour: keep what was there (nothing new is set), lose no change.
                if !warnedInvalid {
                    warnedInvalid = true
                    logger.warning("transaction annotations are not valid JSON; the transaction's changes go out without them", metadata: [
                        "xid": "\(xid)", "prefix": "\(prefix)", "bytes": "\(content.count)"])
                }
                annotations = nil
            }
        case "clear":
            annotations = nil
        default:
            break
        }
    }

    /// JSON that a message can embed as it is: strict JSON text in UTF-8 (Foundation's parser alone
    /// also takes trailing commas, a byte order mark and UTF-16, which would break every message that
    /// carries it), that Foundation reads too (it refuses numbers past a double and lone surrogates).
    static func isJSON(_ content: [UInt8]) -> Bool {
        guard JSONValidator.problem(in: content) == nil else { return false }
        return (try? JSONSerialization.jsonObject(with: Data(content), options: [.fragmentsAllowed])) != nil
    }
}
