import CLibPQ
import Foundation
import SluiceCore

/// What the walsender sends inside the COPY BOTH stream.
public enum ReplicationEvent: Sendable {
    /// A pgoutput message and the WAL positions around it.
    case xlogData(walStart: LSN, walEnd: LSN, payload: [UInt8])
    /// The server's end of WAL; `replyRequested` asks for a status update now.
    case keepalive(walEnd: LSN, replyRequested: Bool)
}

/// The logical replication protocol over one libpq walsender connection: IDENTIFY_SYSTEM,
/// START_REPLICATION, reading XLogData and keepalives, sending standby status updates.
public final class ReplicationStream {
    public struct SystemIdentity: Sendable {
        public var systemID: String
        public var timeline: Int
        public var walPosition: LSN
        public var databaseName: String
    }

    let connection: PostgresConnection

    public init(parameters: [(String, String)]) throws(PostgresError) {
        connection = try PostgresConnection(parameters: parameters, replication: true, applicationName: "sluice")
    }

    public func identifySystem() throws(PostgresError) -> SystemIdentity {
        let result = try connection.simpleQuery("IDENTIFY_SYSTEM")
        return SystemIdentity(
            systemID: result.value("systemid") ?? "",
            timeline: Int(result.value("timeline") ?? "") ?? 0,
            walPosition: result.value("xlogpos").flatMap { LSN($0) } ?? .zero,
            databaseName: result.value("dbname") ?? ""
        )
    }

    /// Starts streaming from the slot; `from: .zero` means "where the slot's confirmed flush LSN is".
    /// With `streaming`, large in-progress transactions arrive in chunks (protocol 2) instead of
    /// being held by the walsender until they commit.
    public func start(slot: String, publication: String, from lsn: LSN = .zero, streaming: Bool = true) throws(PostgresError) {
        let publicationList = PostgresConnection.quoteIdentifier(publication).replacingOccurrences(of: "'", with: "''")
        let protocolOptions = streaming ? "proto_version '2', streaming 'on'" : "proto_version '1'"
        let command = "START_REPLICATION SLOT \(PostgresConnection.quoteIdentifier(slot)) LOGICAL \(lsn) "
            + "(\(protocolOptions), publication_names '\(publicationList)', messages 'true')"
        guard let result = PQexec(connection.handle, command) else {
            throw PostgresError(.replication, connection.lastError)
        }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_COPY_BOTH else {
            let message = PostgresConnection.trimmed(String(cString: PQresultErrorMessage(result)))
            throw PostgresError(.replication, "START_REPLICATION failed: \(message)", sqlState: Self.sqlState(of: result))
        }
    }

