import Foundation
import Hummingbird
import Ledger
import Pipeline
import SluiceCore

/// The backfill API: start (per sink), list, one, cancel.
struct BackfillRoutes: Sendable {
    let inspectors: InspectorSlot

    func register(on router: RouterGroup<BasicRequestContext>) {
        router.post("sinks/:sink/backfills") { request, context -> Response in
            let sink = try context.parameters.require("sink")
            let body = try await request.body.collect(upTo: 1 << 20)
            guard let manager = inspectors.inspector?.backfills else { return Self.starting }
            let object: [String: Any]
            if body.readableBytes == 0 {
                object = [:]
            } else {
                guard let parsed = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] else {
                    return JSONResponse.error(.badRequest, "the body must be a JSON object: {\"tables\": [...], \"sort_column\": ..., \"start_position\": ...}")
                }
                object = parsed
            }
            let tables: [String]
            switch object["tables"] {
            case nil, is NSNull: tables = []
            case let list as [String]: tables = list
            case let single as String: tables = [single]
            default: return JSONResponse.error(.badRequest, "tables: give a list of schema.table names")
            }
            let sortColumn = object["sort_column"] as? String
            let startPosition = object["start_position"].flatMap { $0 is NSNull ? nil : "\($0)" }
            // Checking the tables talks to PostgreSQL: off the event loop.
            let result: Result<[BackfillRecord], InspectionError> = await withCheckedContinuation { continuation in
                Thread.detachNewThread {
                    continuation.resume(returning: Result { () throws(InspectionError) in
                        try manager.start(sink: sink, tables: tables, sortColumn: sortColumn, startPosition: startPosition)
                    })
                }
            }
            switch result {
            case .success(let started) where started.count == 1:
                return JSONResponse.ok(Self.encode(started[0]), status: .created)
            case .success(let started):
                return JSONResponse.ok(Self.encodeList(started), status: .created)
            case .failure(let error):
                return JSONResponse.error(error)
            }
        }
        router.get("backfills") { request, _ -> Response in
            guard let manager = inspectors.inspector?.backfills else { return Self.starting }
            let sink = request.uri.queryParameters.get("sink").map { String($0) }
            return JSONResponse.ok(Self.encodeList(manager.list(sink: sink)))
        }
        router.get("backfills/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let manager = inspectors.inspector?.backfills else { return Self.starting }
            do { return JSONResponse.ok(Self.encode(try manager.backfill(id: id))) } catch let error as InspectionError {
                return JSONResponse.error(error)
            }
        }
        router.delete("backfills/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let manager = inspectors.inspector?.backfills else { return Self.starting }
            do { return JSONResponse.ok(Self.encode(try manager.cancel(id: id)), status: .accepted) } catch let error as InspectionError {
                return JSONResponse.error(error)
            }
        }
    }

    static var starting: Response { JSONResponse.error(.serviceUnavailable, "sluice is starting: the pipeline is not running yet") }

    static func encodeList(_ records: [BackfillRecord]) -> [UInt8] {
        var json = JSONWriter(capacity: 64 + 400 * records.count)
        json.raw("{\"backfills\":[")
        for (index, record) in records.enumerated() {
            if index > 0 { json.raw(UInt8(ascii: ",")) }
            write(record, to: &json)
        }
        json.raw("]}")
        return json.bytes
    }

    static func encode(_ record: BackfillRecord) -> [UInt8] {
        var json = JSONWriter(capacity: 400)
        write(record, to: &json)
        return json.bytes
    }

    static func write(_ record: BackfillRecord, to json: inout JSONWriter) {
        func optional(_ text: String?) { if let text { json.string(text) } else { json.null() } }
        json.raw("{\"id\":")
        json.string(record.id)
        json.raw(",\"sink\":")
        json.string(record.sink)
        json.raw(",\"table\":")
        json.string(record.table)
        json.raw(",\"state\":")
        json.string(record.state.rawValue)
        json.raw(",\"rows_initial_count\":")
        json.number(record.rowsInitialCount)
        json.raw(",\"rows_processed_count\":")
        json.number(record.rowsProcessedCount)
        json.raw(",\"rows_ingested_count\":")
        json.number(record.rowsIngestedCount)
        json.raw(",\"sort_column\":")
        optional(record.sortColumn)
        json.raw(",\"start_position\":")
        optional(record.startPosition)
        json.raw(",\"inserted_at\":")
        json.string(InspectedMessage.timestamp(record.insertedAt))
        json.raw(",\"completed_at\":")
        optional(record.completedAt.map(InspectedMessage.timestamp))
        json.raw(",\"canceled_at\":")
        optional(record.canceledAt.map(InspectedMessage.timestamp))
        json.raw(",\"last_error\":")
        optional(record.lastError)
        json.raw(UInt8(ascii: "}"))
    }
}
