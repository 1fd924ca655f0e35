import Foundation
import SluiceCore

/// `action` and `metadata.record_pks` read back from a Sequin-shaped message held in the ledger.
struct MessageSummary {
    var action: Action?
    var recordPKs: [String] = []

    init(json: [UInt8]) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else { return }
        action = (object["action"] as? String).flatMap(Action.init(rawValue:))
        if let metadata = object["metadata"] as? [String: Any], let pks = metadata["record_pks"] as? [Any] {
            recordPKs = pks.map { "\($0)" }
        }
    }
}
