import Foundation
import Hummingbird
import HummingbirdCore
import Ledger
import Logging
import NIOCore
import NIOEmbedded
@testable import Console
@testable import Pipeline
import SluiceCore
import Testing

/// The API's JSON is a contract: every answer must stay what the recorded `Golden` answers are, byte for
/// byte, and — said the way a client sees it — field for field, with nulls where they were and the same kinds.
struct APIContractTests {
    // MARK: - What the API writes

    static func writeListed(_ message: InspectedMessage) throws -> [UInt8] { try OrderedJSONEncoder().encode(MessageResponse(message)) }
    static func writeDetail(_ message: InspectedMessage) throws -> [UInt8] { try OrderedJSONEncoder().encode(MessageDetailResponse(message)) }
    static func writeList(_ messages: [InspectedMessage]) throws -> [UInt8] {
        try OrderedJSONEncoder().encode(MessageListResponse(messages: messages.map(MessageResponse.init)))
    }
    static func writeStatus(_ status: MessageInspector.Status, ha: HAStatus.Snapshot = Samples.singleInstance) throws -> [UInt8] {
        try OrderedJSONEncoder().encode(StatusResponse(status, ha: ha))
    }
    static func writeBackfill(_ record: BackfillRecord) throws -> [UInt8] { try OrderedJSONEncoder().encode(BackfillResponse(record)) }
    static func writeBackfills(_ records: [BackfillRecord]) throws -> [UInt8] { try OrderedJSONEncoder().encode(BackfillListResponse(records)) }
    static func errorResponse(status: Int, _ message: String) async throws -> Response {
        try APIError(HTTPResponse.Status(code: status), message).response(from: TestRequests.any, context: TestRequests.context())
    }
    static func errorResponse(_ error: InspectionError) async throws -> Response {
        try APIError(error).response(from: TestRequests.any, context: TestRequests.context())
    }
    static func createdResponse() async throws -> Response {
        try EditedResponse(status: .created, response: NoFields()).response(from: TestRequests.any, context: TestRequests.context())
    }

    struct NoFields: ResponseEncodable {}

    // MARK: - Checks

    /// The same bytes, and the same JSON value field for field (the second says what differs, if anything).
    static func expectSame(_ actual: [UInt8], _ golden: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = Array(golden.utf8)
        let differences = try JSONComparison.differences(expected, actual)
        #expect(differences.isEmpty, "\(what): \(differences.joined(separator: "; "))", sourceLocation: sourceLocation)
        #expect(String(decoding: actual, as: UTF8.self) == golden, "\(what): bytes differ", sourceLocation: sourceLocation)
    }

    static func expectSame(_ response: Response, _ golden: (status: Int, headers: String, body: String), _ what: String,
                           sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(response.status.code == golden.status, "\(what): status", sourceLocation: sourceLocation)
        #expect("\(response.headers)" == golden.headers, "\(what): headers", sourceLocation: sourceLocation)
        var body = try await ResponseBytes.collect(response)
        #expect(body.last == UInt8(ascii: "\n"), "\(what): the body ends with a newline", sourceLocation: sourceLocation)
        if body.last == UInt8(ascii: "\n") { body.removeLast() }
        try expectSame(body, golden.body, what, sourceLocation: sourceLocation)
    }

    // MARK: - Messages

