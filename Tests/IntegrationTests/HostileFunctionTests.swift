import Foundation
import Testing

/// Lua that tries to take the pipeline down — a backtracking pattern, a pattern over a long subject,
/// strings and tables towards the memory cap, endless recursion — fails its own message, which is
/// parked and explained, while the process and the other sinks go on delivering.
@Suite(.serialized)
struct HostileFunctionTests {
    /// What each row's `kind` makes the transform do (default budgets: 1,000,000 instructions, 16 MB).
    static let hostile: [(kind: String, lua: String, error: String)] = [
        ("backtrack", #"string.find(string.rep("a", 40), string.rep("a?", 40) .. string.rep("a", 40))"#,
         "functions[0].code:3: exceeded its budget of 1000000 instructions (functions[].max_instructions)"),
        ("long-subject", #"string.find(string.rep("a", 30000) .. "b", ".-.-.-.-c")"#,
         "functions[0].code:3: exceeded its budget of 1000000 instructions (functions[].max_instructions)"),
        ("big-string", #"local parts = {} for i = 1, 64 do parts[i] = string.rep(string.char(64 + i), 2^20) end"#,
         "functions[0].code: exceeded its memory limit of 16 MB (functions[].max_memory_mb)"),
        ("recursion", "local function deeper(n) return deeper(n + 1) + 1 end deeper(1)",
         "functions[0].code: exceeded its memory limit of 16 MB (functions[].max_memory_mb)"),
        ("huge-table", #"local t = {} for i = 1, 1e9 do t[#t + 1] = { id = i, name = "row " .. i } end"#,
         "functions[0].code: exceeded its memory limit of 16 MB (functions[].max_memory_mb)"),
    ]

    @Test func hostileLuaFailsItsOwnMessageWhileTheProcessAndOtherSinksGoOn() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let shaped = fixture.topic("hostile")
        let plain = fixture.topic("plain")
        try db.execute("CREATE TABLE public.t (id int PRIMARY KEY, kind text NOT NULL)")
        // One case per line, from line 3 on, so each error names its own line.
        var code = "function transform(action, record, changes, metadata)\n  local kind = record.kind\n"
        for entry in Self.hostile { code += "  if kind == \"\(entry.kind)\" then \(entry.lua) end\n" }
        code += "  return { id = record.id, kind = kind }\nend"
        let transform = FunctionDeclaration(name: "hostile", type: "transform", code: code)
        let config = fixture.config(tables: ["public.t"], sinks: [
            .init(name: "hostile", topic: shaped, extra: "    transform: hostile\n"),
            .init(name: "plain", topic: plain),
        ]) + FunctionDeclaration.yaml([transform])
        let (sluice, console) = try fixture.startSluiceWithConsole(config: config, token: "hostile-token")

        let started = Date()
        for (index, entry) in Self.hostile.enumerated() {
            try db.execute("INSERT INTO public.t VALUES ($1, $2)", [String(index + 1), entry.kind])
        }
        try db.execute("INSERT INTO public.t VALUES (100, 'fine')")

        // The other sink receives every row, the hostile ones included.
        let plainMessages = try plain.waitForMessages(Self.hostile.count + 1, timeout: 60)
        #expect(plainMessages.compactMap { $0.record["id"] as? Int }.sorted() == [1, 2, 3, 4, 5, 100], "log:\n\(sluice.log)")
        // The function's sink sends the row it can handle …
        let shapedMessages = try shaped.waitForMessages(1, timeout: 60)
        #expect(shapedMessages.map(\.payload) == [#"{"id":100,"kind":"fine"}"#])

        // … and parks each hostile row with the reason, visible in the API.
        var failing: [[String: Any]] = []
        #expect(try eventually(timeout: 30, every: 0.5) {
            failing = try console.messages("hostile", state: "failing")
            return failing.count == Self.hostile.count
        }, "\(failing); log:\n\(sluice.log)")
        for (index, entry) in Self.hostile.enumerated() {
            let message = failing.first { $0.string("key") == String(index + 1) }
            let expected = entry.error.replacingOccurrences(of: "code:3:", with: "code:\(index + 3):")
            #expect(message?.string("last_error") == expected, "\(entry.kind): \(message ?? [:])")
        }
        if failing.count == Self.hostile.count {
            print("hostile functions: every row delivered to the other sink, every hostile row parked with its reason, in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        }

        // `sluice messages` says the same.
        let listing = try runCommand(fixture.environment.sluiceBinary, ["messages", "--config", sluice.configURL.path, "--state", "failing"])
        #expect(listing.status == 0, "\(listing)")
        #expect(listing.stdout.contains("exceeded its budget of 1000000 instructions"), "\(listing.stdout)")
        #expect(listing.stdout.contains("exceeded its memory limit of 16 MB"), "\(listing.stdout)")

        // The process lives, and keeps delivering to both sinks while the hostile rows are retried.
        try db.execute("INSERT INTO public.t VALUES (101, 'fine')")
        #expect(try plain.waitForMessages(7, timeout: 30).count == 7)
        #expect(try shaped.waitForMessages(2, timeout: 30).map(\.payload).last == #"{"id":101,"kind":"fine"}"#)
        #expect(sluice.process.isRunning)
        #expect(try console.get("/healthz", auth: .none).status == 200)
        #expect(sluice.stop() == 0)
    }
}
