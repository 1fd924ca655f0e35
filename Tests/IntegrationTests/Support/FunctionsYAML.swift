/// A top-level `functions:` block for a test's sluice.yml (appended after the sinks).
struct FunctionDeclaration {
    var name: String
    var type: String
    var code: String = ""
    var path: String = ""
    var extra: String = ""

    static func yaml(_ functions: [FunctionDeclaration]) -> String {
        var text = "functions:\n"
        for function in functions {
            text += "  - name: \(function.name)\n    type: \(function.type)\n"
            if !function.path.isEmpty { text += "    path: \(function.path)\n" }
            if !function.code.isEmpty {
                text += "    code: |\n"
                for line in function.code.split(separator: "\n", omittingEmptySubsequences: false) { text += "      \(line)\n" }
            }
            text += function.extra
        }
        return text
    }
}
