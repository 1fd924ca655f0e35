import ConsoleRequests
import Foundation
import FuzzSupport
import Ledger
import Pipeline
import SluiceCore

/// Fuzz target: what the console's API and pages read from a request, without a server. Every input
/// is tried as a backfill start body (its tables then as `schema.table` names), as a message list
/// query (`state&limit`), as a login form and as a message id; a message id that parses must print
/// back as an id that parses to the same position.
enum ConsoleRequestTarget {
    static func run(_ input: UnsafeRawBufferPointer) {
        let bytes = Data(input)
        if let request = try? BackfillStartRequest(body: bytes) {
            for table in request.tables { _ = TableName(parsing: table) }
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let query = text.split(separator: "&", maxSplits: 1, omittingEmptySubsequences: false)
        _ = try? MessageListQuery(state: String(query[0]), limit: query.count > 1 ? String(query[1]) : nil)
        _ = try? MessageListQuery(state: nil, limit: text)
        _ = FormFields.parse(text)
        if let position = InspectedMessage.position(fromID: text) {
            let id = InspectedMessage.id(of: position)
            FuzzRun.require(InspectedMessage.position(fromID: id) == position, "id \(id) of \(text) reads back differently")
        }
    }
}

// scripts/fuzz builds with -DSLUICE_LIBFUZZER and `--sanitize fuzzer`: libFuzzer brings `main` and calls
// this for every input. Without it (a plain `swift build`) the target is a replay tool.
#if SLUICE_LIBFUZZER
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    ConsoleRequestTarget.run(FuzzRun.buffer(data, size))
    return 0
}
#else
@main
enum FuzzConsoleRequestMain {
    static func main() { FuzzRun.replay(ConsoleRequestTarget.run) }
}
#endif
