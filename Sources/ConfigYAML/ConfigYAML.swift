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

    /// The most values a document may hold once its aliases are expanded. Aliases of lists of aliases
    /// ("billion laughs") let a few lines stand for billions of values; a real configuration has a
    /// few hundred.
    public static let maxValues = 100_000

    /// The document as a tree, or nil for an empty document.
    public static func node(fromYAML text: String) throws(ParseError) -> ConfigNode? {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ParseError(reason: describe(error))
        }
        guard let node else { return nil }
        var budget = maxValues
        guard let tree = convert(node, budget: &budget) else {
            throw ParseError(reason: "the document holds more than \(maxValues) values once its aliases (*name) are expanded")
        }
        return tree
    }

    /// nil when the budget runs out.
    static func convert(_ node: Node, budget: inout Int) -> ConfigNode? {
        budget -= 1
        guard budget >= 0 else { return nil }
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string) { return .null }
            return .scalar(scalar.string)
        case .sequence(let sequence):
            var items: [ConfigNode] = []
            for item in sequence {
                guard let converted = convert(item, budget: &budget) else { return nil }
                items.append(converted)
            }
            return .sequence(items)
        case .mapping(let mapping):
            var pairs: [(String, ConfigNode)] = []
            for pair in mapping {
                guard let value = convert(pair.value, budget: &budget) else { return nil }
                pairs.append((pair.key.string ?? "\(pair.key)", value))
            }
            return .mapping(pairs)
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
