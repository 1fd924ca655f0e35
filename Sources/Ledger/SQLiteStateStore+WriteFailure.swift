import Foundation
import GRDB

extension SQLiteStateStore {
    /// One line for the operator when a write to the state file failed: the path, the system's reason
    /// (the errno text), the space its filesystem has and what the write needed, and what to do. SQLite
    /// rolled the write back whole, so nothing it held counts as written.
    public func explainWriteFailure(_ error: Error, needing bytes: Int, for purpose: String) -> String {
        let directory = (path as NSString).deletingLastPathComponent
        let free = Self.freeBytes(at: directory.isEmpty ? "." : directory)
        let code = (error as? DatabaseError)?.resultCode
        let sqlite = (error as? DatabaseError)?.message ?? "\(error)"
        // SQLite turns a write's ENOSPC into SQLITE_FULL; an I/O error on a filesystem with no room left is that too.
        let full = code == .SQLITE_FULL || (code == .SQLITE_IOERR && free.map { $0 < max(bytes, 1) } == true)
        var line = "cannot write the state file \(path): "
        if full {
            line += "\(String(cString: strerror(ENOSPC))) (SQLite: \(sqlite))"
            line += " — \(free.map(Self.size) ?? "nothing") free on its filesystem, \(purpose) needs about \(Self.size(bytes));"
            line += " free space there or move state.path to a larger disk."
        } else if code == .SQLITE_READONLY || code == .SQLITE_CANTOPEN || code == .SQLITE_PERM {
            line += "\(sqlite) — make the file and its directory writable by sluice (permissions, a read-only mount)."
        } else {
            line += "\(sqlite) (\(purpose)) — check the disk and the file; \(free.map(Self.size) ?? "unknown") free on its filesystem."
        }
        return line + " Nothing is lost: the slot is not confirmed past what is unwritten, and sluice retries every second"
            + " and goes on by itself once a write succeeds"
    }

    /// Bytes an unprivileged process may still write on the filesystem holding `directory`.
    static func freeBytes(at directory: String) -> Int? {
        var stats = statvfs()
        guard statvfs(directory, &stats) == 0 else { return nil }
        return Int(stats.f_bavail) * Int(stats.f_frsize)
    }

    /// 0 bytes, 12 KB, 3.4 MB, 1.2 GB.
    static func size(_ bytes: Int) -> String {
        switch bytes {
        case ..<1_024: return "\(bytes) bytes"
        case ..<1_048_576: return "\(bytes / 1_024) KB"
        case ..<1_073_741_824: return String(format: "%.1f MB", Double(bytes) / 1_048_576)
        default: return String(format: "%.1f GB", Double(bytes) / 1_073_741_824)
        }
    }
}
