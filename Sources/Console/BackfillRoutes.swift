import ConsoleRequests
import Foundation
import Hummingbird
import Ledger
import Pipeline

/// The backfill API: start (per sink), list, one, cancel.
struct BackfillRoutes: Sendable {
    let inspectors: InspectorSlot

    func register(on router: RouterGroup<ConsoleRequestContext>) {
        router.post("sinks/:sink/backfills") { request, context in
            let sink = try context.parameters.require("sink")
            let body = try await request.body.collect(upTo: 1 << 20)
            guard let manager = inspectors.inspector?.backfills else { throw APIError.starting }
            let start: BackfillStartRequest
            do throws(RequestError) {
                start = try BackfillStartRequest(body: Data(buffer: body))
            } catch {
                throw APIError(.badRequest, error.message)
            }
            // Checking the tables talks to PostgreSQL: off the event loop.
            let result: Result<[BackfillRecord], InspectionError> = await withCheckedContinuation { continuation in
                Thread.detachNewThread {
                    continuation.resume(returning: Result { () throws(InspectionError) in
                        try manager.start(sink: sink, tables: start.tables, sortColumn: start.sortColumn, startPosition: start.startPosition)
                    })
                }
            }
            switch result {
            case .success(let started): return EditedResponse(status: .created, response: BackfillsStartedResponse(started: started))
            case .failure(let error): throw APIError(error)
            }
        }
        router.get("backfills") { request, _ in
            guard let manager = inspectors.inspector?.backfills else { throw APIError.starting }
            return BackfillListResponse(manager.list(sink: request.uri.queryParameters.get("sink").map { String($0) }))
        }
        router.get("backfills/:id") { _, context in
            let id = try context.parameters.require("id")
            guard let manager = inspectors.inspector?.backfills else { throw APIError.starting }
            do { return BackfillResponse(try manager.backfill(id: id)) } catch let error as InspectionError { throw APIError(error) }
        }
        router.delete("backfills/:id") { _, context in
            let id = try context.parameters.require("id")
            guard let manager = inspectors.inspector?.backfills else { throw APIError.starting }
            do {
                return EditedResponse(status: .accepted, response: BackfillResponse(try manager.cancel(id: id)))
            } catch let error as InspectionError {
                throw APIError(error)
            }
        }
    }
}
