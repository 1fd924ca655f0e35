import ConfigYAML
import SluiceCore
import Testing

/// YAML the config fuzz target's harness (Fuzz/Config) was found to hang on, replaying a hand-made
/// input: aliases that refer to lists of aliases ("billion laughs") let nine short lines stand for
/// 9⁹ values, and reading them never ended. Such a document is refused as not valid YAML.
@Suite("ConfigYAML: fuzz findings")
struct ConfigYAMLFuzzFindingsTests {
    static func laughs(levels: Int) -> String {
        var lines = [#"l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]"#]
        for level in 1..<levels {
            let alias = "*l\(level - 1)"
            lines.append("l\(level): &l\(level) [" + Array(repeating: alias, count: 9).joined(separator: ",") + "]")
        }
        return lines.joined(separator: "\n")
    }

    @Test func aliasesThatExpandToBillionsOfValuesAreRefused() {
        let thrown = #expect(throws: ConfigYAML.ParseError.self) { try ConfigYAML.node(fromYAML: Self.laughs(levels: 9)) }
        #expect(thrown?.reason.contains("aliases") == true)
    }

    @Test func aliasesWithinReasonStillRead() throws {
        let node = try ConfigYAML.node(fromYAML: Self.laughs(levels: 4))
        guard case .mapping(let pairs)? = node, case .sequence(let last) = pairs[3].1 else {
            Issue.record("not a mapping of lists: \(String(describing: node))")
            return
        }
        #expect(last.count == 9)
        let merged = try ConfigYAML.node(fromYAML: "base: &k {type: kafka}\nsink: {<<: *k, topic: t}")
        #expect(merged == .mapping([("base", .mapping([("type", .scalar("kafka"))])),
                                    ("sink", .mapping([("<<", .mapping([("type", .scalar("kafka"))])), ("topic", .scalar("t"))]))]))
    }
}
