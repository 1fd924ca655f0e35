import Foundation
import Hummingbird
import Pipeline
import SluiceCore

/// The JSON API: status, messages by state, one message, retry and cancel.
struct APIRoutes: Sendable {
    let inspectors: InspectorSlot

    func register(on router: RouterGroup<BasicRequestContext>) {
        router.get("status") { _, _ in try self.status() }
        router.get("sinks/:sink/messages") { request, context in
            try self.messages(request, sink: context.parameters.require("sink"))
        }
        router.get("sinks/:sink/messages/:id") { _, context in
            let sink = try context.parameters.require("sink"), id = try context.parameters.require("id")
            return try self.answer { inspector in Self.encode(try inspector.message(sink: sink, id: id), detail: true) }
        }
        router.post("sinks/:sink/messages/:id/retry") { _, context in
            let sink = try context.parameters.require("sink"), id = try context.parameters.require("id")
            return try self.answer(status: .accepted) { inspector in Self.encode(try inspector.retry(sink: sink, id: id), detail: true) }
        }
        router.post("sinks/:sink/messages/:id/cancel") { _, context in
            let sink = try context.parameters.require("sink"), id = try context.parameters.require("id")
            return try self.answer { inspector in Self.encode(try inspector.cancel(sink: sink, id: id), detail: true) }
        }
        router.get("**") { request, _ in
            JSONResponse.error(.notFound, "no such API path: \(request.uri.path) — see the README's console section")
        }
        router.post("**") { request, _ in
            JSONResponse.error(.notFound, "no such API path: \(request.uri.path) — see the README's console section")
        }
    }

    // MARK: - Handlers

    private func status() throws -> Response {
        try answer { inspector in Self.encode(inspector.status()) }
    }

    private func messages(_ request: Request, sink: String) throws -> Response {
        let query = request.uri.queryParameters
        var states = MessageState.allCases
        if let text = query.get("state") {
            guard let state = MessageState(rawValue: String(text)) else {
                return JSONResponse.error(.badRequest, "state: \"\(text)\" — use in_flight, waiting, failing, delivered or cancelled")
            }
            states = [state]
        }
        var limit = 100
        if let text = query.get("limit") {
            guard let value = Int(String(text)), (1...MessageInspector.maxLimit).contains(value) else {
                return JSONResponse.error(.badRequest, "limit: \"\(text)\" — give a whole number from 1 to \(MessageInspector.maxLimit)")
            }
            limit = value
        }
        return try answer { inspector in
            var found: [InspectedMessage] = []
            for state in states where found.count < limit {
                do {
                    found += try inspector.messages(sink: sink, state: state, limit: limit - found.count)
                } catch let error as InspectionError where error.kind == .unavailable && states.count > 1 {
                    continue  // sluice stopped: in-flight and waiting are unknown, the rest still answers
                }
            }
            var json = JSONWriter(capacity: 256 * max(1, found.count))
            json.raw("{\"messages\":[")
            for (index, message) in found.enumerated() {
                if index > 0 { json.raw(UInt8(ascii: ",")) }
                message.write(to: &json, detail: false)
            }
            json.raw("]}")
            return json.bytes
        }
    }

    /// Runs a query against the live inspector; maps its errors to 404, 409, 400 and 503.
    private func answer(status: HTTPResponse.Status = .ok,
                        _ body: (MessageInspector) throws -> [UInt8]) throws -> Response {
        guard let inspector = inspectors.inspector else {
            return JSONResponse.error(.serviceUnavailable, "sluice is starting: the pipeline is not running yet")
        }
        do {
            return JSONResponse.ok(try body(inspector), status: status)
        } catch let error as InspectionError {
            return JSONResponse.error(error)
        }
    }

    // MARK: - JSON

    static func encode(_ message: InspectedMessage, detail: Bool) -> [UInt8] {
        var json = JSONWriter(capacity: 512 + (message.value?.count ?? 0))
        message.write(to: &json, detail: detail)
        return json.bytes
    }

    static func encode(_ status: MessageInspector.Status) -> [UInt8] {
        var json = JSONWriter(capacity: 512)
        json.raw("{\"database\":{\"name\":")
        json.string(status.databaseName)
        json.raw(",\"connected\":")
        json.bool(status.connected)
        json.raw("},\"slot\":{\"name\":")
        json.string(status.slotName)
        json.raw(",\"confirmed_flush_lsn\":")
        json.string(status.confirmedFlushLSN.description)
        json.raw(",\"lag_bytes\":")
        json.number(status.lagBytes)
        json.raw("},\"sinks\":[")
        for (index, sink) in status.sinks.enumerated() {
            if index > 0 { json.raw(UInt8(ascii: ",")) }
            json.raw("{\"name\":")
            json.string(sink.name)
            json.raw(",\"topic\":")
            json.string(sink.topic)
            json.raw(",\"counts\":{\"in_flight\":")
            json.number(sink.inFlight)
            json.raw(",\"waiting\":")
            json.number(sink.waiting)
            json.raw(",\"failing\":")
            json.number(sink.failing)
            json.raw(",\"delivered_total\":")
            json.number(sink.deliveredTotal)
            json.raw(",\"cancelled_total\":")
            json.number(sink.cancelledTotal)
            json.raw(",\"filtered_total\":")
            json.number(sink.filteredTotal)
            json.raw("},\"messages_per_second\":")
            json.raw(String(format: "%.1f", sink.messagesPerSecond).utf8)
            json.raw(UInt8(ascii: "}"))
        }
        json.raw("]}")
        return json.bytes
    }
}
