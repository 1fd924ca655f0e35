import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceCore

/// `sluice backfill …`: start, follow, list and cancel backfills of a running instance (through its API).
struct Backfill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a table's existing rows as read messages, while changes keep streaming.",
        subcommands: [BackfillStart.self, BackfillList.self, BackfillCancel.self])
}

struct BackfillStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start a backfill and show its progress until it completes (Ctrl-C detaches; it keeps running).")

    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "sluice.yml"

    @Option(help: "The sink to backfill.")
    var sink: String

    @Option(name: .customLong("table"), help: "A table of the sink (repeat for several; default: all of them).")
    var tables: [String] = []

    @Option(help: "Partial backfill: send rows in this column's order…")
    var sortColumn: String?

    @Option(help: "…from this value on (sort_column >= start_position).")
    var startPosition: String?

    func run() async throws {
        let client = try BackfillClient.connect(config: config)
        var body: [String: Any] = ["tables": tables]
        if let sortColumn { body["sort_column"] = sortColumn }
        if let startPosition { body["start_position"] = startPosition }
        let answer = try await client.send("POST", "/api/sinks/\(client.console.escape(sink))/backfills", body: body)
        let started = (answer["backfills"] as? [[String: Any]]) ?? [answer]
        let ids = started.compactMap { $0["id"] as? String }
        for backfill in started {
            print("started backfill \(backfill["id"] ?? "") of \(backfill["table"] ?? "") (about \(Self.count(backfill["rows_initial_count"])) rows)")
        }
        signal(SIGINT) { _ in
            let text = "\ndetached: the backfill keeps running — follow it with sluice backfill list\n"
            text.withCString { _ = write(2, $0, strlen($0)) }
            _exit(130)
        }
        try await follow(ids, client: client)
    }

    /// Shows progress (a redrawn bar on a terminal, a line per change otherwise) until every backfill ends.
    func follow(_ ids: [String], client: BackfillClient) async throws {
        let terminal = isatty(1) == 1
        let started = Date()
        var lastLines: [String: String] = [:]
        var firstProcessed: [String: (Date, Int)] = [:]
        while true {
            var ended = 0
            var failed = false
            for id in ids {
                let backfill = try await client.send("GET", "/api/backfills/\(id)")
                let state = backfill["state"] as? String ?? "?"
                let processed = backfill["rows_processed_count"] as? Int ?? 0
                let total = max(backfill["rows_initial_count"] as? Int ?? 0, processed)
                let table = backfill["table"] as? String ?? id
                if firstProcessed[id] == nil { firstProcessed[id] = (Date(), processed) }
                let (since, base) = firstProcessed[id]!
                let elapsed = Date().timeIntervalSince(since)
                let rate = elapsed > 0.5 ? Double(processed - base) / elapsed : 0
                var line = "\(table)  \(Self.bar(processed, of: total))  \(Self.count(processed)) / \(Self.count(total)) rows"
                if state == "active" {
                    line += "  \(Self.count(Int(rate))) rows/s"
                    if rate > 0, total > processed { line += "  ETA \(Self.duration(Double(total - processed) / rate))" }
                } else {
                    ended += 1
                    failed = failed || state != "completed"
                    line += "  \(state)"
                    if let error = backfill["last_error"] as? String { line += ": \(error)" }
                    if state == "completed" {
                        line += " — \(Self.count(backfill["rows_ingested_count"] as? Int ?? 0)) sent in \(Self.duration(Date().timeIntervalSince(started)))"
                    }
                }
                if terminal {
                    print("\r\u{1B}[2K" + line, terminator: ids.count > 1 ? "\n" : "")
                } else if lastLines[id] != line {
                    print(line)
                }
                lastLines[id] = line
            }
            if terminal && ids.count > 1 && ended < ids.count { print("\u{1B}[\(ids.count)A", terminator: "") }
            fflush(nil)
            if ended == ids.count {
                if terminal && ids.count == 1 { print("") }
                if failed { throw ExitCode(1) }
                return
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    static func bar(_ done: Int, of total: Int, width: Int = 24) -> String {
        let filled = total > 0 ? min(width, done * width / total) : 0
        return "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "]"
    }

    static func count(_ value: Any?) -> String {
        let number = (value as? Int) ?? 0
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        formatter.groupingSeparator = ","
        return formatter.string(from: NSNumber(value: number)) ?? "\(number)"
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        return total < 60 ? "\(total)s" : total < 3600 ? "\(total / 60)m\(total % 60)s" : "\(total / 3600)h\(total % 3600 / 60)m"
    }
}

struct BackfillList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List backfills, newest first.")

    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "sluice.yml"

    @Flag(help: "Print the API's JSON.")
    var json = false

    func run() async throws {
        let client = try BackfillClient.connect(config: config)
        let answer = try await client.send("GET", "/api/backfills")
        let backfills = answer["backfills"] as? [[String: Any]] ?? []
        if json {
            let data = try JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        guard !backfills.isEmpty else { return print("no backfills") }
        var lines = [["ID", "SINK", "TABLE", "STATE", "ROWS", "SENT", "STARTED"]]
        for backfill in backfills {
            let processed = backfill["rows_processed_count"] as? Int ?? 0
            let total = max(backfill["rows_initial_count"] as? Int ?? 0, processed)
            lines.append(["\(backfill["id"] ?? "")", "\(backfill["sink"] ?? "")", "\(backfill["table"] ?? "")",
                          "\(backfill["state"] ?? "")", "\(BackfillStart.count(processed))/\(BackfillStart.count(total))",
                          BackfillStart.count(backfill["rows_ingested_count"]), "\(backfill["inserted_at"] ?? "")"])
        }
        let widths = lines[0].indices.map { column in lines.map { $0[column].count }.max() ?? 0 }
        for line in lines {
            print(line.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
    }
}

struct BackfillCancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a backfill after its current page.")

    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "sluice.yml"

    @Argument(help: "The backfill's id.")
    var id: String

    func run() async throws {
        let client = try BackfillClient.connect(config: config)
        let answer = try await client.send("DELETE", "/api/backfills/\(client.console.escape(id))")
        print("cancelling backfill \(answer["id"] ?? id) of \(answer["table"] ?? ""): it stops after its current page")
    }
}

/// The backfill API of the running instance named by the configuration.
struct BackfillClient {
    let console: ConsoleClient

    static func connect(config path: String) throws -> BackfillClient {
        let config: SluiceConfig
        do { config = try ConfigFile.load(path: path) } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
        guard let console = ConsoleClient(config: config) else {
            FileHandle.standardError.write(Data("console.listen: not set in \(path) — backfills are started through the running instance's console API\n".utf8))
            throw ExitCode(2)
        }
        return BackfillClient(console: console)
    }

    /// The JSON object of a 2xx answer; otherwise prints the API's error and fails.
    func send(_ method: String, _ path: String, body: [String: Any]? = nil) async throws -> [String: Any] {
        guard let url = URL(string: console.base + path) else { throw ExitCode(1) }
        var request = URLRequest(url: url)
        request.httpMethod = method
        if !console.token.isEmpty { request.setValue("Bearer \(console.token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let data: Data, response: URLResponse
        do { (data, response) = try await console.session.data(for: request) } catch {
            FileHandle.standardError.write(Data("sluice is not running (no console answered at \(console.base)): start it first\n".utf8))
            throw ExitCode(1)
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard (200..<300).contains(status) else {
            FileHandle.standardError.write(Data("\(object["error"] ?? "the console answered \(status)")\n".utf8))
            throw ExitCode(1)
        }
        return object
    }
}
