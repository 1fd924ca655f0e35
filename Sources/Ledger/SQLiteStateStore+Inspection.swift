import Foundation
import GRDB
import SluiceCore

/// Lookups for the console, the API and `sluice messages`: one message by position, its attempt
/// errors, and a user's cancel of a failing message.
extension SQLiteStateStore {
    public func parkedMessage(sink: String, position: MessagePosition) throws -> ParkedMessage? {
        try database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM parked WHERE sink = ? AND commit_lsn = ? AND commit_idx = ?",
                             arguments: [sink, Int64(bitPattern: position.commitLSN.rawValue), position.commitIndex]).map(Self.parked)
        }
    }

    public func deliveredMessage(sink: String, position: MessagePosition) throws -> DeliveredMessage? {
        try recentlyDelivered(sink: sink, limit: 1, where: "AND commit_lsn = ? AND commit_idx = ?",
                              arguments: [Int64(bitPattern: position.commitLSN.rawValue), position.commitIndex]).first
    }

    public func cancelledMessage(sink: String, position: MessagePosition) throws -> CancelledMessage? {
        try database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM cancelled WHERE sink = ? AND commit_lsn = ? AND commit_idx = ? ORDER BY id DESC LIMIT 1",
                             arguments: [sink, Int64(bitPattern: position.commitLSN.rawValue), position.commitIndex]).map(Self.cancelled)
        }
    }

    public func cancelledCount(sink: String) throws -> Int {
        try database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM cancelled WHERE sink = ?", arguments: [sink]) ?? 0 }
    }

    /// The errors of a message's failed attempts, newest first (at most 20 are kept).
    public func attemptErrors(sink: String, position: MessagePosition) throws -> [(at: Date, error: String)] {
        try database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT at, error FROM attempt_error WHERE sink = ? AND commit_lsn = ? AND commit_idx = ? ORDER BY id DESC LIMIT ?
                """, arguments: [sink, Int64(bitPattern: position.commitLSN.rawValue), position.commitIndex, StateLimits.errorsKept])
                .map { (Date(timeIntervalSince1970: $0["at"]), $0["error"]) }
        }
    }

    /// Gives up a parked message: removed from the parked messages and recorded as cancelled, in one
    /// transaction. Nil if it is not parked (any more).
    public func cancelParked(sink: String, position: MessagePosition, reason: String, action: String?,
                             recordPKs: [String]) throws -> CancelledMessage? {
        try database.write { db in
            let arguments: StatementArguments = [sink, Int64(bitPattern: position.commitLSN.rawValue), position.commitIndex]
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM parked WHERE sink = ? AND commit_lsn = ? AND commit_idx = ?",
                                             arguments: arguments) else { return nil }
            let parked = Self.parked(row)
            try db.execute(sql: "DELETE FROM parked WHERE sink = ? AND commit_lsn = ? AND commit_idx = ?", arguments: arguments)
            let cancelled = CancelledMessage(cancelling: parked, reason: reason, action: action, recordPKs: recordPKs)
            try Self.insertCancelled(db, cancelled)
            return cancelled
        }
    }
}
