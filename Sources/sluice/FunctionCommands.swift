import ArgumentParser
import Foundation
import Functions
import Ledger
import SluiceCore

/// `sluice fn …`: work on user functions without a database.
struct Fn: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Try the configuration's functions.", subcommands: [FnTest.self])
}

/// `sluice fn test`: runs one function on a Sequin-shaped message and prints what it made of it.
struct FnTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run one function on a message (JSON from a file or standard input) or on recently delivered messages.",
        discussion: """
            Prints keep or drop for a filter, the JSON for a transform or path, the topic and key for a routing
            function, or the error with its line. Exit code 1 when the function failed on a message.
            """)

    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "sluice.yml"

    @Option(name: .customLong("function"), help: "The function's name (functions[].name).")
    var function: String

    @Option(help: "A file holding one message as JSON; without it (and without --recent) standard input is read.")
    var message: String?

    @Option(help: "Run on the last N messages the sink delivered (kept in the state file; at most 20).")
    var recent: Int?

    @Option(help: "The sink whose recent messages to use and whose topic is the default (needed when several sinks use the function).")
    var sink: String?

    func validate() throws {
        if message != nil && recent != nil { throw ValidationError("give --message or --recent, not both") }
        if let recent, !(1...StateLimits.recentBodiesKept).contains(recent) {
            throw ValidationError("--recent: \(recent) — give 1 to \(StateLimits.recentBodiesKept)")
        }
    }

    func run() throws {
        let loaded: SluiceConfig
        do {
            loaded = try ConfigFile.load(path: config)
        } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
        guard let declared = loaded.functions.first(where: { $0.name == function }) else {
            let names = loaded.functions.map(\.name).joined(separator: ", ")
            fail("--function: \"\(function)\" is not declared in \(config)" + (names.isEmpty ? " (it declares no functions)" : " — declared: \(names)"),
                 code: 2)
        }
        if declared.kind == .enrichment {
            fail("--function: \"\(function)\" is an enrichment function: its SQL runs against the database, which fn test does not use — `sluice check` prepares it", code: 2)
        }
        let sinkConfig = try chooseSink(loaded, for: declared)
        let compiled: UserFunction
        do { compiled = try UserFunction(declared) } catch { fail(error.message, code: 2) }

        let inputs: [[UInt8]]
        if let recent {
            guard let sinkConfig else { fail("--recent needs --sink: say whose delivered messages to use", code: 2) }
            let ledger: any StateStore
            do { ledger = try openStateForReading(loaded) } catch { fail("\(error)", code: 1) }
            inputs = (try? ledger.recentBodies(sink: sinkConfig.name, limit: recent))?.reversed() ?? []
            if inputs.isEmpty {
                fail("sink \(sinkConfig.name) has delivered no messages yet (none are kept in \(ledger.location))", code: 1)
            }
        } else if let message {
            guard let data = FileManager.default.contents(atPath: message) else { fail("--message: cannot read \(message)", code: 2) }
            inputs = [[UInt8](data)]
        } else {
            inputs = [[UInt8](FileHandle.standardInput.readDataToEndOfFile())]
        }

        var failed = false
        for (index, input) in inputs.enumerated() {
            let prefix = inputs.count > 1 ? "[\(index + 1)] " : ""
            do {
                print(prefix + (try result(of: compiled, on: input, defaultTopic: sinkConfig?.destination.topic)))
            } catch {
                failed = true
                print(prefix + "error: \(error.message)")
            }
        }
        if failed { throw ExitCode(1) }
    }

    private func result(of function: UserFunction, on input: [UInt8], defaultTopic: String?) throws(FunctionError) -> String {
        switch function.config.kind {
        case .filter:
            return try function.filter(input) ? "keep" : "drop"
        case .transform, .path:
            return String(decoding: try function.transform(input), as: UTF8.self)
        case .routing:
            let route = try function.route(input)
            let defaultKey = Self.defaultKey(of: input)
            let topic = route.topic ?? defaultTopic.map { "\($0) (the sink's topic)" } ?? "(the sink's topic)"
            let key = route.messageKey.map { String(decoding: $0, as: UTF8.self) }
                ?? (defaultKey.map { "\($0) (the primary key)" } ?? "(the primary key)")
            return "topic: \(topic)\nmessage_key: \(key)"
        case .enrichment:
            fail("enrichment functions are not run by fn test", code: 2)
        }
    }

    /// metadata.record_pks joined with ':', as Sluice's default key.
    static func defaultKey(of input: [UInt8]) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(input)) as? [String: Any],
              let metadata = object["metadata"] as? [String: Any], let pks = metadata["record_pks"] as? [Any], !pks.isEmpty
        else { return nil }
        return pks.map { "\($0)" }.joined(separator: ":")
    }

    private func chooseSink(_ config: SluiceConfig, for function: FunctionConfig) throws -> SinkConfig? {
        if let sink {
            guard let found = config.sinks.first(where: { $0.name == sink }) else {
                fail("--sink: \"\(sink)\" is not a sink of \(config) — sinks: \(config.sinks.map(\.name).joined(separator: ", "))", code: 2)
            }
            return found
        }
        let users = config.sinks.filter { [$0.filter, $0.routing, $0.transform].contains { $0?.name == function.name } }
        if users.count == 1 { return users[0] }
        return config.sinks.count == 1 ? config.sinks[0] : nil
    }

    private func fail(_ line: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data((line + "\n").utf8))
        Foundation.exit(code)
    }
}
