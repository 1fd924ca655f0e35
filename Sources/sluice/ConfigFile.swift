import ConfigYAML
import Foundation
import Functions
import SluiceCore

/// Reads `sluice.yml`: YAML → `ConfigNode` → validated `SluiceConfig`.
enum ConfigFile {
    enum LoadError: Error, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        case invalidYAML(path: String, reason: String)
        case invalid(ConfigErrors)

        var description: String {
            switch self {
            case .unreadable(let path, let reason): "\(path): cannot read the configuration file: \(reason)"
            case .invalidYAML(let path, let reason): "\(path): not valid YAML: \(reason)"
            case .invalid(let errors): errors.description
            }
        }
    }

    static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(LoadError) -> SluiceConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        let root: ConfigNode
        do throws(ConfigYAML.ParseError) {
            root = try ConfigYAML.node(fromYAML: text) ?? .mapping([])
        } catch {
            // Without the quoted source line: it could hold a password.
            throw .invalidYAML(path: path, reason: error.reason)
        }
        let folder = (path as NSString).deletingLastPathComponent
        switch ConfigReader.read(root, environment: environment, baseDirectory: folder.isEmpty ? "." : folder) {
        case .success(let config):
            let problems = compileProblems(config.functions)
            if !problems.isEmpty { throw .invalid(ConfigErrors(errors: problems)) }
            return config
        case .failure(let errors): throw .invalid(errors)
        }
    }

    /// Compiles every declared function once: a syntax error, a chunk that fails, or a missing
    /// global function refuses the configuration, naming `functions[i].code` (or the file) and the line.
    static func compileProblems(_ functions: [FunctionConfig]) -> [ConfigError] {
        functions.filter { $0.kind != .enrichment }.compactMap { function -> ConfigError? in
            do {
                _ = try UserFunction(function)
                return nil
            } catch {
                // The message names its own place (`functions[0].code:3:`, the file, or the function).
                return ConfigError(.invalidFunction, at: "", "\(error) (function \(function.name))", value: function.name)
            }
        }
    }
}
