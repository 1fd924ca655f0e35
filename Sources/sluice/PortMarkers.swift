import SluiceCore

/// Functions that `sluice import-sequin` wrote as Lua stubs around Elixir code: they raise on every
/// message until someone ports them, so `sluice check` refuses the file while one is left.
enum PortMarkers {
    /// The error every stub raises; its presence in a function's code marks it as not yet ported.
    static let marker = "port this function from Elixir"

    static func problems(in functions: [FunctionConfig]) -> [String] {
        functions.enumerated().compactMap { index, function in
            guard function.code.contains(marker) else { return nil }
            return "functions[\(index)] (\(function.name)): still written in Elixir — port it to Lua (see the comment in its code)"
        }
    }
}
