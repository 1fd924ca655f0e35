import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import Prometheus
@testable import Console
@testable import Pipeline
import Testing

/// A standby (with `state.store: postgres`) has no stream of its own: its console says who leads, on
/// the API and at the top of every page, instead of "starting".
struct StandbyRouteTests {
    func get(_ path: String, inspectors: InspectorSlot) async throws -> (status: Int, body: String) {
        let responder = ConsoleServer.router(token: "", inspectors: inspectors, registry: PrometheusCollectorRegistry(),
                                             logger: Logger(label: "console-tests")).buildResponder()
        let request = Request(head: HTTPRequest(method: .get, scheme: "http", authority: "127.0.0.1", path: path),
                              body: RequestBody(buffer: ByteBuffer()))
        let response = try await responder.respond(to: request, context: TestRequests.context())
        return (response.status.code, String(decoding: try await ResponseBytes.collect(response), as: UTF8.self))
    }

    @Test func aStandbyNamesTheLeaderOnTheAPIAndOnEveryPage() async throws {
        let inspectors = InspectorSlot()
        inspectors.ha.standby(instance: "sluice-b", leader: LeaseHolder(instance: "sluice-a", term: 3,
                                                                         expiresAt: Date(timeIntervalSince1970: 1_796_000_000)))
        let status = try await get("/api/status", inspectors: inspectors)
        #expect(status.status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any])
        #expect(json["role"] as? String == "standby" && json["instance"] as? String == "sluice-b")
        #expect((json["leader"] as? [String: Any])?["instance"] as? String == "sluice-a")

        let page = try await get("/", inspectors: inspectors)
        #expect(page.status == 200, "a standby is not starting: it answers")
        #expect(page.body.contains("standby · sluice-b · leader sluice-a · lease until 2026-11-30T00:53:20.000Z"), "\(page.body)")
        #expect(page.body.contains("standing by: another instance streams this slot"))
    }

    @Test func aLeaderShowsItselfAndItsLease() async throws {
        let inspectors = InspectorSlot()
        inspectors.ha.single(instance: "sluice-a")
        let page = try await get("/", inspectors: inspectors)
        #expect(page.body.contains("leader · sluice-a"), "\(page.body)")
        #expect(!page.body.contains("lease until"), "no lease without high availability")
    }
}
