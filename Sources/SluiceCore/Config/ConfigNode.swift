import Foundation

/// A parsed configuration document, independent of the YAML library that read it.
public indirect enum ConfigNode: Sendable, Equatable {
    case scalar(String)
    case sequence([ConfigNode])
    /// Keys in document order.
    case mapping([(String, ConfigNode)])
    case null

    public static func == (lhs: ConfigNode, rhs: ConfigNode) -> Bool {
        switch (lhs, rhs) {
        case (.scalar(let a), .scalar(let b)): return a == b
        case (.sequence(let a), .sequence(let b)): return a == b
        case (.mapping(let a), .mapping(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.null, .null): return true
        default: return false
        }
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` with values from the environment.
public enum EnvironmentInterpolation {
    public enum Failure: Error, Equatable {
        case unset(String)
        case unterminated
    }

    public static func apply(_ text: String, environment: [String: String]) -> Result<String, Failure> {
        guard text.contains("${") else { return .success(text) }
        var output = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            output += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else { return .failure(.unterminated) }
            let expression = rest[start.upperBound..<end]
            if let separator = expression.range(of: ":-") {
                let name = String(expression[..<separator.lowerBound])
                let value = environment[name] ?? ""
                output += value.isEmpty ? String(expression[separator.upperBound...]) : value
            } else {
                let name = String(expression)
                guard let value = environment[name] else { return .failure(.unset(name)) }
                output += value
            }
            rest = rest[rest.index(after: end)...]
        }
        output += rest
        return .success(output)
    }
}