    /// Waits up to `timeout` seconds for the next event; nil when none arrived in time.
    public func next(timeout: Double) throws(PostgresError) -> ReplicationEvent? {
        if let event = try readBuffered() { return event }
        let socket = PQsocket(connection.handle)
        guard socket >= 0 else { throw PostgresError(.replication, "the replication connection has no socket") }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, Int32(max(0, timeout * 1000)))
        if ready < 0, errno != EINTR { throw PostgresError(.replication, "poll failed: \(String(cString: strerror(errno)))") }
        guard ready > 0 else { return nil }
        guard PQconsumeInput(connection.handle) == 1 else {
            throw PostgresError(.replication, "replication connection lost: \(connection.lastError)")
        }
        return try readBuffered()
    }

    private func readBuffered() throws(PostgresError) -> ReplicationEvent? {
        var buffer: UnsafeMutablePointer<CChar>?
        let length = PQgetCopyData(connection.handle, &buffer, 1)
        if length == 0 { return nil }
        if length == -1 {
            let (message, state) = finalError()
            throw PostgresError(.replication, "the server ended the replication stream: \(message)", sqlState: state)
        }
        if length < 0 { throw PostgresError(.replication, "replication connection lost: \(connection.lastError)") }
        guard let buffer else { return nil }
        defer { PQfreemem(buffer) }
        let raw = UnsafeRawBufferPointer(start: buffer, count: Int(length))
        switch raw.first {
        case UInt8(ascii: "w"):
            guard raw.count >= 25 else { throw PostgresError(.replication, "XLogData message too short") }
            return .xlogData(walStart: LSN(Self.readUInt64(raw, at: 1)), walEnd: LSN(Self.readUInt64(raw, at: 9)),
                             payload: Self.payload(of: raw, from: 25))
        case UInt8(ascii: "k"):
            guard raw.count >= 18 else { throw PostgresError(.replication, "keepalive message too short") }
            return .keepalive(walEnd: LSN(Self.readUInt64(raw, at: 1)), replyRequested: raw[17] != 0)
        default:
            throw PostgresError(.replication, "unexpected replication message kind \(raw.first ?? 0)")
        }
    }

    /// Messages from this size on are copied out of libpq's buffer a megabyte at a time, giving back
    /// each copied page of it (see `payload(of:from:)`).
    static let largeMessageBytes = 8 << 20

    /// `raw[start...]` as an array. libpq holds a message twice before we see it (its input buffer and
    /// the copy `PQgetCopyData` makes for us); a third copy of a 100 MB row would cost 100 MB more at
    /// its peak. So a large message is copied in steps, and the pages of libpq's copy already copied go
    /// back to the kernel (`MADV_DONTNEED`) before the next step: the buffer is freed right after and
    /// never read again; its first bytes, which malloc may use, are on a page that is kept.
    static func payload(of raw: UnsafeRawBufferPointer, from start: Int) -> [UInt8] {
        let count = raw.count - start
        guard count >= largeMessageBytes, let source = raw.baseAddress else { return Array(raw[start...]) }
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let bufferStart = UInt(bitPattern: source)
        // Pages wholly inside the buffer, after its first one.
        var released = (bufferStart / page + 1) * page
        return [UInt8](unsafeUninitializedCapacity: count) { output, initialized in
            let step = 1 << 20
            var copied = 0
            while copied < count {
                let length = min(step, count - copied)
                memcpy(output.baseAddress! + copied, source + start + copied, length)
                copied += length
                let done = (bufferStart + UInt(start + copied)) / page * page
                if done > released {
                    _ = madvise(UnsafeMutableRawPointer(bitPattern: released), Int(done - released), MADV_DONTNEED)
                    released = done
                }
            }
            initialized = count
        }
    }

    /// The server's error(s) at the end of the stream, and the first one's SQLSTATE.
    private func finalError() -> (message: String, sqlState: String?) {
        var messages: [String] = []
        var state: String?
        while let result = PQgetResult(connection.handle) {
            let text = PostgresConnection.trimmed(String(cString: PQresultErrorMessage(result)))
            if !text.isEmpty { messages.append(text) }
            state = state ?? Self.sqlState(of: result)
            PQclear(result)
        }
        return (messages.isEmpty ? connection.lastError : messages.joined(separator: "; "), state)
    }

    static func sqlState(of result: OpaquePointer) -> String? {
        PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
    }

    /// Standby status update ('r'): received, flushed and applied positions, and the clock.
    public func sendStatus(received: LSN, flushed: LSN, replyRequested: Bool = false) throws(PostgresError) {
        var message = [UInt8](repeating: 0, count: 34)
        message[0] = UInt8(ascii: "r")
        Self.writeUInt64(received.rawValue, into: &message, at: 1)
        Self.writeUInt64(flushed.rawValue, into: &message, at: 9)
        Self.writeUInt64(flushed.rawValue, into: &message, at: 17)
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000) - PostgresTime.unixEpochOffset * 1_000_000
        Self.writeUInt64(UInt64(bitPattern: now), into: &message, at: 25)
        message[33] = replyRequested ? 1 : 0
        let sent = message.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { PQputCopyData(connection.handle, $0.baseAddress, Int32($0.count)) }
        }
        guard sent == 1, PQflush(connection.handle) == 0 else {
            throw PostgresError(.replication, "could not send a status update: \(connection.lastError)")
        }
    }

    static func readUInt64(_ raw: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in offset..<(offset + 8) { value = value << 8 | UInt64(raw[index]) }
        return value
    }

    static func writeUInt64(_ value: UInt64, into bytes: inout [UInt8], at offset: Int) {
        for index in 0..<8 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (56 - 8 * index)) }
    }
}
