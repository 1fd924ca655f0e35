import Foundation

/// A `sluice` binary running as a child process, as a user would run it.
final class SluiceProcess {
    let process = Process()
    let logURL: URL
    let configURL: URL

    /// Writes `config` to a temp file and runs `sluice run --config FILE`.
    init(_ environment: TestEnvironment, config: String, arguments: [String] = ["run"], extraEnvironment: [String: String] = [:]) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("sluice"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        configURL = directory.appendingPathComponent("sluice.yml")
        logURL = directory.appendingPathComponent("sluice.log")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.executableURL = URL(fileURLWithPath: environment.sluiceBinary)
        process.arguments = arguments + ["--config", configURL.path]
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        process.environment = ProcessInfo.processInfo.environment.merging(extraEnvironment) { $1 }
        try process.run()
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
func runCommand(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    // Output goes to files, so a chatty child can never block on a full pipe.
    let directory = FileManager.default.temporaryDirectory
    let outURL = directory.appendingPathComponent(UUID().uuidString + ".out")
    let errURL = directory.appendingPathComponent(UUID().uuidString + ".err")
    FileManager.default.createFile(atPath: outURL.path, contents: nil)
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return (process.terminationStatus, (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
}
