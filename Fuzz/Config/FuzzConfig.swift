import ConfigYAML
import Foundation
import FuzzSupport
import SluiceCore

/// Fuzz target: `sluice.yml` text → Yams → `ConfigNode` → `ConfigReader` → `SluiceConfig` or the list
/// of problems, as `sluice run` and `sluice check` read it (function files are read relative to a
/// scratch folder holding one Lua file). A refusal must be explained: every problem names its field
/// or says what it is about.
enum ConfigTarget {
    static let environment = ["PGPASSWORD": "fuzz-secret", "KAFKA_PASSWORD": "fuzz-kafka", "EMPTY": "", "HOST": "127.0.0.1"]
    static let folder: String = {
        let folder = NSTemporaryDirectory() + "sluice-fuzz-config"
        try? FileManager.default.createDirectory(atPath: folder + "/functions", withIntermediateDirectories: true)
        try? Data("function transform(action, record, changes, metadata) return record end\n".utf8)
            .write(to: URL(fileURLWithPath: folder + "/functions/slim.lua"))
        return folder
    }()

    static func run(_ input: UnsafeRawBufferPointer) {
        let text = String(decoding: input, as: UTF8.self)
        guard let root = try? ConfigYAML.node(fromYAML: text) ?? .mapping([]) else { return }
        switch ConfigReader.read(root, environment: environment, baseDirectory: folder) {
        case .success(let config):
            _ = config.sinks.count
        case .failure(let errors):
            FuzzRun.require(!errors.errors.isEmpty, "a refused configuration without a problem")
            for error in errors.errors {
                FuzzRun.require(!error.description.isEmpty, "a problem without a text")
            }
            _ = errors.description
        }
    }
}

// scripts/fuzz builds with -DSLUICE_LIBFUZZER and `--sanitize fuzzer`: libFuzzer brings `main` and calls
// this for every input. Without it (a plain `swift build`) the target is a replay tool.
#if SLUICE_LIBFUZZER
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    ConfigTarget.run(FuzzRun.buffer(data, size))
    return 0
}
#else
@main
enum FuzzConfigMain {
    static func main() { FuzzRun.replay(ConfigTarget.run) }
}
#endif
