import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import Prometheus
@testable import Console
@testable import Pipeline
import Testing

/// The console's routes, called as the server calls them, against a stopped sluice's state file: each
/// answer is what the routes answered before Codable (`RouteGolden`) — status, headers, and body byte
/// for byte and field for field — and none holds a secret.
struct RouteTests {
    @Test func answersAsBefore() async throws {
        let scenario = try RouteScenario()
        defer { scenario.removeFiles() }
        func responder(token: String) -> some HTTPResponder<ConsoleRequestContext> {
            ConsoleServer.router(token: token, inspectors: scenario.inspectors, registry: PrometheusCollectorRegistry(),
                                 logger: Logger(label: "console-tests")).buildResponder()
        }
        let open = responder(token: ""), closed = responder(token: RouteScenario.token)
        #expect(RouteScenario.calls.count == RouteGolden.answers.count)
        for call in RouteScenario.calls {
            let golden = try #require(RouteGolden.answers[call.description], "\(call)")
            let response = call.auth == .open ? try await open.respond(to: call.request, context: TestRequests.context())
                                              : try await closed.respond(to: call.request, context: TestRequests.context())
            #expect(response.status.code == golden.status, "\(call): status")
            #expect("\(response.headers)" == golden.headers, "\(call): headers")
            var body = try await ResponseBytes.collect(response)
            #expect(body.last == UInt8(ascii: "\n"), "\(call): a final newline")
            if body.last == UInt8(ascii: "\n") { body.removeLast() }
            let text = String(decoding: body, as: UTF8.self)
            #expect(!text.contains(RouteScenario.password) && !text.contains(RouteScenario.token), "\(call): a secret in \(text)")
            // An attempt error is recorded with the time it was parked: the time is checked, then set aside.
            let times = try NSRegularExpression(pattern: #""at":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)""#)
            let range = NSRange(text.startIndex..., in: text)
            for match in times.matches(in: text, range: range) {
                let time = (text as NSString).substring(with: match.range(at: 1))
                #expect(ISO8601DateFormatter.withMilliseconds.date(from: time) != nil, "\(call): \(time)")
            }
            let comparable = times.stringByReplacingMatches(in: text, range: range, withTemplate: #""at":"<time>""#)
            try APIContractTests.expectSame(Array(comparable.utf8), golden.body, "\(call)")
        }
    }
}

extension ISO8601DateFormatter {
    static var withMilliseconds: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
