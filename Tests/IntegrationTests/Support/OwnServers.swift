import Foundation

/// A Kafka-compatible broker of a test's own (noida-db), so the test may stop and restart it.
final class OwnBroker {
    let binary: String
    let port: Int
    let dataDirectory: URL
    private(set) var process: Process?

    init() throws {
        guard let binary = ProcessInfo.processInfo.environment["SLUICE_NOIDA_BIN"], !binary.isEmpty else {
            throw TestSetupError("SLUICE_NOIDA_BIN is not set: run the tests through scripts/test")
        }
        self.binary = binary
        port = try freePort()
        dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("broker"))
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        try start()
    }

    var hosts: String { "127.0.0.1:\(port)" }

    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["start", "--only", "kafka", "--host", "127.0.0.1", "--kafka-port", String(port),
                             "--data-dir", dataDirectory.appendingPathComponent("data").path]
        let log = dataDirectory.appendingPathComponent("broker.log")
        if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try launch(process)
        self.process = process
        let ready = eventually(timeout: 30, every: 0.25) {
            (try? runCommand("/usr/bin/kcat", ["-L", "-b", hosts, "-m", "2"]))?.status == 0
        }
        if !ready { throw TestSetupError("own broker did not start on \(hosts)") }
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing answers, as in a network
    /// partition, and it loses nothing (unlike a stop; see ARCHITECTURE.md).
    func freeze() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGSTOP)
    }

    /// Lets a frozen broker go on (SIGCONT).
    func thaw() {
        guard let process else { return }
        kill(process.processIdentifier, SIGCONT)
    }

    /// Stops the broker (SIGTERM, so it saves its data) and waits until it is gone.
    func stop() {
        guard let process, process.isRunning else { return }
        process.terminate()
        if !eventually(timeout: 15, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit {
        thaw()
        stop()
        try? FileManager.default.removeItem(at: dataDirectory)
    }
}

/// A PostgreSQL 15 cluster of a test's own, started with the project's script, so the test may restart it.
final class OwnPostgres {
    let port: Int
    let directory: String
    let pgBin = "/usr/lib/postgresql/15/bin"

    init() throws {
        guard let root = ProcessInfo.processInfo.environment["SLUICE_ROOT"] else {
            throw TestSetupError("SLUICE_ROOT is not set: run the tests through scripts/test")
        }
        let result = try runCommand("/bin/bash", ["-c", """
            source "\(root)/scripts/lib/services.sh" && sluice_start_postgres >&2 && echo "$SLUICE_PG_PORT $SLUICE_PG_DIR"
            """])
        let parts = result.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard result.status == 0, parts.count == 2, let port = Int(parts[0]) else {
            throw TestSetupError("could not start a PostgreSQL of the test's own: \(result.stderr)")
        }
        self.port = port
        directory = parts[1]
    }

    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    /// `pg_ctl restart -m fast`: every connection is cut, the server comes back on the same port.
    func restart() throws {
        let result = try runCommand("/usr/sbin/runuser", ["-u", "postgres", "--", "\(pgBin)/pg_ctl", "-D", "\(directory)/data",
                                                          "-l", "\(directory)/postgres.log", "-m", "fast", "-w", "-t", "60", "restart"])
        if result.status != 0 { throw TestSetupError("pg_ctl restart failed: \(result.stdout) \(result.stderr)") }
    }

    deinit {
        _ = try? runCommand("/usr/sbin/runuser", ["-u", "postgres", "--", "\(pgBin)/pg_ctl", "-D", "\(directory)/data",
                                                  "-m", "immediate", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
func freePort() throws -> Int {
    let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
    }
    guard bound else { throw TestSetupError("no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
