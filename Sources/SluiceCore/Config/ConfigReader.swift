/// Reads a `ConfigNode` tree field by field and collects every problem with the field it concerns,
/// rather than stopping at the first. It knows no section: each config type reads and checks its
/// own (`DatabaseConfig(reading:at:reader:)`, `SinkConfig(reading:…)`, …) with the readers here.
public struct ConfigReader {
    public private(set) var errors: [ConfigError] = []
    let environment: [String: String]
    /// Where relative file paths (`functions[].file`) start: the YAML file's folder.
    let baseDirectory: String

    public init(environment: [String: String], baseDirectory: String = ".") {
        self.environment = environment
        self.baseDirectory = baseDirectory
    }

    /// Returns the configuration, or every problem found.
    public static func read(_ root: ConfigNode, environment: [String: String],
                            baseDirectory: String = ".") -> Result<SluiceConfig, ConfigErrors> {
        var reader = ConfigReader(environment: environment, baseDirectory: baseDirectory)
        let config = SluiceConfig(reading: root, reader: &reader)
        if let config, reader.errors.isEmpty { return .success(config) }
        return .failure(ConfigErrors(errors: reader.errors))
    }

    mutating func report(_ code: ConfigError.Code, at path: String, _ message: String, value: String? = nil,
                         suggestion: String? = nil) {
        errors.append(ConfigError(code, at: path, message, value: value, suggestion: suggestion))
    }

    /// Reports a value as written: `"kafka:99999" — port must be 1-65535`.
    mutating func report(_ code: ConfigError.Code, at path: String, quoting value: String, _ detail: String,
                         suggestion: String? = nil) {
        errors.append(ConfigError(code, at: path, quoting: value, detail, suggestion: suggestion))
    }

    // MARK: - Shapes

    /// The fields of a mapping. A key not in `allowed` is reported with the nearest allowed one.
    mutating func fields(_ node: ConfigNode, at path: String, allowed: [String]) -> ConfigFields? {
        guard case .mapping(let pairs) = node else {
            report(.wrongType, at: path, "must be a mapping of fields")
            return nil
        }
        var fields = ConfigFields(path: path)
        for (key, value) in pairs {
            guard allowed.contains(key) else {
                let nearest = Self.nearest(to: key, in: allowed)
                let hint = nearest.map { " — did you mean \($0)?" } ?? " — remove it"
                report(.unknownField, at: fields.path(key), "unknown field\(hint)", suggestion: nearest)
                continue
            }
            fields.values[key] = value
        }
        return fields
    }

    /// A single value, with `${VAR}` and `${VAR:-default}` taken from the environment. A `secret`
    /// value is never quoted in an error.
    mutating func string(_ node: ConfigNode, at path: String, secret: Bool = false) -> String? {
        guard case .scalar(let raw) = node else {
            report(.wrongType, at: path, "must be a single value")
            return nil
        }
        switch EnvironmentInterpolation.apply(raw, environment: environment) {
        case .success(let value): return value
        case .failure(.unset(let name)):
            report(.environment, at: path, "environment variable \(name) is not set — export it, or write ${\(name):-default}", value: name)
        case .failure(.unterminated):
            if secret {
                report(.environment, at: path, "has an unterminated ${ — close it with }")
            } else {
                report(.environment, at: path, quoting: raw, "has an unterminated ${ — close it with }")
            }
        }
        return nil
    }

    mutating func bool(_ node: ConfigNode, at path: String) -> Bool? {
        guard let text = string(node, at: path) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            report(.invalidValue, at: path, quoting: text, "— use true or false")
            return nil
        }
    }

    /// A whole number in `range`; `10_000` may be written with underscores.
    mutating func integer(_ node: ConfigNode, at path: String, range: ClosedRange<Int>) -> Int? {
        guard let text = string(node, at: path) else { return nil }
        let value = Int(text.replacingUnderscores)
        guard let value, range.contains(value) else {
            report(value == nil ? .invalidValue : .outOfRange, at: path, quoting: text,
                   "— must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return value
    }

    /// A list; a single value is a list of one.
    mutating func list(_ node: ConfigNode, at path: String) -> [ConfigNode] {
        switch node {
        case .sequence(let items): return items
        case .scalar: return [node]
        default:
            report(.wrongType, at: path, "must be a list")
            return []
        }
    }

    /// A list of single values (column or schema names).
    mutating func strings(_ node: ConfigNode, at path: String) -> [String] {
        list(node, at: path).enumerated().compactMap { string($1, at: "\(path)[\($0)]") }
    }

    // MARK: - Fields by key

    mutating func string(_ key: String, in fields: ConfigFields, secret: Bool = false) -> String? {
        fields[key].flatMap { string($0, at: fields.path(key), secret: secret) }
    }

    mutating func bool(_ key: String, in fields: ConfigFields) -> Bool? {
        fields[key].flatMap { bool($0, at: fields.path(key)) }
    }

    mutating func integer(_ key: String, in fields: ConfigFields, range: ClosedRange<Int>) -> Int? {
        fields[key].flatMap { integer($0, at: fields.path(key), range: range) }
    }

    // MARK: - Suggestions

    /// The candidate closest to a misspelt name (edit distance ≤ 3).
    static func nearest(to key: String, in candidates: [String]) -> String? {
        let best = candidates.map { ($0, editDistance(key, $0)) }.min { $0.1 < $1.1 }
        guard let best, best.1 <= 3 else { return nil }
        return best.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return a.isEmpty ? b.count : previous[b.count]
    }
}

/// The known fields of one mapping, and where it sits in the file.
struct ConfigFields {
    let path: String
    fileprivate(set) var values: [String: ConfigNode] = [:]

    init(path: String) {
        self.path = path
    }

    subscript(key: String) -> ConfigNode? { values[key] }

    /// The path of one of its fields: `sinks[0].destination` + `hosts`.
    func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }

    var replacingUnderscores: String { String(filter { $0 != "_" }) }
}
