import Foundation
import SluiceCore

/// Everything sluice keeps between runs: parked messages (durable, so the slot may advance past
/// them), the last 1,000 delivered and every cancelled message per sink, attempt errors, recent bodies,
/// backfills and their cursors. A write returns once it is durable (an fsynced SQLite commit, a
/// committed PostgreSQL transaction); a write that throws left nothing behind.
public protocol StateStore: AnyObject, Sendable {
    /// Where the state lives, for messages: the SQLite file's path, or the PostgreSQL schema.
    var location: String { get }

    // Parked
    /// Parks, unparks and records attempts in one transaction; a message already parked (same sink and
    /// position) is kept as it was.
    func apply(park messages: [ParkedMessage], unpark positions: [MessagePosition],
               attempts: [(position: MessagePosition, deliverCount: Int, error: String)], sink: String) throws
    /// Groups with parked messages, and how many each holds.
    func parkedGroups(sink: String) throws -> [String: Int]
    /// The oldest parked message of a group: the next to deliver.
    func firstParked(sink: String, group: String) throws -> ParkedMessage?
    /// Parked messages of a sink in stream order.
    func parked(sink: String, limit: Int) throws -> [ParkedMessage]
    func parkedCount(sink: String) throws -> Int
    func parkedMessage(sink: String, position: MessagePosition) throws -> ParkedMessage?
    /// The errors of a message's failed attempts, newest first (at most `StateLimits.errorsKept`).
    func attemptErrors(sink: String, position: MessagePosition) throws -> [(at: Date, error: String)]
    /// Gives up a parked message: unparked and recorded as cancelled in one transaction; nil if it is not parked.
    func cancelParked(sink: String, position: MessagePosition, reason: String, action: String?,
                      recordPKs: [String]) throws -> CancelledMessage?

    // Delivered and recent bodies
    /// Appends delivered messages and keeps only the newest `StateLimits.deliveredKept` per sink.
    func recordDelivered(_ messages: [DeliveredMessage]) throws
    /// The newest delivered messages of a sink, newest first.
    func recentlyDelivered(sink: String, limit: Int) throws -> [DeliveredMessage]
    func deliveredMessage(sink: String, position: MessagePosition) throws -> DeliveredMessage?
    /// Replaces a sink's kept bodies with these (oldest first), keeping the newest `StateLimits.recentBodiesKept`.
    func replaceRecentBodies(sink: String, _ bodies: [[UInt8]]) throws
    /// The bodies of the newest delivered messages of a sink, newest first.
    func recentBodies(sink: String, limit: Int) throws -> [[UInt8]]

    // Cancelled
    func recordCancelled(_ message: CancelledMessage) throws
    /// Cancelled messages of a sink, newest first.
    func cancelled(sink: String, limit: Int) throws -> [CancelledMessage]
    func cancelledMessage(sink: String, position: MessagePosition) throws -> CancelledMessage?
    func cancelledCount(sink: String) throws -> Int

    // Backfills
    /// Inserts or replaces a backfill.
    func save(_ backfill: BackfillRecord) throws
    /// Backfills, newest first; of one sink or (nil) all.
    func backfills(sink: String?) throws -> [BackfillRecord]
    func backfill(id: String) throws -> BackfillRecord?
    /// Records that a sink exists; true the first time (when its `initial_backfill` runs).
    func markSeen(sink: String) throws -> Bool

    /// One line for the operator when a write failed: where, why, and what to do.
    func explainWriteFailure(_ error: Error, needing bytes: Int, for purpose: String) -> String

    // Copying between stores (`sluice state copy`)
    /// Everything the store holds (the PostgreSQL store: of its slot), read at one moment.
    func snapshot() throws -> StateSnapshot
    /// Writes a snapshot in one transaction, keeping positions and timestamps; throws, naming the table, when
    /// this store already holds parked messages or backfills.
    func restore(_ snapshot: StateSnapshot) throws
}

/// A list of strings as both stores keep it (`record_pks`, a backfill's cursor): JSON text.
enum StateList {
    static func encode(_ values: [String]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: values)) ?? Data("[]".utf8), as: UTF8.self)
    }

    /// Nil when the text is not a JSON list of strings.
    static func decode(_ text: String) -> [String]? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String]
    }
}

/// How much of each kind the state keeps.
public enum StateLimits {
    /// Delivered messages kept per sink.
    public static let deliveredKept = 1_000
    /// Message bodies (before the sink's functions) kept per sink for `sluice fn test --recent`.
    public static let recentBodiesKept = 20
    /// Attempt errors kept per message (newest).
    public static let errorsKept = 20
}

extension StateStore {
    /// Writes messages durably; a message already parked (same sink and position) is kept as it was.
    public func park(_ messages: [ParkedMessage]) throws {
        for (sink, group) in Dictionary(grouping: messages, by: \.sink) {
            try apply(park: group, unpark: [], attempts: [], sink: sink)
        }
    }

    /// Removes a parked message once it was delivered or cancelled.
    public func unpark(sink: String, position: MessagePosition) throws {
        try apply(park: [], unpark: [position], attempts: [], sink: sink)
    }

    /// Records a failed attempt of a parked message.
    public func recordAttempt(sink: String, position: MessagePosition, deliverCount: Int, error: String) throws {
        try apply(park: [], unpark: [], attempts: [(position, deliverCount, error)], sink: sink)
    }

    public func parked(sink: String) throws -> [ParkedMessage] { try parked(sink: sink, limit: 1_000) }
    public func recentlyDelivered(sink: String) throws -> [DeliveredMessage] { try recentlyDelivered(sink: sink, limit: 100) }
    public func recentBodies(sink: String) throws -> [[UInt8]] { try recentBodies(sink: sink, limit: StateLimits.recentBodiesKept) }
    public func cancelled(sink: String) throws -> [CancelledMessage] { try cancelled(sink: sink, limit: 1_000) }
    public func backfills() throws -> [BackfillRecord] { try backfills(sink: nil) }
}

/// Why a store refused a write or could not open: a code to match on and a sentence for the operator.
public struct StateStoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// This instance may not write the shared state (a standby, or a leader whose term ended).
        case notLeader
        /// `state.schema` is not a name the store can use.
        case invalidSchema
        /// `restore` found state already there.
        case notEmpty
        /// The store's database cannot be reached or refused to open the state.
        case unavailable
        /// The database answered with something the store cannot read.
        case unreadable
    }

    public var code: Code
    public var message: String
    public var description: String { message }

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A write by an instance that is not the leader; `detail` says why it is not (standby, term ended).
    public static func notLeader(_ detail: String) -> StateStoreError {
        StateStoreError(.notLeader, "this instance is not the leader (\(detail)); it does not write the shared state")
    }

    public var isNotLeader: Bool { code == .notLeader }

    /// `restore` into a store whose `table` already holds `count` rows.
    static func notEmpty(_ location: String, table: String, count: Int) -> StateStoreError {
        StateStoreError(.notEmpty, "cannot restore into \(location): its table \(table) already holds \(count) row(s) — "
                            + "copy into a store without parked messages or backfills (a new state file, another schema)")
    }
}
