import Foundation
import Yams

/// One `sluice import-sequin` run in a folder of its own, and the files it wrote, read back with Yams.
struct SequinImportRun {
    static let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/sequin")

    let status: Int32
    let stdout: String
    let stderr: String
    let directory: URL

    var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }

    /// Copies the samples (with their function files) to a new folder and imports `sample`.
    static func sample(_ sample: String, _ environment: TestEnvironment, arguments: [String] = []) throws -> SequinImportRun {
        let directory = try newDirectory()
        for name in try FileManager.default.contentsOfDirectory(atPath: samples.path) {
            try FileManager.default.copyItem(at: samples.appendingPathComponent(name), to: directory.appendingPathComponent(name))
        }
        return try run(environment, from: directory.appendingPathComponent(sample).path, in: directory, arguments: arguments)
    }

    /// Imports a sequin.yml given as text (and extra files beside it).
    static func text(_ yaml: String, _ environment: TestEnvironment, files: [String: String] = [:],
                     arguments: [String] = []) throws -> SequinImportRun {
        let directory = try newDirectory()
        let from = directory.appendingPathComponent("sequin.yml")
        try yaml.write(to: from, atomically: true, encoding: .utf8)
        for (name, text) in files { try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        return try run(environment, from: from.path, in: directory, arguments: arguments)
    }

    private static func run(_ environment: TestEnvironment, from: String, in directory: URL, arguments: [String]) throws -> SequinImportRun {
        let out = directory.appendingPathComponent("sluice.yml").path
        let result = try runCommand(environment.sluiceBinary, ["import-sequin", "--from", from, "--out", out] + arguments)
        return SequinImportRun(status: result.status, stdout: result.stdout, stderr: result.stderr, directory: directory)
    }

    private static func newDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("import"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    func text(_ file: String = "sluice.yml") throws -> String {
        try String(contentsOfFile: path(file), encoding: .utf8)
    }

    /// The written file as YAML values (strings, numbers, booleans, arrays, dictionaries).
    func document(_ file: String = "sluice.yml") throws -> YAMLTree {
        YAMLTree(try Yams.load(yaml: text(file)))
    }

    /// `sluice check --config FILE` with the given environment added.
    func check(_ environment: TestEnvironment, file: String = "sluice.yml", variables: [String: String]) throws
        -> (status: Int32, stdout: String, stderr: String) {
        let env = ProcessInfo.processInfo.environment.merging(variables) { $1 }
        return try runCommand(environment.sluiceBinary, ["check", "--config", path(file)], environment: env)
    }
}

/// A loaded YAML document, navigated by key and index: `doc["sinks"][0]["name"].string`.
struct YAMLTree {
    let value: Any?

    init(_ value: Any?) { self.value = value }

    subscript(key: String) -> YAMLTree { YAMLTree((value as? [String: Any])?[key]) }
    subscript(index: Int) -> YAMLTree {
        guard let array = value as? [Any], array.indices.contains(index) else { return YAMLTree(nil) }
        return YAMLTree(array[index])
    }

    var string: String? { value as? String }
    var int: Int? { value as? Int }
    var bool: Bool? { value as? Bool }
    var strings: [String]? { (value as? [Any])?.compactMap { $0 as? String } }
    var count: Int { (value as? [Any])?.count ?? (value as? [String: Any])?.count ?? 0 }
    var keys: [String] { ((value as? [String: Any]).map { Array($0.keys) } ?? []).sorted() }
    var exists: Bool { value != nil }
}

/// The variables the samples' `${IMPORT_*}` references name, pointing at a test database and the broker.
struct SampleVariables {
    static func database(_ database: TestDatabase, slot: String, publication: String, prefix: String = "IMPORT") -> [String: String] {
        let components = URLComponents(string: database.url)!
        return [
            "\(prefix)_PG_HOST": components.host ?? "127.0.0.1",
            "\(prefix)_PG_PORT": String(components.port ?? 5432),
            "\(prefix)_PG_DB": database.name,
            "\(prefix)_URL": database.url,
            "\(prefix)_SLOT": slot,
            "\(prefix)_PUBLICATION": publication,
        ]
    }

    static func kafka(_ environment: TestEnvironment, topic: String) -> [String: String] {
        ["IMPORT_KAFKA_HOSTS": environment.kafkaHosts, "IMPORT_TOPIC": topic]
    }
}
