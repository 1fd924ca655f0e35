import Functions
import SluiceCore
import Testing

/// User code reaches no files, processes, loaders or the garbage collector; the pure libraries work.
@Suite struct SandboxTests {
    static let order = message(record: #"{"id":1,"name":"Ada Lovelace"}"#)

    @Test(arguments: [
        #"io.open("/etc/passwd")"#,
        #"io.write("x")"#,
        #"os.execute("touch /tmp/sluice-sandbox-escape")"#,
        #"os.getenv("HOME")"#,
        #"load("return 1")"#,
        #"loadstring("return 1")"#,
        #"dofile("/etc/passwd")"#,
        #"loadfile("/etc/passwd")"#,
        #"require("os")"#,
        #"collectgarbage("count")"#,
        "string.dump(filter)",
        #"("x"):dump()"#,
        "debug.getinfo(1)",
        "package.loaded",
        "coroutine.create(print)",
    ])
    func unavailable(expression: String) throws {
        let f = try function(.filter, "function filter(action, record)\n  local _ = \(expression)\n  return true\nend")
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.order) }
        #expect(thrown?.message.hasPrefix("functions[0].code:2: attempt to") == true)
        #expect(thrown?.message.contains("a nil value") == true)
    }

    @Test func unavailableWhileLoadingTheChunkToo() {
        let thrown = #expect(throws: FunctionError.self) {
            try function(.filter, #"os.execute("true")"# + "\nfunction filter() return true end")
        }
        #expect(thrown?.message == "functions[0].code:1: attempt to index a nil value (global 'os')")
    }

    /// A finalizer would run when the collector does — also outside the budgets, while Sluice pushes a
    /// message or closes the state — so an endless one could hang the sink.
    @Test func finalizersAreRefused() {
        let thrown = #expect(throws: FunctionError.self) {
            try function(.filter, "local t = {}\nsetmetatable(t, {__gc = function() end})\nfunction filter() return true end")
        }
        #expect(thrown?.message == "functions[0].code:2: __gc metamethods are not available to Sluice functions")
    }

    @Test func otherMetatablesWork() throws {
        let f = try function(.filter, """
            local defaults = setmetatable({}, {__index = function(_, key) return key .. "?" end})
            local mt = {}
            local late = setmetatable({}, mt)
            mt.__gc = function() while true do end end -- set after setmetatable: never called
            function filter(action, record) return defaults.region == "region?" and getmetatable(late) == mt end
            """)
        for _ in 0..<3 { #expect(try f.filter(Self.order)) }
    }

    @Test func precompiledChunksAreRefused() {
        let thrown = #expect(throws: FunctionError.self) { try function(.filter, "\u{1B}Lua") }
        #expect(thrown?.message.contains("attempt to load a binary chunk") == true)
    }

    @Test func pureLibrariesWork() throws {
        let f = try function(.transform, #"""
            function transform(action, record)
              local first, last = record.name:match("^(%a+) (%a+)$")
              local parts = {last, first}
              table.sort(parts)
              return {
                upper = string.upper(first),
                joined = table.concat(parts, ","),
                floor = math.floor(7.9),
                max = math.max(3, record.id, 2),
                len = utf8.len("Zürich"),
                formatted = string.format("%05d|%.2f", record.id, 2.5),
                kind = type(record) .. "/" .. math.type(record.id),
                counted = select("#", pairs(record)),
                safe = pcall(error, "caught"),
              }
            end
            """#)
        #expect(String(decoding: try f.transform(Self.order), as: UTF8.self)
            == #"{"counted":3,"floor":7,"formatted":"00001|2.50","joined":"Ada,Lovelace","kind":"table/integer","len":6,"max":3,"safe":false,"upper":"ADA"}"#)
    }

    @Test func globalsPersistBetweenMessages() throws {
        let f = try function(.transform, "seen = 0\nfunction transform(action, record) seen = seen + 1 return seen end")
        #expect(try f.transform(Self.order) == "1".bytes)
        #expect(try f.transform(Self.order) == "2".bytes)
    }

    @Test func eachFunctionHasItsOwnState() throws {
        let code = "function transform() marker = (marker or 0) + 1 return marker end"
        let first = try function(.transform, code)
        let second = try function(.transform, code)
        _ = try first.transform(Self.order)
        #expect(try first.transform(Self.order) == "2".bytes)
        #expect(try second.transform(Self.order) == "1".bytes)
    }
}
