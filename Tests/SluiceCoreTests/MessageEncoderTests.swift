import Foundation
import Testing
@testable import SluiceCore

@Suite("MessageEncoder")
struct MessageEncoderTests {
    // 2026-11-29T10:00:00.123456Z as microseconds since 2000-01-01 UTC.
    static let commitMicros: Int64 = (1_795_946_400 - 946_684_800) * 1_000_000 + 123_456
    static let transaction = TransactionInfo(xid: 771, commitLSN: LSN(24_023_128), commitTimestamp: commitMicros)
    static let encoder = MessageEncoder(consumer: ConsumerIdentity(name: "orders-to-kafka"), database: DatabaseIdentity(name: nil, database: "app", hostname: "db.local"))

    /// public.users(id int4 PK, name text, score numeric)
    static func users(identity: Relation.ReplicaIdentity = .default) -> Relation {
        Relation(id: 16_384, schema: "public", name: "users", replicaIdentity: identity, columns: [
            Column(name: "id", typeOID: 23, isReplicaIdentity: true, isPrimaryKey: true),
            Column(name: "name", typeOID: 25, isReplicaIdentity: identity == .full),
            Column(name: "score", typeOID: 1700, isReplicaIdentity: identity == .full),
        ])
    }

    static func change(_ action: Action, _ relation: Relation, new: Tuple?, old: Tuple?, index: Int = 0) -> Change {
        Change(action: action, relation: relation, new: new, old: old, transaction: transaction, commitIndex: index)
    }

    static func object(_ message: Message) throws -> [String: Any] {
        let parsed = try JSONSerialization.jsonObject(with: Data(message.value))
        return try #require(parsed as? [String: Any])
    }

    static func text(_ message: Message) -> String { String(decoding: message.value, as: UTF8.self) }

