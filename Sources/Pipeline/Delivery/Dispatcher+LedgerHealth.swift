import Foundation
import Ledger

extension Dispatcher {
    /// The state file refused a write (a full disk, a read-only mount): explain it — the path, the
    /// system's reason, the space there and what the write needed, what to do — at the first failure and
    /// then once a minute, and show it in `/readyz` until a write succeeds. The unwritten parks stay
    /// unsettled, so the slot is not confirmed past them.
    func reportLedgerFailure(_ error: Error, pending writes: LedgerWrites?) {
        let purpose: String
        var bytes = 4_096
        if let writes, !writes.parks.isEmpty {
            bytes += writes.parks.reduce(0) { $0 + $1.beforeFunctions.value.count + ($1.beforeFunctions.key?.count ?? 0) + 200 }
            purpose = "parking \(writes.parks.count) message\(writes.parks.count == 1 ? "" : "s")"
        } else if let writes {
            bytes += writes.attempts.reduce(0) { $0 + $1.error.utf8.count + 200 } + writes.unparks.count * 100
            purpose = "recording \(writes.attempts.count + writes.unparks.count) delivery attempt\(writes.attempts.count + writes.unparks.count == 1 ? "" : "s")"
        } else {
            purpose = "saving the recently delivered messages"
        }
        let explanation = ledger.explainWriteFailure(error, needing: bytes, for: purpose)
        guard ledgerHealth.failed(writes == nil ? .delivered : .parks, explanation, now: Date()) else { return }
        logger.error("\(explanation)", metadata: ["sink": "\(sink.name)", "path": "\(ledger.location)"])
    }

    /// A write to the state file succeeded (`parks`: the worker's parks and attempts; else the recently
    /// delivered list): once every kind of write works again after failing, say so.
    func reportLedgerWritten(parks: Bool) {
        guard let outage = ledgerHealth.succeeded(parks ? .parks : .delivered, now: Date()) else { return }
        logger.notice("the state file is writable again; what waited for it is written", metadata: [
            "sink": "\(sink.name)", "path": "\(ledger.location)", "failing_for_s": "\(Int(outage.rounded()))"])
    }

    /// Why this sink cannot write its state, for `/readyz`; nil while it can.
    var stateFileProblem: String? { ledgerHealth.problem }
}
