import Foundation

/// Keeps the changes of in-progress transactions that PostgreSQL streams before they commit
/// (protocol 2, `streaming 'on'`) in files, one per transaction, so memory does not grow with a
/// transaction's size. At Stream Commit the file is read back in order; at Stream Abort it is
/// dropped (or, for a subtransaction, its changes are skipped on replay).
final class TransactionSpill {
    let directory: String
    private var files: [UInt32: UnsafeMutablePointer<FILE>] = [:]
    private var abortedSubtransactions: [UInt32: Set<UInt32>] = [:]

    /// Creates the directory and removes what an earlier run left: PostgreSQL streams unfinished
    /// transactions again from their start after a reconnect.
    init(directory: String) throws(PostgresError) {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix(".spill") {
                try FileManager.default.removeItem(atPath: directory + "/" + name)
            }
        } catch {
            throw PostgresError(.replication, "cannot use the spill directory \(directory): \(error)")
        }
    }

    deinit {
        for (xid, file) in files {
            fclose(file)
            unlink(path(xid))
        }
    }

    func path(_ xid: UInt32) -> String { "\(directory)/\(xid).spill" }

    /// Appends one pgoutput message (as received, with its subtransaction xid) to the transaction's file.
    func append(xid: UInt32, payload: [UInt8]) throws(PostgresError) {
        let file: UnsafeMutablePointer<FILE>
        if let open = files[xid] {
            file = open
        } else {
            guard let created = fopen(path(xid), "w+b") else {
                throw PostgresError(.replication, "cannot create \(path(xid)): \(String(cString: strerror(errno)))")
            }
            setvbuf(created, nil, _IOFBF, 1 << 20)
            files[xid] = created
            file = created
        }
        var length = UInt32(payload.count).littleEndian
        let written = withUnsafeBytes(of: &length) { fwrite($0.baseAddress, 1, 4, file) }
            + payload.withUnsafeBytes { fwrite($0.baseAddress, 1, payload.count, file) }
        guard written == 4 + payload.count else {
            throw PostgresError(.replication, "cannot write \(path(xid)): \(String(cString: strerror(errno)))")
        }
    }

    func abort(xid: UInt32, subtransactionXid: UInt32) {
        if xid == subtransactionXid {
            if let file = files.removeValue(forKey: xid) { fclose(file) }
            unlink(path(xid))
            abortedSubtransactions[xid] = nil
        } else {
            abortedSubtransactions[xid, default: []].insert(subtransactionXid)
        }
    }

    /// Reads the transaction's messages back in order (skipping aborted subtransactions), then deletes the file.
    func replay(xid: UInt32, _ body: ([UInt8]) throws(PostgresError) -> Void) throws(PostgresError) {
        defer {
            if let file = files.removeValue(forKey: xid) { fclose(file) }
            unlink(path(xid))
            abortedSubtransactions[xid] = nil
        }
        guard let file = files[xid] else { return } // nothing was streamed for it
        let aborted = abortedSubtransactions[xid] ?? []
        fflush(file)
        rewind(file)
        var header = [UInt8](repeating: 0, count: 4)
        while fread(&header, 1, 4, file) == 4 {
            let length = Int(UInt32(header[0]) | UInt32(header[1]) << 8 | UInt32(header[2]) << 16 | UInt32(header[3]) << 24)
            var payload = [UInt8](repeating: 0, count: length)
            guard fread(&payload, 1, length, file) == length else {
                throw PostgresError(.replication, "\(path(xid)) ends early")
            }
            if let sub = PgOutputDecoder.streamedXid(payload), aborted.contains(sub) { continue }
            try body(payload)
        }
    }
}
