import Foundation
import Testing
@testable import SluiceCore

/// A row too large for Kafka is judged by `valueBytesAtLeast` and cancelled without being written:
/// the bound must never exceed what the encoder would write, and the unwritten message must carry the
/// key the written one would have.
@Suite struct UnwrittenMessageTests {
    typealias E = MessageEncoderTests

    /// public.docs(id int4, tenant text, body text, doc jsonb, n int4, tags text[], raw bytea), key (id, tenant).
    static let docs = Relation(id: 16_500, schema: "public", name: "docs", replicaIdentity: .default, columns: [
        Column(name: "id", typeOID: 23, isReplicaIdentity: true, isPrimaryKey: true),
        Column(name: "tenant", typeOID: 25, isReplicaIdentity: true, isPrimaryKey: true),
        Column(name: "body", typeOID: 25, isReplicaIdentity: false),
        Column(name: "doc", typeOID: 3802, isReplicaIdentity: false),
        Column(name: "n", typeOID: 23, isReplicaIdentity: false),
        Column(name: "tags", typeOID: 1009, isReplicaIdentity: false),
        Column(name: "raw", typeOID: 17, isReplicaIdentity: false),
    ])

    static let rows: [[String?]] = [
        ["1", "acme", "plain", #"{"a": [1, 2]}"#, "42", "{x,y}", "\\x0102"],
        ["2", "a\"b", String(repeating: "\"\\\n", count: 500), "null", nil, "{}", nil],
        ["3", "é", String(repeating: "ü", count: 10_000), #"{"k": "\u00e9"}"#, "-7", #"{"a b","c\"d"}"#, "\\x"],
        ["4", "t", nil, nil, nil, nil, nil],
    ]

    @Test(arguments: [Action.insert, .update, .delete])
    func theBoundNeverExceedsTheWrittenValue(action: Action) {
        for texts in Self.rows {
            let row = Tuple(texts: texts)
            let change = E.change(action, Self.docs, new: action == .delete ? nil : row, old: action == .insert ? nil : row)
            let written = E.encoder.encode(change, topic: "docs").value.count
            let bound = E.encoder.valueBytesAtLeast(change)
            #expect(bound <= written, "\(action) \(texts)")
            #expect(bound >= texts[2].map { $0.utf8.count } ?? 0, "the body counts whole")
        }
    }

    @Test func aHugeTextValueMakesTheBoundAtLeastItsSize() {
        let body = String(repeating: "x", count: 2_000_000)
        let change = E.change(.insert, Self.docs, new: Tuple(texts: ["9", "acme", body, nil, "1", nil, nil]), old: nil)
        #expect(E.encoder.valueBytesAtLeast(change) == 2_000_000 + "acme".utf8.count, "text values only: the body and the tenant")
    }

    @Test(arguments: [Action.insert, .update, .delete, .truncate])
    func theUnwrittenMessageHasTheWrittenKeyAndPrimaryKeys(action: Action) {
        let row = Tuple(texts: ["7", "acme", "body", nil, nil, nil, nil])
        let change = E.change(action, Self.docs, new: action == .delete ? nil : row, old: action == .insert ? nil : row)
        let written = E.encoder.encode(change, topic: "docs")
        let unwritten = E.encoder.unwritten(change, topic: "docs")
        #expect(unwritten.key == written.key && unwritten.recordPKs == written.recordPKs && unwritten.topic == "docs")
        #expect(unwritten.value.isEmpty)
    }
}
