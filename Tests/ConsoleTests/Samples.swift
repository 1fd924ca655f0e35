import Foundation
import Ledger
@testable import Pipeline
import SluiceCore

/// Representative answers of the API: a message in each state, the status, backfills and errors. The
/// values hold what has gone wrong in JSON before: quotes, backslashes, slashes, control characters,
/// non-ASCII text, null against absent, and message values whose numbers must keep their exact digits.
enum Samples {
    static func date(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }

    /// A Sequin-shaped message value with numbers Foundation would rewrite (19.990, 42-digit integers,
    /// exponents, -0.0) and strings that need escaping.
    static let messageValue = Array(#"""
        {"record":{"id":7,"price":19.990,"big":123456789012345678901234567890123456789012,"tiny":1E-400,"huge":-1.5e+308,"zero":-0.0,"note":"a\"b\\c/d \u00e9 é 😀 \u0001","tags":["x",1,true,null],"payload":{"nested":[{"a":1.10}]}},"changes":null,"action":"insert","metadata":{"table_schema":"public","table_name":"orders","commit_timestamp":"2026-11-29T10:00:00.123456Z","commit_lsn":24023128,"commit_idx":0,"idempotency_key":"MjQwMjMxMjg6MA==","database_name":"app","transaction_annotations":null,"record_pks":["7"],"consumer":{"id":"6f1c","name":"orders","annotations":{}}}}
        """#.utf8)

    /// A transform's output, written with spaces and a newline: embedded exactly as it is.
    static let spacedValue = Array("{ \"id\" : 1,\n  \"amount\" : 100.000, \"ids\" : [ 18446744073709551616 ] }".utf8)

    static let messages: [(name: String, message: InspectedMessage)] = [
        ("in_flight", InspectedMessage(
            position: MessagePosition(commitLSN: LSN(24_023_128), commitIndex: 0), state: .inFlight, table: "public.orders",
            action: "insert", recordPKs: ["7"], key: "7", topic: "orders", deliverCount: 1, lastError: nil,
            lastAttemptAt: date(1_764_410_400.123), nextAttemptAt: nil, sizeBytes: messageValue.count, partition: nil, offset: nil,
            reason: nil, value: messageValue, errors: nil)),
        ("waiting", InspectedMessage(
            position: MessagePosition(commitLSN: LSN(24_023_128), commitIndex: 1), state: .waiting, table: "public.order_lines",
            action: "update", recordPKs: ["7", "a:b"], key: nil, topic: "orders", deliverCount: 0, lastError: nil,
            lastAttemptAt: nil, nextAttemptAt: nil, sizeBytes: spacedValue.count, partition: nil, offset: nil, reason: nil,
            value: spacedValue, errors: nil)),
        ("failing", InspectedMessage(
            position: MessagePosition(commitLSN: LSN(UInt64.max), commitIndex: 12), state: .failing, table: "app.\"Weird Table\"",
            action: nil, recordPKs: [], key: "tab\there\u{1}\u{7F}", topic: "tenant/42", deliverCount: 4,
            lastError: "Local: Message timed out (\"orders\" [0])\nsecond line \\ end", lastAttemptAt: date(1_764_410_401.0005),
            nextAttemptAt: date(1_764_410_409.999), sizeBytes: messageValue.count, partition: nil, offset: nil, reason: nil,
            value: messageValue,
            errors: [(date(1_764_410_401.0005), "Local: Message timed out"), (date(1_764_410_399), "functions[0].code:2: poison / \"bad\""),
                     (date(946_684_800), "first")])),
        ("delivered", InspectedMessage(
            position: MessagePosition(commitLSN: LSN(0), commitIndex: 0), state: .delivered, table: "public.users",
            action: "delete", recordPKs: ["ü"], key: "ü", topic: "users", deliverCount: 2, lastError: nil,
            lastAttemptAt: date(1_764_410_402.5), nextAttemptAt: nil, sizeBytes: 0, partition: 3, offset: Int64.max, reason: nil,
            value: nil, errors: [])),
        ("delivered_kept", InspectedMessage(
            position: MessagePosition(commitLSN: LSN(99), commitIndex: 3), state: .delivered, table: "public.users",
            action: "read", recordPKs: ["1"], key: "1", topic: "users", deliverCount: 1, lastError: nil,
            lastAttemptAt: date(1_764_410_403), nextAttemptAt: nil, sizeBytes: spacedValue.count, partition: 0, offset: 0,
            reason: nil, value: spacedValue, errors: nil)),
        ("cancelled_too_large", InspectedMessage(
            position: MessagePosition(commitLSN: LSN(500), commitIndex: 2), state: .cancelled, table: "public.docs",
            action: "insert", recordPKs: ["1"], key: "1", topic: "docs", deliverCount: 0, lastError: nil,
            lastAttemptAt: date(1_764_410_404), nextAttemptAt: nil, sizeBytes: 2_000_123, partition: nil, offset: nil,
            reason: "too_large", value: [], errors: nil)),
        ("cancelled_user", InspectedMessage(
            position: MessagePosition(commitLSN: LSN(501), commitIndex: 0), state: .cancelled, table: "public.t",
            action: "insert", recordPKs: ["1"], key: "1", topic: "t", deliverCount: 3,
            lastError: "functions[0].code:2: poison is not allowed", lastAttemptAt: date(1_764_410_405.25), nextAttemptAt: nil,
            sizeBytes: messageValue.count, partition: nil, offset: nil, reason: "user", value: messageValue,
            errors: [(date(1_764_410_405.25), "functions[0].code:2: poison is not allowed")])),
    ]

    /// One instance on a SQLite state file: it leads, with no lease.
    static let singleInstance = HAStatus.Snapshot(role: .leader, instance: "sluice-a", leader: nil, electing: false)

    static let statuses: [(name: String, status: MessageInspector.Status)] = [
        ("two_sinks", MessageInspector.Status(
            databaseName: "app \"main\"", connected: true, slotName: "sluice_slot", confirmedFlushLSN: LSN(24_023_128),
            lagBytes: 123_456, sinks: [
                MessageInspector.SinkStatus(name: "orders", topic: "orders", inFlight: 3, waiting: 10, failing: 1, deliveredTotal: 1_000_000,
                                            cancelledTotal: 2, filteredTotal: 7, messagesPerSecond: 12.345),
                MessageInspector.SinkStatus(name: "users/eu", topic: "", inFlight: 0, waiting: 0, failing: 0, deliveredTotal: 0,
                                            cancelledTotal: 0, filteredTotal: 0, messagesPerSecond: 3),
            ])),
        ("stopped", MessageInspector.Status(
            databaseName: "", connected: false, slotName: "s", confirmedFlushLSN: LSN(0), lagBytes: UInt64.max,
            sinks: [MessageInspector.SinkStatus(name: "m", topic: "t", inFlight: 0, waiting: 0, failing: 0, deliveredTotal: 5,
                                                cancelledTotal: 0, filteredTotal: 0, messagesPerSecond: 0.25)])),
        ("exactly_once", MessageInspector.Status(
            databaseName: "app", connected: true, slotName: "sluice", confirmedFlushLSN: LSN(0x16B_3748), lagBytes: 0,
            sinks: [MessageInspector.SinkStatus(
                name: "orders", topic: "orders", inFlight: 2, waiting: 0, failing: 0, deliveredTotal: 40, cancelledTotal: 1, filteredTotal: 0,
                messagesPerSecond: 4, delivery: "exactly_once",
                transactions: MessageInspector.TransactionStatus(
                    transactionalID: "sluice-sluice-orders", offsetsTopic: "sluice.offsets",
                    committedPosition: MessagePosition(commitLSN: LSN(0x16B_3700), commitIndex: 3), state: "waiting",
                    lastError: "Broker: Request timed out (REQUEST_TIMED_OUT)")),
                    MessageInspector.SinkStatus(
                name: "fresh", topic: "fresh", inFlight: 0, waiting: 0, failing: 0, deliveredTotal: 0, cancelledTotal: 0, filteredTotal: 0,
                messagesPerSecond: 0, delivery: "exactly_once",
                transactions: MessageInspector.TransactionStatus(transactionalID: "t", offsetsTopic: "o", committedPosition: nil,
                                                                 state: "idle", lastError: nil)),
            ])),
        ("no_sinks", MessageInspector.Status(databaseName: "db", connected: true, slotName: "s", confirmedFlushLSN: LSN(0x16B_3748),
                                            lagBytes: 0, sinks: [])),
    ]

    static let backfills: [(name: String, record: BackfillRecord)] = [
        ("active", BackfillRecord(id: "0b7f3c2e-1d2a-4a57-9a1e-3f3c2e1d2a4a", sink: "orders", table: "public.orders",
                                  rowsInitialCount: 1_000, rowsProcessedCount: 250, rowsIngestedCount: 240,
                                  insertedAt: date(1_764_410_400.001))),
        ("completed", BackfillRecord(id: "c1", sink: "orders", table: "public.order_lines", state: .completed, sortColumn: "updated_at",
                                     startPosition: "2026-01-01 00:00:00", cursor: ["x"], rowsInitialCount: 3, rowsProcessedCount: 3,
                                     rowsIngestedCount: 3, insertedAt: date(1_764_410_400), completedAt: date(1_764_410_460.5))),
        ("cancelled", BackfillRecord(id: "c2", sink: "s", table: "public.t", state: .cancelled, insertedAt: date(1_764_410_400),
                                     canceledAt: date(1_764_410_401.999))),
        ("failed", BackfillRecord(id: "c3", sink: "s", table: "public.\"T\"", state: .failed, sortColumn: "id", startPosition: "10",
                                  insertedAt: date(1_764_410_400), completedAt: nil,
                                  lastError: "ERROR:  column \"id\" does not exist\nLINE 1: SELECT \"id\"")),
    ]

    /// The refusals the routes give: status code and message.
    static let errors: [(name: String, status: Int, message: String)] = [
        ("starting", 503, "sluice is starting: the pipeline is not running yet"),
        ("no_path", 404, "no such API path: /api/nothing-here — see the README's console section"),
        ("bad_state", 400, "state: \"parked\" — use in_flight, waiting, failing, delivered or cancelled"),
        ("bad_limit", 400, "limit: \"ten\" — give a whole number from 1 to 1000"),
        ("no_token", 401, "send Authorization: Bearer <console.token>"),
        ("conflict", 409, "message 1-0 is cancelled; only failing messages can be retried"),
        ("body", 400, "the body must be a JSON object: {\"tables\": [...], \"sort_column\": ..., \"start_position\": ...}"),
        ("control", 404, "no sink named a\u{1}b\tc\\d — sinks: s"),
    ]

    /// An inspector's refusal of each kind and the status it becomes.
    static let inspectionErrors: [(error: InspectionError, status: Int)] = [
        (InspectionError(.notFound, "no sink named nope — sinks: s"), 404),
        (InspectionError(.conflict, "message 1-0 is no longer failing"), 409),
        (InspectionError(.badRequest, "tables: public.nope is not in sink s"), 400),
        (InspectionError(.unavailable, "could not read the state file: disk I/O error"), 503),
    ]
}
