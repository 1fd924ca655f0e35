import Foundation

/// Talks to a running sluice's console over HTTP, as a user's script (or Prometheus) would: with
/// curl, so every request is a real HTTP request to the real server.
struct ConsoleClient {
    let baseURL: String
    /// The bearer token sent with every request unless a request says otherwise.
    let token: String?

    init(port: Int, token: String?) {
        baseURL = "http://127.0.0.1:\(port)"
        self.token = token
    }

    /// One HTTP answer: status, headers (names lower-cased) and body.
    struct Answer: CustomStringConvertible {
        var status: Int
        var headers: [String: String]
        var body: String

        var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] }
        var error: String? { json?["error"] as? String }
        var description: String { "HTTP \(status): \(body.prefix(2000))" }
    }

    enum Auth {
        case configured
        case none
        case bearer(String)
        case header(String)
        case cookie(String)
    }

    /// `method path` with an optional form body; never follows redirects.
    func request(_ method: String, _ path: String, auth: Auth = .configured, form: String? = nil) throws -> Answer {
        let directory = FileManager.default.temporaryDirectory
        let headerPath = directory.appendingPathComponent(UUID().uuidString + ".headers").path
        defer { try? FileManager.default.removeItem(atPath: headerPath) }
        var arguments = ["-sS", "--max-time", "20", "-X", method, "-D", headerPath]
        switch auth {
        case .configured: if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        case .none: break
        case .bearer(let token): arguments += ["-H", "Authorization: Bearer \(token)"]
        case .header(let value): arguments += ["-H", "Authorization: \(value)"]
        case .cookie(let cookie): arguments += ["-H", "Cookie: \(cookie)"]
        }
        if let form { arguments += ["-H", "Content-Type: application/x-www-form-urlencoded", "--data-raw", form] }
        let result = try runCommand("/usr/bin/curl", arguments + [baseURL + path])
        guard result.status == 0 else { throw TestSetupError("curl \(method) \(path) failed (\(result.status)): \(result.stderr)") }
        let headerText = (try? String(contentsOfFile: headerPath, encoding: .utf8)) ?? ""
        var lines = headerText.components(separatedBy: "\r\n")
        let statusLine = lines.isEmpty ? "" : lines.removeFirst()
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { $0 + "\n" + value } ?? value
        }
        let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return Answer(status: status, headers: headers, body: result.stdout)
    }

    func get(_ path: String, auth: Auth = .configured) throws -> Answer { try request("GET", path, auth: auth) }
    func post(_ path: String, auth: Auth = .configured, form: String? = nil) throws -> Answer {
        try request("POST", path, auth: auth, form: form)
    }

    /// Waits until `/healthz` answers.
    func waitUntilServing(timeout: Double = 30) -> Bool {
        eventually(timeout: timeout, every: 0.2) { (try? get("/healthz", auth: .none).status) == 200 }
    }

    // MARK: - The JSON API

    /// A 2xx JSON object, or a thrown error naming the answer.
    func object(_ path: String) throws -> [String: Any] {
        let answer = try get(path)
        guard answer.status == 200, let json = answer.json else { throw TestSetupError("GET \(path): \(answer)") }
        return json
    }

    func status() throws -> [String: Any] { try object("/api/status") }

    func sinkStatus(_ sink: String) throws -> [String: Any] {
        let sinks = try status()["sinks"] as? [[String: Any]] ?? []
        guard let found = sinks.first(where: { $0["name"] as? String == sink }) else { throw TestSetupError("no sink \(sink) in /api/status") }
        return found
    }

    func messages(_ sink: String, state: String, limit: Int? = nil) throws -> [[String: Any]] {
        var path = "/api/sinks/\(sink)/messages?state=\(state)"
        if let limit { path += "&limit=\(limit)" }
        return try object(path)["messages"] as? [[String: Any]] ?? []
    }

    func message(_ sink: String, id: String) throws -> [String: Any] { try object("/api/sinks/\(sink)/messages/\(id)") }

    /// Polls until a message in `state` satisfies `condition`; returns the last one seen.
    func waitForMessage(_ sink: String, state: String, timeout: Double = 60,
                        where condition: ([String: Any]) -> Bool = { _ in true }) throws -> [String: Any]? {
        var found: [String: Any]?
        _ = try eventually(timeout: timeout, every: 0.25) {
            found = try messages(sink, state: state).first(where: condition)
            return found != nil
        }
        return found
    }

    // MARK: - Metrics

    func metrics() throws -> PrometheusText {
        let answer = try get("/metrics")
        guard answer.status == 200 else { throw TestSetupError("GET /metrics: \(answer)") }
        return PrometheusText(answer.body)
    }
}

/// Prometheus' text exposition format, parsed into samples.
struct PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    let text: String
    let samples: [Sample]

    init(_ text: String) {
        self.text = text
        samples = text.split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...])
            else { return nil }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else { return Sample(name: String(series), labels: [:], value: value) }
            var labels: [String: String] = [:]
            // name="value",name="value" — label values here never hold quotes or commas.
            for pair in series[series.index(after: brace)...].dropLast().split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { continue }
                labels[String(parts[0])] = String(parts[1]).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            return Sample(name: String(series[..<brace]), labels: labels, value: value)
        }
    }

    /// The value of the one series named `name` whose labels include `labels`; nil if there is none.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }

    func all(_ name: String, _ labels: [String: String] = [:]) -> [Sample] {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
    }
}

/// A console timestamp (ISO 8601, UTC, milliseconds) as a date.
func consoleDate(_ text: String?) -> Date? {
    guard let text else { return nil }
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.date(from: text)
}


extension Fixture {
    /// A sluice with the console on a free port of 127.0.0.1 (`token` set), and a client for it.
    func startSluiceWithConsole(config: String, token: String) throws -> (SluiceProcess, ConsoleClient) {
        let port = try freePort()
        let sluice = try startSluice(config: config + "console: { listen: \"127.0.0.1:\(port)\", token: \"\(token)\" }\n")
        let console = ConsoleClient(port: port, token: token)
        guard console.waitUntilServing() else { throw TestSetupError("the console did not answer on port \(port):\n\(sluice.log)") }
        return (sluice, console)
    }
}

extension Dictionary where Key == String, Value == Any {
    /// A JSON field as an integer (JSONSerialization gives NSNumber).
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
    func string(_ key: String) -> String? { self[key] as? String }
    /// True if the field is present and JSON null.
    func isNull(_ key: String) -> Bool { self[key] is NSNull }
}
