import Logging
import Testing
@testable import PostgresSource

/// Annotation contents the `annotations` fuzz target (Fuzz/Annotations) found: Foundation's JSON
/// parser took them, and embedded as they are they made every following message of the transaction
/// invalid JSON. Such content is refused (the changes go out with null annotations, as for any
/// `set` that is not JSON).
@Suite("Transaction annotations: fuzz findings")
struct TransactionAnnotationsFuzzFindingsTests {
    static let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    static func annotations(after content: [UInt8]) -> [UInt8]? {
        var position = TransactionPosition()
        position.apply(prefix: "sequin:transaction_annotations.set", content: content, xid: 1, logger: logger)
        return position.annotations
    }

    @Test(arguments: [
        [0x32, 0x00],                                       // "2" + NUL: Foundation reads it as UTF-16LE
        [0x00, 0x32],                                       // UTF-16BE
        [0xFF, 0xFE, 0x7B, 0x00, 0x7D, 0x00],               // UTF-16LE with a byte order mark: {}
        [0xEF, 0xBB, 0xBF] + Array(#"{"a":1}"#.utf8),       // UTF-8 byte order mark
        Array("[1,]".utf8),                                 // trailing commas
        Array(#"{"user":"ada",}"#.utf8),
    ])
    func contentFoundationTakesButAMessageCannotEmbed(content: [UInt8]) {
        #expect(Self.annotations(after: content) == nil)
    }

    @Test(arguments: [#"{"user":"ada","roles":["a","b"]}"#, #" "deploy" "#, "42", "[]", "null", #"{"n":"h\u00e9"}"#])
    func jsonStillSetsAnnotations(text: String) {
        #expect(Self.annotations(after: Array(text.utf8)) == Array(text.utf8))
    }
}
