import ArgumentParser
import ConfigYAML
import Foundation
import SluiceCore

/// `sluice import-sequin`: a Sequin user's sequin.yml becomes a Sluice configuration.
struct ImportSequin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-sequin",
        abstract: "Write a Sluice configuration from a Sequin configuration file (sequin.yml).",
        discussion: """
            Carries over the database, its slot and publication, every Kafka sink with its settings, and the \
            functions those sinks use (Elixir functions become Lua stubs that fail until ported). Everything \
            Sluice has no equivalent for is listed on standard error, one line each. ${VAR} references are \
            copied as they are. With several databases, one file per database: --out sluice.yml writes \
            sluice.<database>.yml. Exit code 2 when the file is unreadable, not valid, or has no Kafka sink.
            """)

    @Option(help: "The Sequin configuration file.")
    var from: String

    @Option(help: "The Sluice configuration to write.")
    var out: String = "sluice.yml"

    @Flag(help: "Replace output files that already exist.")
    var force = false

    func run() throws {
        let root = try readInput()
        let folder = (from as NSString).deletingLastPathComponent
        var importer = SequinImport { file in
            let full = file.hasPrefix("/") ? file : ((folder.isEmpty ? "." : folder) as NSString).appendingPathComponent(file)
            return try? String(contentsOfFile: full, encoding: .utf8)
        }
        let outputs: [SequinImport.Output]
        do {
            outputs = try importer.run(root)
        } catch {
            report(importer.notes)
            fail("\(from): \(error)", code: 2)
        }
        report(importer.notes)

        let paths = outputs.count == 1 ? [out] : outputs.map { Self.path(out, tag: $0.tag) }
        if !force, let existing = paths.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            fail("\(existing): exists — give --force to replace it, or choose another --out", code: 1)
        }
        for (output, path) in zip(outputs, paths) {
            let text = YAMLWriter.document(output.document, header: header(for: output, path: path, notes: importer.notes))
            // The file may hold passwords written in sequin.yml: readable by its owner only.
            guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                fail("\(path): cannot write the file", code: 1)
            }
            try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
            let sinks = output.sinkNames.count == 1 ? "1 sink" : "\(output.sinkNames.count) sinks"
            let functions = output.functionNames.count == 1 ? "1 function" : "\(output.functionNames.count) functions"
            print("wrote \(path) (database \(SequinImport.shown(output.databaseName)): \(sinks), \(functions))")
        }
    }

    /// The Sequin file as a tree, read as written: no environment interpolation, so `${VAR}` stays.
    private func readInput() throws -> ConfigNode {
        let text: String
        guard FileManager.default.fileExists(atPath: from) else { fail("\(from): no such file", code: 2) }
        do {
            text = try String(contentsOfFile: from, encoding: .utf8)
        } catch {
            fail("\(from): cannot read the Sequin file: \((error as NSError).localizedDescription)", code: 2)
        }
        let node: ConfigNode?
        do throws(ConfigYAML.ParseError) {
            node = try ConfigYAML.node(fromYAML: text)
        } catch {
            fail("\(from): not valid YAML — \(error.reason)", code: 2)
        }
        guard let node else { fail("\(from): is empty — expected a Sequin configuration with databases: and sinks:", code: 2) }
        return node
    }

    /// `sluice.yml` + `app` → `sluice.app.yml`.
    static func path(_ out: String, tag: String) -> String {
        let ext = (out as NSString).pathExtension
        guard !ext.isEmpty else { return out + ".\(tag).yml" }
        return (out as NSString).deletingPathExtension + ".\(tag).\(ext)"
    }

    private func header(for output: SequinImport.Output, path: String, notes: [SequinImport.Note]) -> [String] {
        var lines = [
            "Written by sluice import-sequin from \((from as NSString).lastPathComponent) (Sequin database \(SequinImport.shown(output.databaseName))).",
            "${VAR} references are read from the environment when sluice starts. Check it: sluice check --config \(path)",
        ]
        if !notes.isEmpty {
            lines.append("Not carried over, or changed on the way (also printed by the import):")
            lines += notes.map { "  \($0)" }
        }
        return lines
    }

    private func report(_ notes: [SequinImport.Note]) {
        guard !notes.isEmpty else { return }
        FileHandle.standardError.write(Data(notes.map { "\($0)\n" }.joined().utf8))
    }

    private func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        Foundation.exit(code)
    }
}
