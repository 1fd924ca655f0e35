import Foundation

/// The body of `POST /api/sinks/:sink/backfills`: `{"tables": [...], "sort_column": ..., "start_position": ...}`,
/// every field optional (an empty body starts a full backfill of all the sink's tables). Read here,
/// without a server, so that hostile bodies can be fuzzed; what the fields mean is checked by the
/// backfill manager.
public struct BackfillStartRequest: Equatable, Sendable {
    /// `schema.table` texts as given (a single string is a list of one); empty: all the sink's tables.
    public var tables: [String]
    public var sortColumn: String?
    /// Any JSON scalar, as text (`5`, `"2026-01-01"`).
    public var startPosition: String?

    public init(tables: [String] = [], sortColumn: String? = nil, startPosition: String? = nil) {
        self.tables = tables
        self.sortColumn = sortColumn
        self.startPosition = startPosition
    }

    public init(body: Data) throws(RequestError) {
        let object: [String: Any]
        if body.isEmpty {
            object = [:]
        } else {
            guard let parsed = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
                throw RequestError("the body must be a JSON object: {\"tables\": [...], \"sort_column\": ..., \"start_position\": ...}")
            }
            object = parsed
        }
        switch object["tables"] {
        case nil, is NSNull: tables = []
        case let list as [String]: tables = list
        case let single as String: tables = [single]
        default: throw RequestError("tables: give a list of schema.table names")
        }
        sortColumn = object["sort_column"] as? String
        startPosition = object["start_position"].flatMap { $0 is NSNull ? nil : "\($0)" }
    }
}
