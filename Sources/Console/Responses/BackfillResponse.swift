import Hummingbird
import Ledger
import Pipeline

/// One backfill (`GET /api/backfills/{id}`, and the answer to `DELETE`); the fields the backfills issue
/// fixed, null where they do not apply yet.
struct BackfillResponse: ResponseEncodable, Sendable {
    var id: String
    var sink: String
    var table: String
    var state: String
    var rowsInitialCount: Int
    var rowsProcessedCount: Int
    var rowsIngestedCount: Int
    @NullEncodable var sortColumn: String?
    @NullEncodable var startPosition: String?
    var insertedAt: String
    @NullEncodable var completedAt: String?
    @NullEncodable var canceledAt: String?
    @NullEncodable var lastError: String?

    enum CodingKeys: String, CodingKey {
        case id, sink, table, state, rowsInitialCount = "rows_initial_count", rowsProcessedCount = "rows_processed_count"
        case rowsIngestedCount = "rows_ingested_count", sortColumn = "sort_column", startPosition = "start_position"
        case insertedAt = "inserted_at", completedAt = "completed_at", canceledAt = "canceled_at", lastError = "last_error"
    }
}

extension BackfillResponse {
    init(_ record: BackfillRecord) {
        self.init(id: record.id, sink: record.sink, table: record.table, state: record.state.rawValue,
                  rowsInitialCount: record.rowsInitialCount, rowsProcessedCount: record.rowsProcessedCount,
                  rowsIngestedCount: record.rowsIngestedCount, sortColumn: record.sortColumn, startPosition: record.startPosition,
                  insertedAt: InspectedMessage.timestamp(record.insertedAt), completedAt: record.completedAt.map(InspectedMessage.timestamp),
                  canceledAt: record.canceledAt.map(InspectedMessage.timestamp), lastError: record.lastError)
    }
}

/// `GET /api/backfills`.
struct BackfillListResponse: ResponseEncodable, Sendable {
    var backfills: [BackfillResponse]

    init(_ records: [BackfillRecord]) { backfills = records.map(BackfillResponse.init) }
}

/// The answer to `POST /api/sinks/{sink}/backfills`: the backfill itself when one table was started,
/// `{"backfills": [...]}` when several were.
struct BackfillsStartedResponse: ResponseEncodable, Sendable {
    var started: [BackfillRecord]

    func encode(to encoder: any Encoder) throws {
        if started.count == 1 {
            try BackfillResponse(started[0]).encode(to: encoder)
        } else {
            try BackfillListResponse(started).encode(to: encoder)
        }
    }
}
