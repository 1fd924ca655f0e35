import Foundation
import KafkaMock
import KafkaSink

/// A `sluice` binary running as a child process, as a user would run it.
final class SluiceProcess {
    let process = Process()
    let logURL: URL
    let configURL: URL

    /// Writes `config` to a temp file and runs `sluice run --config FILE`; with a `wrapper` (such as
    /// `ip netns exec NAME`), runs it through that command.
    init(_ environment: TestEnvironment, config: String, arguments: [String] = ["run"], extraEnvironment: [String: String] = [:],
         wrapper: [String] = []) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("sluice"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        configURL = directory.appendingPathComponent("sluice.yml")
        logURL = directory.appendingPathComponent("sluice.log")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        let command = wrapper + [environment.sluiceBinary] + arguments + ["--config", configURL.path]
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        process.environment = ProcessInfo.processInfo.environment.merging(extraEnvironment) { $1 }
        try launch(process)
    }

    /// Runs the same config again in a new process (after a kill).
    func restart(_ environment: TestEnvironment) throws -> SluiceProcess {
        try SluiceProcess(environment, config: String(contentsOf: configURL, encoding: .utf8))
    }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Waits until the log shows that streaming started.
    func waitUntilStreaming(timeout: Double = 30) -> Bool {
        eventually(timeout: timeout) { log.contains("streaming") || !process.isRunning }
            && process.isRunning
    }

    func kill(signal: Int32) {
        guard process.isRunning else { return }
        Foundation.kill(process.processIdentifier, signal)
    }

    /// Waits up to `timeout` seconds for sluice to stop by itself; its exit status, nil if it still runs.
    func waitForExit(timeout: Double) -> Int32? {
        guard eventually(timeout: timeout, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// The line sluice logs when it stops on an error (`critical … sluice stopped`), if it did.
    var stopLine: String? {
        log.split(separator: "\n").last { $0.contains("critical") && $0.contains("sluice stopped") }.map(String.init)
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status.
    @discardableResult
    func stop(timeout: Double = 40) -> Int32 {
        kill(signal: SIGTERM)
        if !eventually(timeout: timeout, { !process.isRunning }) {
            kill(signal: SIGKILL)
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Runs a command to completion and returns its exit status and output.
///
/// Uses posix_spawn and waitpid directly: Foundation's Process can miss the exit of a child whose
/// own children (a daemonized postmaster) outlive it.
func runCommand(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    let directory = FileManager.default.temporaryDirectory
    let outPath = directory.appendingPathComponent(UUID().uuidString + ".out").path
    let errPath = directory.appendingPathComponent(UUID().uuidString + ".err").path
    defer {
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
    }
    let pid = try spawn(executable, arguments, environment: environment, stdout: outPath, stderr: errPath)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exitCode, (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
}

/// Starts a program in the background and returns its pid; the caller kills and reaps it. Standard
/// input is /dev/null; standard output and error go to the given files (created, or emptied).
func spawn(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
           stdout: String = "/dev/null", stderr: String = "/dev/null") throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    _ = addCloseFrom(&actions, 3) // see `launch`

    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0)=\($1)") } + [nil]
    defer {
        argv.forEach { free($0) }
        env.forEach { free($0) }
    }
    var pid: pid_t = 0
    let spawned = MockKafkaCluster.launchLock.withLock { _ in posix_spawn(&pid, executable, &actions, nil, argv, env) }
    guard spawned == 0 else { throw TestSetupError("cannot run \(executable): \(String(cString: strerror(spawned)))") }
    return pid
}

/// Starts `process`. Every child of the test process starts through here or `spawn`, holding
/// `MockKafkaCluster.launchLock`, and closes every inherited descriptor above 2 before exec:
/// Foundation's `Process` adds those closes itself, `spawn` asks for them. Close-on-exec alone is not
/// enough, as the kernel applies it a moment after posix_spawn has returned and the lock is free.
func launch(_ process: Process) throws {
    try MockKafkaCluster.launchLock.withLock { _ in try process.run() }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's Glibc module does not
/// declare; looked up once.
private let addCloseFrom: @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32 = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
        fatalError("glibc 2.34 or newer is needed (posix_spawn_file_actions_addclosefrom_np)")
    }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()
