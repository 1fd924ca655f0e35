import Foundation
import Testing
@testable import SluiceCore

/// Builds config trees by hand, the way the YAML loader would hand them over.
func map(_ pairs: KeyValuePairs<String, ConfigNode>) -> ConfigNode {
    .mapping(pairs.map { ($0.key, $0.value) })
}

func s(_ text: String) -> ConfigNode { .scalar(text) }

func seq(_ items: ConfigNode...) -> ConfigNode { .sequence(items) }

/// What a test checks of one refused field: its code, its path, the value the message quotes and the
/// name it suggests. The sentences users read are pinned once, in `ConfigMessageTests`.
struct Problem: Equatable, CustomStringConvertible {
    var code: ConfigError.Code
    var path: String
    var value: String?
    var suggestion: String?

    init(_ code: ConfigError.Code, _ path: String, _ value: String? = nil, suggestion: String? = nil) {
        self.code = code
        self.path = path
        self.value = value
        self.suggestion = suggestion
    }

    init(_ error: ConfigError) {
        self.init(error.code, error.path, error.value, suggestion: error.suggestion)
    }

    var description: String {
        "\(code) at \(path)" + (value.map { " quoting \"\($0)\"" } ?? "") + (suggestion.map { " suggesting \($0)" } ?? "")
    }
}

/// The configurations the config tests start from, and ways to read them.
protocol ConfigFixtures {}

extension ConfigFixtures {
    static var environment: [String: String] { ["PGPASSWORD": "pg-s3cret", "KAFKA_PASSWORD": "kafka-s3cret"] }

    static func database(extra: [(String, ConfigNode)] = []) -> ConfigNode {
        .mapping([
            ("url", s("postgres://app:${PGPASSWORD}@127.0.0.1:5432/app")),
            ("slot", map(["name": s("sluice"), "create_if_not_exists": s("true")])),
            ("publication", map(["name": s("sluice"), "create_if_not_exists": s("true"),
                                 "tables": seq(s("public.orders"))])),
            ("heartbeat_interval", s("15s")),
        ] + extra)
    }

    /// A destination with `overrides` replacing or adding fields (a nil value removes the field).
    static func destination(_ overrides: [(String, ConfigNode?)] = []) -> ConfigNode {
        var fields: [(String, ConfigNode)] = [
            ("type", s("kafka")),
            ("hosts", s("127.0.0.1:9092")),
            ("topic", s("orders")),
        ]
        for (key, value) in overrides {
            if let index = fields.firstIndex(where: { $0.0 == key }) {
                if let value { fields[index].1 = value } else { fields.remove(at: index) }
            } else if let value {
                fields.append((key, value))
            }
        }
        return .mapping(fields)
    }

    static func sink(name: String = "orders-to-kafka", tables: ConfigNode? = seq(s("public.orders")),
                     destination: ConfigNode = destination(), extra: [(String, ConfigNode)] = []) -> ConfigNode {
        var fields: [(String, ConfigNode)] = [("name", s(name))]
        if let tables { fields.append(("tables", tables)) }
        fields.append(("destination", destination))
        return .mapping(fields + extra)
    }

    static func root(database: ConfigNode = database(), sinks: [ConfigNode] = [sink()],
                     extra: [(String, ConfigNode)] = []) -> ConfigNode {
        .mapping([("database", database), ("sinks", .sequence(sinks))] + extra)
    }

    static func read(_ root: ConfigNode, environment: [String: String] = environment,
                     baseDirectory: String = ".") throws -> SluiceConfig {
        try ConfigReader.read(root, environment: environment, baseDirectory: baseDirectory).get()
    }

    /// Every error of a config expected to be refused, in order; empty when it is accepted.
    static func errors(_ root: ConfigNode, environment: [String: String] = environment,
                       baseDirectory: String = ".") -> [ConfigError] {
        switch ConfigReader.read(root, environment: environment, baseDirectory: baseDirectory) {
        case .success: return []
        case .failure(let failure): return failure.errors
        }
    }

    static func problems(_ root: ConfigNode, environment: [String: String] = environment,
                         baseDirectory: String = ".") -> [Problem] {
        errors(root, environment: environment, baseDirectory: baseDirectory).map(Problem.init)
    }

    static func problems(destination overrides: [(String, ConfigNode?)],
                         environment: [String: String] = environment) -> [Problem] {
        problems(root(sinks: [sink(destination: destination(overrides))]), environment: environment)
    }

    // MARK: - Functions

    static func function(_ name: String, _ type: String, _ fields: [(String, ConfigNode)] = []) -> ConfigNode {
        .mapping([("name", s(name)), ("type", s(type))] + fields)
    }

    static var paidOnlyCode: String { #"function filter(action, record) return record.status == "paid" end"# }
    static var paidOnly: ConfigNode { function("paid-only", "filter", [("code", s(paidOnlyCode))]) }
    static var shape: ConfigNode { function("shape", "transform", [("code", s("function transform(action, record) return record end"))]) }
    static var byRegion: ConfigNode {
        function("by-region", "routing", [("code", s(#"function route(action, record) return {topic = record.region} end"#))])
    }
    static var city: ConfigNode { function("city", "path", [("path", s("record.address.city"))]) }

    /// A root with `functions` declared and one sink using `uses` (filter:, transform:, routing:).
    static func root(functions: [ConfigNode], uses: [(String, ConfigNode)] = [],
                     destination: ConfigNode = destination()) -> ConfigNode {
        root(sinks: [sink(destination: destination, extra: uses)], extra: [("functions", .sequence(functions))])
    }

    static func problems(functions: [ConfigNode], uses: [(String, ConfigNode)] = [], baseDirectory: String = ".") -> [Problem] {
        problems(root(functions: functions, uses: uses), baseDirectory: baseDirectory)
    }

    /// A fresh folder holding `files` (relative path → contents).
    static func folder(_ files: [String: [UInt8]]) throws -> String {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-config-\(UUID().uuidString)").path
        for (path, bytes) in files {
            let full = (base as NSString).appendingPathComponent(path)
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: full))
        }
        return base
    }
}

extension ConfigNode {
    /// The same mapping with `key`'s value replaced.
    func replacing(_ key: String, with value: ConfigNode) -> ConfigNode {
        guard case .mapping(let pairs) = self else { return self }
        return .mapping(pairs.map { $0.0 == key ? ($0.0, value) : $0 })
    }
}
