import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Console
import Ledger
import Pipeline
import SluiceCore

/// `sluice messages`: what is in flight, failing, delivered and cancelled, from the running
/// instance's API — or, when none answers, from the state file.
struct Messages: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List messages by state, or retry or cancel a failing one.",
        subcommands: [MessagesList.self, MessagesRetry.self, MessagesCancel.self], defaultSubcommand: MessagesList.self)
}

struct MessagesOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "sluice.yml"

    @Option(help: "Only this sink.")
    var sink: String?

    func load() throws -> SluiceConfig {
        do { return try ConfigFile.load(path: config) } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
    }

    func sinks(of config: SluiceConfig) throws -> [String] {
        guard let sink else { return config.sinks.map(\.name) }
        guard config.sinks.contains(where: { $0.name == sink }) else {
            FileHandle.standardError.write(Data("--sink: \"\(sink)\" is not a sink of \(self.config) — sinks: \(config.sinks.map(\.name).joined(separator: ", "))\n".utf8))
            throw ExitCode(2)
        }
        return [sink]
    }
}

struct MessagesList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List messages (the default).")

    @OptionGroup var options: MessagesOptions

    @Option(help: "in_flight, waiting, failing, delivered or cancelled (default: all).")
    var state: String?

    @Option(help: "At most this many per sink and state, 1-1000.")
    var limit: Int = 20

    @Flag(help: "Print JSON (one object per sink) instead of a table.")
    var json = false

    func validate() throws {
        if let state, MessageState(rawValue: state) == nil {
            throw ValidationError("--state: \"\(state)\" — use in_flight, waiting, failing, delivered or cancelled")
        }
        if !(1...MessageInspector.maxLimit).contains(limit) { throw ValidationError("--limit: \(limit) — give 1 to 1000") }
    }

    func run() async throws {
        let config = try options.load()
        let states = state.flatMap(MessageState.init(rawValue:)).map { [$0] } ?? MessageState.allCases
        var rows: [(sink: String, message: [String: Any])] = []
        var jsonOutput: [String] = []
        if let client = ConsoleClient(config: config), let _ = try await client.get("/api/status") {
            for sink in try options.sinks(of: config) {
                var query = "limit=\(limit)"
                if let state { query += "&state=\(state)" }
                guard let answer = try await client.get("/api/sinks/\(client.escape(sink))/messages?\(query)") else {
                    throw ExitCode(1)
                }
                jsonOutput.append("{\"sink\":\(Self.quoted(sink)),\"messages\":" + Self.messagesArray(answer.body) + "}")
                for message in Self.parse(answer.body) { rows.append((sink, message)) }
            }
        } else {
            let ledger: any StateStore
            do { ledger = try openStateForReading(config) } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw ExitCode(1)
            }
            FileHandle.standardError.write(Data(
                "sluice is not running (no console answered): showing \(ledger.location); in-flight and waiting messages are unknown\n".utf8))
            let inspector = MessageInspector(offline: ledger, config: config)
            for sink in try options.sinks(of: config) {
                var found: [InspectedMessage] = []
                for state in states where state != .inFlight && state != .waiting {
                    found += (try? inspector.messages(sink: sink, state: state, limit: limit)) ?? []
                }
                let text = String(decoding: try MessageListJSON.encode(found), as: UTF8.self)
                jsonOutput.append("{\"sink\":\(Self.quoted(sink)),\"messages\":\(text)}")
                for message in Self.parse(Data(("{\"messages\":" + text + "}").utf8)) { rows.append((sink, message)) }
            }
        }
        if json {
            print("[" + jsonOutput.joined(separator: ",") + "]")
        } else {
            print(Self.table(rows))
        }
    }

    static func quoted(_ text: String) -> String {
        var writer = JSONWriter()
        writer.string(text)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    static func parse(_ body: Data) -> [[String: Any]] {
        ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any])?["messages"] as? [[String: Any]] ?? []
    }

    /// The `messages` array of an API answer, as it came.
    static func messagesArray(_ body: Data) -> String {
        let text = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix("{\"messages\":"), text.hasSuffix("}") else { return "[]" }
        return String(text.dropFirst("{\"messages\":".count).dropLast())
    }

    static func table(_ rows: [(sink: String, message: [String: Any])]) -> String {
        guard !rows.isEmpty else { return "no messages" }
        func text(_ value: Any?) -> String {
            switch value {
            case nil, is NSNull: ""
            case let list as [Any]: list.map { "\($0)" }.joined(separator: ",")
            case let some?: "\(some)"
            }
        }
        let header = ["SINK", "STATE", "ID", "TABLE", "ACTION", "KEY", "DELIVERIES", "DETAIL"]
        var lines = [header]
        for (sink, message) in rows {
            var detail = ""
            switch message["state"] as? String {
            case "failing": detail = text(message["last_error"]) + (message["next_attempt_at"].map { " (next \(text($0)))" } ?? "")
            case "delivered": detail = "partition \(text(message["partition"])) offset \(text(message["offset"]))"
            case "cancelled": detail = text(message["reason"]) + (text(message["last_error"]).isEmpty ? "" : ": " + text(message["last_error"]))
            default: detail = text(message["last_error"])
            }
            if detail.count > 90 { detail = String(detail.prefix(87)) + "..." }
            lines.append([sink, text(message["state"]), text(message["id"]), text(message["table"]), text(message["action"]),
                          text(message["key"]), text(message["deliver_count"]), detail])
        }
        let widths = header.indices.map { column in lines.map { $0[column].count }.max() ?? 0 }
        return lines.map { line in
            line.enumerated().map { $1.padding(toLength: $0 == line.count - 1 ? $1.count : widths[$0], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// `sluice messages retry ID` / `cancel ID`: only a running instance can act.
struct MessageAction {
    let options: MessagesOptions
    let id: String
    let action: String

    func run() async throws {
        let config = try options.load()
        guard let client = ConsoleClient(config: config), let _ = try await client.get("/api/status") else {
            FileHandle.standardError.write(Data(
                "sluice is not running (no console answered at console.listen): start it to \(action) messages\n".utf8))
            throw ExitCode(1)
        }
        for sink in try options.sinks(of: config) {
            let path = "/api/sinks/\(client.escape(sink))/messages/\(client.escape(id))"
            guard let found = try await client.get(path, allowing: [404]), found.status != 404 else { continue }
            guard let answer = try await client.post(path + "/" + action, allowing: [409]) else { throw ExitCode(1) }
            let object = (try? JSONSerialization.jsonObject(with: answer.body)) as? [String: Any] ?? [:]
            if answer.status == 409 {
                FileHandle.standardError.write(Data("\(object["error"] ?? "refused")\n".utf8))
                throw ExitCode(1)
            }
            print(action == "retry" ? "\(sink) \(id): retrying now" : "\(sink) \(id): cancelled (reason user); its group moves on")
            return
        }
        FileHandle.standardError.write(Data("no sink has a message \(id)\n".utf8))
        throw ExitCode(1)
    }
}

struct MessagesRetry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "retry", abstract: "Try a failing message now.")
    @OptionGroup var options: MessagesOptions
    @Argument(help: "The message id (as listed).") var id: String
    func run() async throws { try await MessageAction(options: options, id: id, action: "retry").run() }
}

struct MessagesCancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Give up a failing message; its group moves on.")
    @OptionGroup var options: MessagesOptions
    @Argument(help: "The message id (as listed).") var id: String
    func run() async throws { try await MessageAction(options: options, id: id, action: "cancel").run() }
}

/// Talks to a running instance's console API (address and token from the same configuration).
struct ConsoleClient {
    let base: String
    let token: String
    let session: URLSession

    init?(config: SluiceConfig) {
        guard let console = config.console, let (host, port) = Run.hostPort(console.listen) else { return nil }
        let reachable = host == "0.0.0.0" || host == "::" || host.isEmpty ? "127.0.0.1" : host
        base = "http://" + (reachable.contains(":") ? "[\(reachable)]" : reachable) + ":\(port)"
        token = console.token
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 5
        session = URLSession(configuration: configuration)
    }

    func escape(_ part: String) -> String { part.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? part }

    /// nil when nothing answers; other statuses than 2xx and `allowing` are printed and fail.
    func get(_ path: String, allowing: Set<Int> = []) async throws -> (status: Int, body: Data)? {
        try await send("GET", path, allowing: allowing)
    }

    func post(_ path: String, allowing: Set<Int> = []) async throws -> (status: Int, body: Data)? {
        try await send("POST", path, allowing: allowing)
    }

    private func send(_ method: String, _ path: String, allowing: Set<Int>) async throws -> (status: Int, body: Data)? {
        guard let url = URL(string: base + path) else { return nil }
        var request = URLRequest(url: url)
        request.httpMethod = method
        if !token.isEmpty { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let data: Data, response: URLResponse
        do { (data, response) = try await session.data(for: request) } catch { return nil }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        if (200..<300).contains(status) || allowing.contains(status) { return (status, data) }
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        FileHandle.standardError.write(Data("\(base)\(path): \(status) \(object?["error"] ?? String(decoding: data, as: UTF8.self))\n".utf8))
        throw ExitCode(1)
    }
}
