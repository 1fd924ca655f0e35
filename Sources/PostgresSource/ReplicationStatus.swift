import SluiceCore
import Synchronization

/// What the console shows of the replication connection: connected or not, and how far the
/// server's WAL goes (from keepalives and data), for the lag behind the confirmed position.
public final class ReplicationStatus: Sendable {
    private let connectedFlag = Atomic<Bool>(false)
    private let serverPosition = Atomic<UInt64>(0)
    private let currentProblems = Mutex<[String]>([])

    public init() {}

    public var isConnected: Bool { connectedFlag.load(ordering: .relaxed) }
    public var serverWAL: LSN { LSN(serverPosition.load(ordering: .relaxed)) }

    func connected(at wal: LSN) {
        connectedFlag.store(true, ordering: .relaxed)
        advance(to: wal)
    }

    func disconnected() { connectedFlag.store(false, ordering: .relaxed) }

    func advance(to wal: LSN) { serverPosition.max(wal.rawValue, ordering: .relaxed) }

    /// What is wrong with the tables the configuration names (dropped, removed from the publication),
    /// one line each; empty when nothing is.
    public var problems: [String] { currentProblems.withLock { $0 } }

    func setProblems(_ problems: [String]) { currentProblems.withLock { $0 = problems } }
}
