import Foundation
import Hummingbird
import HummingbirdCore
import Ledger
import Logging
import NIOCore
import NIOEmbedded
@testable import Pipeline
@testable import SluiceCore

/// A stopped sluice's state file (a failing, two delivered and a cancelled message of sink `orders`)
/// behind the console's routes, and the requests a user or script sends to the API.
struct RouteScenario {
    static let password = "hunter2-secret"
    static let token = "console-t0ken-secret"

    let inspectors = InspectorSlot()
    let directory: URL

    static let failing = MessagePosition(commitLSN: LSN(24_023_128), commitIndex: 0)
    static let delivered = MessagePosition(commitLSN: LSN(24_023_300), commitIndex: 1)
    static let cancelled = MessagePosition(commitLSN: LSN(24_023_400), commitIndex: 0)

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("console-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("state.sqlite").path
        let ledger = try SQLiteStateStore(path: path)
        inspectors.ha.single(instance: "sluice-a")
        try ledger.park([ParkedMessage(sink: "orders", group: "7", position: Self.failing, table: "public.orders", topic: "orders",
                                       key: Array("7".utf8), value: Samples.messageValue, deliverCount: 2,
                                       lastError: "Local: Message timed out", parkedAt: Samples.date(1_764_410_400),
                                       lastAttemptAt: Samples.date(1_764_410_401.5))])
        try ledger.recordDelivered([
            DeliveredMessage(sink: "orders", group: "1", position: MessagePosition(commitLSN: LSN(24_023_200), commitIndex: 0),
                             table: "public.orders", topic: "orders", key: "1", size: 300, partition: 0, offset: 41, deliverCount: 1,
                             deliveredAt: Samples.date(1_764_410_402), action: "insert", recordPKs: ["1"]),
            DeliveredMessage(sink: "orders", group: "2", position: Self.delivered, table: "public.orders", topic: "orders", key: nil,
                             size: 301, partition: 2, offset: 42, deliverCount: 3, deliveredAt: Samples.date(1_764_410_403.25),
                             action: "update", recordPKs: ["2", "x"]),
        ])
        try ledger.recordCancelled(CancelledMessage(sink: "orders", group: "3", position: Self.cancelled, table: "public.docs", topic: "orders",
                                                    key: "3", size: 2_000_123, reason: "too_large", error: "",
                                                    cancelledAt: Samples.date(1_764_410_404), action: "insert", recordPKs: ["3"],
                                                    deliverCount: 0, value: Samples.spacedValue))
        let database = DatabaseConfig(connectionParameters: [("host", "127.0.0.1"), ("dbname", "app"), ("password", Self.password)],
                                      slotName: "sluice_slot", publicationName: "sluice")
        let sink = SinkConfig(name: "orders", destination: KafkaDestination(hosts: [HostPort(host: "127.0.0.1", port: 9092)], topic: "orders",
                                                                            username: "app", password: Self.password))
        let config = SluiceConfig(database: database, statePath: path, console: nil, sinks: [sink])
        inspectors.set(MessageInspector(offline: ledger, config: config))
    }

    func removeFiles() { try? FileManager.default.removeItem(at: directory) }

    enum Auth: Sendable { case open, none, wrong, right }

    /// What is asked: method, path, the token sent (or an open console), body.
    struct Call: Sendable, CustomStringConvertible {
        var method: HTTPRequest.Method
        var path: String
        var auth: Auth = .open
        var body: String = ""

        var description: String { "\(method) \(path) \(auth)\(body.isEmpty ? "" : " " + body)" }

        var request: Request {
            var headers = HTTPFields()
            switch auth {
            case .open, .none: break
            case .wrong: headers[.authorization] = "Bearer wrong"
            case .right: headers[.authorization] = "Bearer \(RouteScenario.token)"
            }
            return Request(head: HTTPRequest(method: method, scheme: "http", authority: "127.0.0.1", path: path, headerFields: headers),
                           body: RequestBody(buffer: ByteBuffer(string: body)))
        }
    }

    static let failingID = "24023128-0", deliveredID = "24023300-1", cancelledID = "24023400-0"

    static let calls: [Call] = [
        Call(method: .get, path: "/api/status"),
        Call(method: .get, path: "/api/sinks/orders/messages"),
        Call(method: .get, path: "/api/sinks/orders/messages?state=delivered&limit=1"),
        Call(method: .get, path: "/api/sinks/orders/messages?state=failing"),
        Call(method: .get, path: "/api/sinks/orders/messages?state=cancelled&limit=1000"),
        Call(method: .get, path: "/api/sinks/orders/messages?state=in_flight"),
        Call(method: .get, path: "/api/sinks/orders/messages?state=parked"),
        Call(method: .get, path: "/api/sinks/orders/messages?limit=0"),
        Call(method: .get, path: "/api/sinks/orders/messages?limit=ten"),
        Call(method: .get, path: "/api/sinks/nope/messages"),
        Call(method: .get, path: "/api/sinks/orders/messages/\(failingID)"),
        Call(method: .get, path: "/api/sinks/orders/messages/\(deliveredID)"),
        Call(method: .get, path: "/api/sinks/orders/messages/\(cancelledID)"),
        Call(method: .get, path: "/api/sinks/orders/messages/1-0"),
        Call(method: .get, path: "/api/sinks/orders/messages/not-an-id"),
        Call(method: .post, path: "/api/sinks/orders/messages/\(failingID)/retry"),
        Call(method: .post, path: "/api/sinks/orders/messages/\(failingID)/cancel"),
        Call(method: .post, path: "/api/sinks/nope/messages/\(failingID)/cancel"),
        Call(method: .get, path: "/api/backfills"),
        Call(method: .get, path: "/api/backfills/c1"),
        Call(method: .delete, path: "/api/backfills/c1"),
        Call(method: .post, path: "/api/sinks/orders/backfills", body: #"{"tables": ["public.orders"]}"#),
        Call(method: .get, path: "/api/nothing-here"),
        Call(method: .post, path: "/api/nothing/here"),
        Call(method: .get, path: "/api/status", auth: .none),
        Call(method: .get, path: "/api/status", auth: .wrong),
        Call(method: .get, path: "/api/status", auth: .right),
        Call(method: .get, path: "/api/sinks/orders/messages/\(failingID)", auth: .none),
        Call(method: .post, path: "/api/sinks/orders/messages/\(failingID)/retry", auth: .wrong),
        Call(method: .get, path: "/metrics", auth: .none),
    ]
}