    @Test(arguments: Samples.messages.map(\.name))
    func listedMessage(_ name: String) throws {
        let message = try #require(Samples.messages.first { $0.name == name }?.message)
        try Self.expectSame(try Self.writeListed(message), try #require(Golden.listed[name]), "listed \(name)")
    }

    @Test(arguments: Samples.messages.map(\.name))
    func messageInDetail(_ name: String) throws {
        let message = try #require(Samples.messages.first { $0.name == name }?.message)
        try Self.expectSame(try Self.writeDetail(message), try #require(Golden.detail[name]), "detail \(name)")
    }

    @Test func messageList() throws {
        let all = Samples.messages.map(\.message)
        let golden = "{\"messages\":[" + Samples.messages.map { Golden.listed[$0.name] ?? "?" }.joined(separator: ",") + "]}"
        try Self.expectSame(try Self.writeList(all), golden, "all messages")
        try Self.expectSame(try Self.writeList([]), #"{"messages":[]}"#, "no messages")
    }

    /// A message value is the JSON it is: its bytes appear in the answer unchanged (numbers with all their
    /// digits, spaces and newlines where they were), not re-encoded and not turned into a string.
    @Test func messageValueIsEmbeddedVerbatim() throws {
        for (name, message) in Samples.messages {
            let text = String(decoding: try Self.writeDetail(message), as: UTF8.self)
            if let value = message.value, !value.isEmpty {
                #expect(text.contains(",\"value\":" + String(decoding: value, as: UTF8.self) + ",\"errors\":"), "\(name)")
            } else {
                #expect(text.contains(",\"value\":null,\"errors\":"), "\(name)")
            }
        }
        let text = String(decoding: try Self.writeDetail(Samples.messages[0].message), as: UTF8.self)
        for digits in ["19.990", "123456789012345678901234567890123456789012", "1E-400", "-1.5e+308", "-0.0", "1.10"] {
            #expect(text.contains(digits), "\(digits) kept as written")
        }
    }

    /// `sluice messages` without a running sluice lists what it reads from the state file: each message
    /// must be written exactly as the API lists it.
    @Test func offlineCommandWritesWhatTheAPIWrites() throws {
        let all = Samples.messages.map(\.message)
        let golden = try Samples.messages.map { try #require(Golden.listed[$0.name]) }
        try Self.expectSame(try MessageListJSON.encode(all), "[" + golden.joined(separator: ",") + "]", "sluice messages")
    }

    // MARK: - Status, backfills, errors

    @Test(arguments: Samples.statuses.map(\.name))
    func status(_ name: String) throws {
        let status = try #require(Samples.statuses.first { $0.name == name }?.status)
        try Self.expectSame(try Self.writeStatus(status), try #require(Golden.status[name]), "status \(name)")
    }

    /// With `state.store: postgres`: a leader names itself with its term and lease; a standby names the
    /// leader and has no stream of its own.
    @Test func statusOfALeaderAndOfAStandby() throws {
        let holder = LeaseHolder(instance: "sluice-a", term: 7, expiresAt: Date(timeIntervalSince1970: 1_796_000_000.25))
        let leader = HAStatus.Snapshot(role: .leader, instance: "sluice-a", leader: holder, electing: true)
        let status = try #require(Samples.statuses.first { $0.name == "no_sinks" }?.status)
        try Self.expectSame(try Self.writeStatus(status, ha: leader), try #require(Golden.status["ha_leader"]), "status ha_leader")
        let standby = HAStatus.Snapshot(role: .standby, instance: "sluice-b", leader: holder, electing: true)
        try Self.expectSame(try OrderedJSONEncoder().encode(StatusResponse(standby: standby)), try #require(Golden.status["ha_standby"]),
                            "status ha_standby")
        let noLeader = HAStatus.Snapshot(role: .standby, instance: "sluice-b", leader: nil, electing: true)
        try Self.expectSame(try OrderedJSONEncoder().encode(StatusResponse(standby: noLeader)),
                            try #require(Golden.status["ha_standby_no_leader"]), "status ha_standby_no_leader")
    }

    @Test(arguments: Samples.backfills.map(\.name))
    func backfill(_ name: String) throws {
        let record = try #require(Samples.backfills.first { $0.name == name }?.record)
        try Self.expectSame(try Self.writeBackfill(record), try #require(Golden.backfill[name]), "backfill \(name)")
    }

    @Test func backfillList() throws {
        try Self.expectSame(try Self.writeBackfills(Samples.backfills.map(\.record)), Golden.backfillList, "backfills")
        try Self.expectSame(try Self.writeBackfills([]), Golden.emptyBackfillList, "no backfills")
    }

    /// `POST /api/sinks/{sink}/backfills`: the backfill itself for one table, the list for several.
    @Test func startedBackfills() throws {
        let records = Samples.backfills.map(\.record)
        let one = try OrderedJSONEncoder().encode(BackfillsStartedResponse(started: [records[1]]))
        try Self.expectSame(one, try #require(Golden.backfill["completed"]), "one started")
        try Self.expectSame(try OrderedJSONEncoder().encode(BackfillsStartedResponse(started: records)), Golden.backfillList, "all started")
    }

    @Test(arguments: Samples.errors.map(\.name))
    func refusal(_ name: String) async throws {
        let sample = try #require(Samples.errors.first { $0.name == name })
        try await Self.expectSame(try await Self.errorResponse(status: sample.status, sample.message), try #require(Golden.errors[name]), name)
    }

    @Test(arguments: Samples.inspectionErrors.map(\.status))
    func inspectionRefusal(_ status: Int) async throws {
        let sample = try #require(Samples.inspectionErrors.first { $0.status == status })
        let response = try await Self.errorResponse(sample.error)
        try await Self.expectSame(response, try #require(Golden.inspectionErrors["\(sample.error.kind)"]), "\(sample.error.kind)")
    }

    @Test func createdAnswer() async throws {
        try await Self.expectSame(try await Self.createdResponse(), Golden.created, "201")
    }
}

/// A response's body, collected.
enum ResponseBytes {
    static func collect(_ response: Response) async throws -> [UInt8] {
        let collector = Collector()
        try await response.body.write(collector)
        return collector.box.bytes
    }

    final class Box: @unchecked Sendable { var bytes: [UInt8] = [] }

    struct Collector: ResponseBodyWriter {
        let box = Box()
        mutating func write(_ buffer: ByteBuffer) async throws { box.bytes += buffer.readableBytesView }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}

/// A request and a context for calling a response's `response(from:context:)` as the router does.
enum TestRequests {
    static let any = Request(head: HTTPRequest(method: .get, scheme: "http", authority: "127.0.0.1", path: "/api/status"),
                             body: RequestBody(buffer: ByteBuffer()))

    static func context() -> ConsoleRequestContext {
        ConsoleRequestContext(source: ApplicationRequestContextSource(channel: EmbeddedChannel(), logger: Logger(label: "console-tests")))
    }
}
