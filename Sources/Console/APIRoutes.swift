import ConsoleRequests
import Foundation
import Hummingbird
import Pipeline

/// The JSON API: status, messages by state, one message, retry and cancel.
struct APIRoutes: Sendable {
    let inspectors: InspectorSlot

    func register(on router: RouterGroup<ConsoleRequestContext>) {
        router.get("status") { _, _ in
            let ha = self.inspectors.ha.snapshot
            if ha.role == .standby { return StatusResponse(standby: ha) }
            return StatusResponse(try self.ask { $0.status() }, ha: ha)
        }
        router.get("sinks/:sink/messages") { request, context in
            try self.messages(request, sink: context.parameters.require("sink"))
        }
        router.get("sinks/:sink/messages/:id") { _, context in
            let sink = try context.parameters.require("sink"), id = try context.parameters.require("id")
            return MessageDetailResponse(try self.ask { try $0.message(sink: sink, id: id) })
        }
        router.post("sinks/:sink/messages/:id/retry") { _, context in
            let sink = try context.parameters.require("sink"), id = try context.parameters.require("id")
            return EditedResponse(status: .accepted, response: MessageDetailResponse(try self.ask { try $0.retry(sink: sink, id: id) }))
        }
        router.post("sinks/:sink/messages/:id/cancel") { _, context in
            let sink = try context.parameters.require("sink"), id = try context.parameters.require("id")
            return MessageDetailResponse(try self.ask { try $0.cancel(sink: sink, id: id) })
        }
        router.get("**") { request, _ -> Response in throw Self.noSuchPath(request) }
        router.post("**") { request, _ -> Response in throw Self.noSuchPath(request) }
    }

    static func noSuchPath(_ request: Request) -> APIError {
        APIError(.notFound, "no such API path: \(request.uri.path) — see the README's console section")
    }

    // MARK: - Handlers

    private func messages(_ request: Request, sink: String) throws -> MessageListResponse {
        let query = request.uri.queryParameters
        let list: MessageListQuery
        do throws(RequestError) {
            list = try MessageListQuery(state: query.get("state").map { String($0) }, limit: query.get("limit").map { String($0) })
        } catch {
            throw APIError(.badRequest, error.message)
        }
        let states = list.states, limit = list.limit
        return try ask { inspector in
            var found: [InspectedMessage] = []
            for state in states where found.count < limit {
                do {
                    found += try inspector.messages(sink: sink, state: state, limit: limit - found.count)
                } catch let error as InspectionError where error.kind == .unavailable && states.count > 1 {
                    continue  // sluice stopped: in-flight and waiting are unknown, the rest still answers
                }
            }
            return MessageListResponse(messages: found.map(MessageResponse.init))
        }
    }

    /// Asks the live inspector; its refusals become 404, 409, 400 or 503 (and 503 while sluice starts).
    private func ask<Answer>(_ question: (MessageInspector) throws -> Answer) throws -> Answer {
        guard let inspector = inspectors.inspector else { throw APIError.starting }
        do {
            return try question(inspector)
        } catch let error as InspectionError {
            throw APIError(error)
        }
    }
}
