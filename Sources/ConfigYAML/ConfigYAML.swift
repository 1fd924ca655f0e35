import SluiceCore
import Yams

/// YAML text → `ConfigNode`, the tree `ConfigReader` reads: `sluice.yml` and a Sequin file for
/// `sluice import-sequin`. Kept apart from the CLI so the config fuzz target reads YAML exactly as
/// `sluice run` does.
public enum ConfigYAML {
    /// The text is not YAML; `reason` has Yams' message and position, never the quoted source line
    /// (it could hold a password).
    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var reason: String
        public var description: String { reason }
    }

    /// The document as a tree, or nil for an empty document.
    public static func node(fromYAML text: String) throws(ParseError) -> ConfigNode? {
        do {
            return try Yams.compose(yaml: text).map(convert)
        } catch {
            throw ParseError(reason: describe(error))
        }
    }

    static func convert(_ node: Node) -> ConfigNode {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string) { return .null }
            return .scalar(scalar.string)
        case .sequence(let sequence):
            return .sequence(sequence.map(convert))
        case .mapping(let mapping):
            return .mapping(mapping.map { pair in (pair.key.string ?? "\(pair.key)", convert(pair.value)) })
        case .alias:
            return .null
        }
    }

    /// Yams' message and position without the quoted source line.
    static func describe(_ error: Error) -> String {
        guard let error = error as? YamlError else { return "the YAML parser failed" }
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            return "line \(mark.line), column \(mark.column): \(problem)" + (context.map { " (\($0.text))" } ?? "")
        case .reader(let problem, _, _, _): return problem
        case .duplicatedKeysInMapping(let duplicates, let context):
            return "line \(context.mark.line): duplicate keys \(duplicates.joined(separator: ", "))"
        default: return "the YAML parser failed"
        }
    }
}
