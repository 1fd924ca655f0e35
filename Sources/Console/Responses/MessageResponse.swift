import Hummingbird
import Pipeline

/// A message as `GET /api/sinks/{sink}/messages` lists it. Every field is always there, null where it
/// does not apply (`partition` and `offset` until delivered, `reason` unless cancelled).
struct MessageResponse: Encodable, Sendable {
    var id: String
    var state: String
    var table: String
    @NullEncodable var action: String?
    var recordPKs: [String]
    @NullEncodable var key: String?
    var topic: String
    var commitLSN: UInt64
    var commitIndex: Int
    var deliverCount: Int
    @NullEncodable var lastError: String?
    @NullEncodable var lastAttemptAt: String?
    @NullEncodable var nextAttemptAt: String?
    var sizeBytes: Int
    @NullEncodable var partition: Int32?
    @NullEncodable var offset: Int64?
    @NullEncodable var reason: String?

    enum CodingKeys: String, CodingKey {
        case id, state, table, action, recordPKs = "record_pks", key, topic, commitLSN = "commit_lsn", commitIndex = "commit_idx"
        case deliverCount = "deliver_count", lastError = "last_error", lastAttemptAt = "last_attempt_at"
        case nextAttemptAt = "next_attempt_at", sizeBytes = "size_bytes", partition, offset, reason
    }
}

extension MessageResponse {
    init(_ message: InspectedMessage) {
        self.init(id: message.id, state: message.state.rawValue, table: message.table, action: message.action,
                  recordPKs: message.recordPKs, key: message.key, topic: message.topic,
                  commitLSN: message.position.commitLSN.rawValue, commitIndex: message.position.commitIndex,
                  deliverCount: message.deliverCount, lastError: message.lastError,
                  lastAttemptAt: message.lastAttemptAt.map(InspectedMessage.timestamp),
                  nextAttemptAt: message.nextAttemptAt.map(InspectedMessage.timestamp), sizeBytes: message.sizeBytes,
                  partition: message.partition, offset: message.offset, reason: message.reason)
    }
}

/// One message (`GET /api/sinks/{sink}/messages/{id}`, and the answer to retry and cancel): the listed
/// fields, then `value` and `errors`.
struct MessageDetailResponse: ResponseEncodable, Sendable {
    var message: MessageResponse
    /// The message as the JSON it is (not a string holding it); null once Sluice no longer holds it.
    @NullEncodable var value: JSONFragment?
    /// Every attempt's error, newest first.
    var errors: [AttemptError]

    struct AttemptError: Encodable, Sendable {
        var at: String
        var error: String
    }

    enum CodingKeys: String, CodingKey { case value, errors }

    /// The listed fields and these two in one object, in that order.
    func encode(to encoder: any Encoder) throws {
        try message.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(_value, forKey: .value)
        try container.encode(errors, forKey: .errors)
    }
}

extension MessageDetailResponse {
    init(_ message: InspectedMessage) {
        self.init(message: MessageResponse(message), value: message.value.flatMap { $0.isEmpty ? nil : JSONFragment($0) },
                  errors: (message.errors ?? []).map { AttemptError(at: InspectedMessage.timestamp($0.at), error: $0.error) })
    }
}

/// `GET /api/sinks/{sink}/messages`.
struct MessageListResponse: ResponseEncodable, Sendable {
    var messages: [MessageResponse]
}

/// Messages as the API lists them, for `sluice messages` when no console answers (it reads the state
/// file itself): the same types, so the command prints what the API would.
public enum MessageListJSON {
    /// The JSON array of `messages`, each as `GET /api/sinks/{sink}/messages` lists it.
    public static func encode(_ messages: [InspectedMessage]) throws -> [UInt8] {
        try OrderedJSONEncoder().encode(messages.map(MessageResponse.init))
    }
}