    @Test func insertExactJSON() throws {
        let message = Self.encoder.encode(
            Self.change(.insert, Self.users(), new: Tuple(texts: ["7", "Ada", "12.50"]), old: nil), topic: "orders")
        let consumer = ConsumerIdentity(name: "orders-to-kafka")
        let database = DatabaseIdentity(name: nil, database: "app", hostname: "db.local")
        let key = Data("24023128:0".utf8).base64EncodedString()
        #expect(Self.text(message) == """
            {"record":{"id":7,"name":"Ada","score":12.50},"changes":null,"action":"insert",\
            "metadata":{"table_schema":"public","table_name":"users","commit_timestamp":"2026-11-29T10:00:00.123456Z",\
            "commit_lsn":24023128,"commit_idx":0,"idempotency_key":"\(key)","database_name":"app",\
            "transaction_annotations":null,"record_pks":["7"],\
            "consumer":{"id":"\(consumer.id)","name":"orders-to-kafka","annotations":{}},\
            "database":{"id":"\(database.id)","name":"app","annotations":{},"database":"app","hostname":"db.local"},\
            "enrichment":null}}
            """)
        #expect(message.topic == "orders")
        #expect(message.key == Array("7".utf8))
        #expect(message.recordPKs == ["7"])
    }

    @Test func insertEveryField() throws {
        let message = Self.encoder.encode(
            Self.change(.insert, Self.users(), new: Tuple(texts: ["7", "Ada", nil]), old: nil, index: 3), topic: "t")
        let json = try Self.object(message)
        let record = try #require(json["record"] as? [String: Any])
        #expect(record.count == 3)
        #expect(record["id"] as? Int == 7)
        #expect(record["name"] as? String == "Ada")
        #expect(record["score"] is NSNull)
        #expect(json["changes"] is NSNull)
        #expect(json["action"] as? String == "insert")
        let metadata = try #require(json["metadata"] as? [String: Any])
        #expect(Set(metadata.keys) == ["table_schema", "table_name", "commit_timestamp", "commit_lsn", "commit_idx",
                                       "idempotency_key", "database_name", "transaction_annotations", "record_pks",
                                       "consumer", "database", "enrichment"])
        #expect(metadata["table_schema"] as? String == "public")
        #expect(metadata["table_name"] as? String == "users")
        #expect(metadata["commit_timestamp"] as? String == "2026-11-29T10:00:00.123456Z")
        #expect(metadata["commit_lsn"] as? Int == 24_023_128)
        #expect(metadata["commit_idx"] as? Int == 3)
        let idempotency = try #require(metadata["idempotency_key"] as? String)
        let decoded = try #require(Data(base64Encoded: idempotency))
        #expect(String(decoding: decoded, as: UTF8.self) == "24023128:3")
        #expect(metadata["database_name"] as? String == "app")
        #expect(metadata["transaction_annotations"] is NSNull)
        #expect(metadata["record_pks"] as? [String] == ["7"])
        let consumer = try #require(metadata["consumer"] as? [String: Any])
        #expect(consumer["name"] as? String == "orders-to-kafka")
        #expect(consumer["id"] as? String == ConsumerIdentity(name: "orders-to-kafka").id)
        #expect((consumer["annotations"] as? [String: Any])?.isEmpty == true)
        let database = try #require(metadata["database"] as? [String: Any])
        #expect(Set(database.keys) == ["id", "name", "annotations", "database", "hostname"])
        #expect(database["name"] as? String == "app")
        #expect(database["database"] as? String == "app")
        #expect(database["hostname"] as? String == "db.local")
        #expect(database["id"] as? String == DatabaseIdentity(name: "app", database: "other", hostname: "x").id)
        #expect(metadata["enrichment"] is NSNull)
    }

    @Test func annotationsNamesAndEnrichment() throws {
        let encoder = MessageEncoder(
            consumer: ConsumerIdentity(name: "orders", annotations: #"{"team":"billing","tier":2}"#),
            database: DatabaseIdentity(name: "prod-db", annotations: #"{"region":"eu"}"#, database: "app", hostname: "10.0.0.5"))
        var change = Self.change(.insert, Self.users(), new: Tuple(texts: ["7", "Ada", "1"]), old: nil)
        change.transactionAnnotations = Array(#"{"user":"paul","request_id":"req_1"}"#.utf8)
        let message = encoder.encode(change, topic: "t")
        let metadata = try #require(Self.object(message)["metadata"] as? [String: Any])
        let consumer = try #require(metadata["consumer"] as? [String: Any])
        #expect(consumer["annotations"] as? NSDictionary == ["team": "billing", "tier": 2] as NSDictionary)
        let database = try #require(metadata["database"] as? [String: Any])
        #expect(database["name"] as? String == "prod-db")
        #expect(database["database"] as? String == "app")
        #expect(database["hostname"] as? String == "10.0.0.5")
        #expect(database["annotations"] as? [String: String] == ["region": "eu"])
        #expect(metadata["database_name"] as? String == "app")
        #expect(metadata["transaction_annotations"] as? [String: String] == ["user": "paul", "request_id": "req_1"])

        let enriched = Message(key: message.key, value: MessageEncoder.enriched(message.value, with: Array(#"{"account_name":"Acme"}"#.utf8)),
                               topic: "t", recordPKs: message.recordPKs)
        let enrichedMetadata = try #require(Self.object(enriched)["metadata"] as? [String: Any])
        #expect(enrichedMetadata["enrichment"] as? [String: String] == ["account_name": "Acme"])
        #expect(enrichedMetadata["consumer"] as? NSDictionary == consumer as NSDictionary)
    }

    @Test func sequinValueFormat() throws {
        let relation = Relation(id: 9, schema: "public", name: "prices", replicaIdentity: .default, columns: [
            Column(name: "id", typeOID: 23, isReplicaIdentity: true, isPrimaryKey: true),
            Column(name: "price", typeOID: 1700),
            Column(name: "prices", typeOID: 1231),
            Column(name: "cash", typeOID: 790),
            Column(name: "address", typeOID: 99_001, kind: .composite(fields: [.init(name: "city", kind: .text),
                                                                             .init(name: "zip", kind: .integer)])),
        ])
        let row = Tuple(texts: ["1", "19.990", "{1.50,NaN}", "$1,234.56", "(Paris,75001)"])
        let sluice = try Self.object(Self.encoder.encode(Self.change(.insert, relation, new: row, old: nil), topic: "t"))
        let sequinEncoder = MessageEncoder(consumer: ConsumerIdentity(name: "orders-to-kafka"),
                                           database: DatabaseIdentity(name: nil, database: "app", hostname: "db.local"),
                                           valueFormat: .sequin)
        let sequinMessage = sequinEncoder.encode(Self.change(.insert, relation, new: row, old: nil), topic: "t")
        #expect(Self.text(sequinMessage).hasPrefix(#"{"record":{"id":1,"price":"19.990","prices":["1.50","NaN"],"cash":"$1,234.56","address":"(Paris,75001)"}"#))
        let sluiceRecord = try #require(sluice["record"] as? [String: Any])
        #expect(sluiceRecord["price"] as? Double == 19.99)
        #expect((sluiceRecord["address"] as? [String: Any])?["zip"] as? Int == 75001)
    }

    @Test func recordKeepsColumnOrder() throws {
        let relation = Relation(id: 1, schema: "public", name: "wide", replicaIdentity: .default, columns: [
            Column(name: "zeta", typeOID: 23, isReplicaIdentity: true, isPrimaryKey: true),
            Column(name: "alpha", typeOID: 25),
            Column(name: "mid", typeOID: 16),
            Column(name: "beta", typeOID: 25),
        ])
        let message = Self.encoder.encode(
            Self.change(.insert, relation, new: Tuple(texts: ["1", "a", "t", "b"]), old: nil), topic: "t")
        #expect(Self.text(message).hasPrefix("{\"record\":{\"zeta\":1,\"alpha\":\"a\",\"mid\":true,\"beta\":\"b\"},"))
    }

    @Test func consumerIdIsStableAndUUIDShaped() throws {
        let a = ConsumerIdentity(name: "orders-to-kafka")
        let b = ConsumerIdentity(name: "orders-to-kafka")
        let c = ConsumerIdentity(name: "users-to-kafka")
        #expect(a.id == b.id)
        #expect(a.id != c.id)
        #expect(a.name == "orders-to-kafka")
        for id in [a.id, c.id] {
            #expect(UUID(uuidString: id) != nil)
            #expect(id == id.lowercased())
            let groups = id.split(separator: "-").map(\.count)
            #expect(groups == [8, 4, 4, 4, 12])
            let characters = Array(id)
            #expect(characters[14] == "8") // version 8
            #expect("89ab".contains(characters[19])) // RFC 9562 variant
        }
    }

    @Test func updateFullIdentityChangesHoldOldValuesOfChangedColumnsOnly() throws {
        let relation = Self.users(identity: .full)
        let message = Self.encoder.encode(Self.change(.update, relation,
                                                     new: Tuple(texts: ["7", "Ada", "10"]),
                                                     old: Tuple(texts: ["7", "Ad", "10"])), topic: "t")
        let json = try Self.object(message)
        #expect(json["action"] as? String == "update")
        let record = try #require(json["record"] as? [String: Any])
        #expect(record["id"] as? Int == 7)
        #expect(record["name"] as? String == "Ada")
        let changes = try #require(json["changes"] as? [String: Any])
        #expect(changes.count == 1)
        #expect(changes["name"] as? String == "Ad")
        #expect(Self.text(message).contains("\"changes\":{\"name\":\"Ad\"}"))
    }

    @Test func updateFullIdentityNullTransitions() throws {
        let relation = Self.users(identity: .full)
        let message = Self.encoder.encode(Self.change(.update, relation,
                                                     new: Tuple(texts: ["7", nil, "1.5"]),
                                                     old: Tuple(texts: ["7", "Ada", nil])), topic: "t")
        #expect(Self.text(message).contains("\"changes\":{\"name\":\"Ada\",\"score\":null}"))
    }

    @Test func updateWithoutOldTupleHasEmptyChanges() throws {
        let message = Self.encoder.encode(
            Self.change(.update, Self.users(), new: Tuple(texts: ["7", "Ada", "1"]), old: nil), topic: "t")
        let json = try Self.object(message)
        let changes = try #require(json["changes"] as? [String: Any])
        #expect(changes.isEmpty)
        #expect(Self.text(message).contains("\"changes\":{},"))
    }

    @Test func updateOfKeyUnderDefaultIdentityShowsOldKey() throws {
        // pgoutput sends a K tuple (key columns only, others NULL) when the key changed.
        let message = Self.encoder.encode(
            Self.change(.update, Self.users(), new: Tuple(texts: ["8", "Ada", "1"]), old: Tuple(texts: ["7", nil, nil])),
            topic: "t")
        #expect(Self.text(message).contains("\"changes\":{\"id\":7}"))
        #expect(message.key == Array("8".utf8))
        #expect(message.recordPKs == ["8"])
    }

    @Test func deleteUnderDefaultIdentityHoldsOnlyKeyColumns() throws {
        let message = Self.encoder.encode(
            Self.change(.delete, Self.users(), new: nil, old: Tuple(texts: ["7", nil, nil])), topic: "t")
        let json = try Self.object(message)
        #expect(json["action"] as? String == "delete")
        #expect(json["changes"] is NSNull)
        let record = try #require(json["record"] as? [String: Any])
        #expect(record.count == 1)
        #expect(record["id"] as? Int == 7)
        #expect(Self.text(message).hasPrefix("{\"record\":{\"id\":7},\"changes\":null,\"action\":\"delete\","))
        let metadata = try #require(json["metadata"] as? [String: Any])
        #expect(metadata["record_pks"] as? [String] == ["7"])
        #expect(message.key == Array("7".utf8))
    }

    @Test func deleteUnderFullIdentityHoldsWholeOldRow() throws {
        let message = Self.encoder.encode(
            Self.change(.delete, Self.users(identity: .full), new: nil, old: Tuple(texts: ["7", nil, "3"])), topic: "t")
        #expect(Self.text(message).hasPrefix("{\"record\":{\"id\":7,\"name\":null,\"score\":3},\"changes\":null,"))
    }

    @Test func compositePrimaryKeyInColumnOrder() throws {
        let relation = Relation(id: 2, schema: "sales", name: "lines", replicaIdentity: .default, columns: [
            Column(name: "region", typeOID: 25, isReplicaIdentity: true, isPrimaryKey: true),
            Column(name: "note", typeOID: 25),
            Column(name: "code", typeOID: 25, isReplicaIdentity: true, isPrimaryKey: true),
        ])
        let message = Self.encoder.encode(
            Self.change(.insert, relation, new: Tuple(texts: ["a", "x", "b"]), old: nil), topic: "t")
        #expect(message.key == Array("a:b".utf8))
        #expect(message.recordPKs == ["a", "b"])
        let metadata = try #require(try Self.object(message)["metadata"] as? [String: Any])
        #expect(metadata["record_pks"] as? [String] == ["a", "b"])
        #expect(metadata["table_schema"] as? String == "sales")
        #expect(metadata["table_name"] as? String == "lines")
    }

    @Test func noPrimaryKeyMeansNoKey() throws {
        for identity in [Relation.ReplicaIdentity.default, .full, .nothing] {
            let relation = Relation(id: 3, schema: "public", name: "log", replicaIdentity: identity, columns: [
                Column(name: "line", typeOID: 25, isReplicaIdentity: identity == .full),
            ])
            let message = Self.encoder.encode(
                Self.change(.insert, relation, new: Tuple(texts: ["hello"]), old: nil), topic: "t")
            #expect(message.key == nil)
            #expect(message.recordPKs == [])
            #expect(Self.text(message).contains("\"record_pks\":[]"))
        }
    }

    @Test func replicaIdentityIndexColumnsServeAsKeyWithoutPrimaryKey() throws {
        let relation = Relation(id: 4, schema: "public", name: "u", replicaIdentity: .index, columns: [
            Column(name: "email", typeOID: 25, isReplicaIdentity: true),
            Column(name: "name", typeOID: 25),
        ])
        let message = Self.encoder.encode(
            Self.change(.insert, relation, new: Tuple(texts: ["a@b", "A"]), old: nil), topic: "t")
        #expect(message.key == Array("a@b".utf8))
        #expect(message.recordPKs == ["a@b"])
    }

    @Test func unchangedToastFilledFromFullOldTuple() throws {
        let relation = Self.users(identity: .full)
        let new = Tuple(bytes: Array("7".utf8) + Array("1".utf8), cells: [.text(0..<1), .unchangedToast, .text(1..<2)])
        let old = Tuple(texts: ["7", "a very long name", "2"])
        let message = Self.encoder.encode(Self.change(.update, relation, new: new, old: old), topic: "t")
        let text = Self.text(message)
        #expect(text.hasPrefix("{\"record\":{\"id\":7,\"name\":\"a very long name\",\"score\":1},\"changes\":{\"score\":2},"))
        #expect(!text.contains("unchanged_toast_columns"))
    }

    @Test func unchangedToastWithoutOldTupleIsOmittedAndListed() throws {
        let new = Tuple(bytes: Array("71".utf8), cells: [.text(0..<1), .unchangedToast, .text(1..<2)])
        let message = Self.encoder.encode(Self.change(.update, Self.users(), new: new, old: nil), topic: "t")
        let json = try Self.object(message)
        let record = try #require(json["record"] as? [String: Any])
        #expect(Set(record.keys) == ["id", "score"])
        #expect(record["name"] == nil)
        let metadata = try #require(json["metadata"] as? [String: Any])
        #expect(metadata["unchanged_toast_columns"] as? [String] == ["name"])
        #expect(Self.text(message).hasPrefix("{\"record\":{\"id\":7,\"score\":1},\"changes\":{},"))
    }

    @Test func valuesAreConvertedByColumnKind() throws {
        let relation = Relation(id: 5, schema: "public", name: "kinds", replicaIdentity: .default, columns: [
            Column(name: "id", typeOID: 23, isReplicaIdentity: true, isPrimaryKey: true),
            Column(name: "at", typeOID: 1184),
            Column(name: "doc", typeOID: 3802),
            Column(name: "tags", typeOID: 1009),
            Column(name: "span", typeOID: 1186),
            Column(name: "ok", typeOID: 16),
            Column(name: "blob", typeOID: 17),
            Column(name: "f", typeOID: 701),
        ])
        let message = Self.encoder.encode(Self.change(.insert, relation, new: Tuple(texts: [
            "1", "2026-11-29 10:00:00.5+00", "{\"a\": 1}", "{x,\"y z\"}", "P1D", "t", "\\xff", "NaN",
        ]), old: nil), topic: "t")
        #expect(Self.text(message).hasPrefix("""
            {"record":{"id":1,"at":"2026-11-29T10:00:00.500000Z","doc":{"a": 1},"tags":["x","y z"],\
            "span":{"months":0,"days":1,"microseconds":0},"ok":true,"blob":"\\\\xff","f":"NaN"},
            """))
        _ = try Self.object(message)
    }

    @Test func namesAndStringsAreEscaped() throws {
        let relation = Relation(id: 6, schema: "we\"ird", name: "tab\\le", replicaIdentity: .default, columns: [
            Column(name: "i\"d", typeOID: 25, isReplicaIdentity: true, isPrimaryKey: true),
        ])
        let encoder = MessageEncoder(consumer: ConsumerIdentity(name: "sink \"x\""), database: DatabaseIdentity(name: nil, database: "d\nb", hostname: "h"))
        let message = encoder.encode(Self.change(.insert, relation, new: Tuple(texts: ["k\"1"]), old: nil), topic: "t")
        let json = try Self.object(message)
        let record = try #require(json["record"] as? [String: Any])
        #expect(record["i\"d"] as? String == "k\"1")
        let metadata = try #require(json["metadata"] as? [String: Any])
        #expect(metadata["table_schema"] as? String == "we\"ird")
        #expect(metadata["table_name"] as? String == "tab\\le")
        #expect(metadata["database_name"] as? String == "d\nb")
        #expect(metadata["record_pks"] as? [String] == ["k\"1"])
        #expect((metadata["consumer"] as? [String: Any])?["name"] as? String == "sink \"x\"")
    }

    @Test func readActionForBackfill() throws {
        let message = Self.encoder.encode(
            Self.change(.read, Self.users(), new: Tuple(texts: ["1", "A", "2"]), old: nil), topic: "t")
        let json = try Self.object(message)
        #expect(json["action"] as? String == "read")
        #expect(json["changes"] is NSNull)
    }

    @Test func largeCommitLSNIsAnExactNumber() throws {
        let transaction = TransactionInfo(xid: 1, commitLSN: LSN(0x16_B374_D848), commitTimestamp: 0)
        let change = Change(action: .insert, relation: Self.users(), new: Tuple(texts: ["1", "A", "2"]), old: nil,
                            transaction: transaction, commitIndex: 12)
        let text = Self.text(Self.encoder.encode(change, topic: "t"))
        #expect(text.contains("\"commit_timestamp\":\"2000-01-01T00:00:00.000000Z\",\"commit_lsn\":97500059720,\"commit_idx\":12,"))
        let key = Data("97500059720:12".utf8).base64EncodedString()
        #expect(text.contains("\"idempotency_key\":\"\(key)\""))
    }
}
