import Functions
import SluiceCore
import Testing

/// Runaway code fails the message it ran on, with a reason; the function keeps working for the next one.
@Suite struct BudgetTests {
    static let runaway = message(record: #"{"id":1}"#)
    static let normal = message(record: #"{"id":2}"#)

    /// A filter that misbehaves on record 1 and returns true for any other.
    static func filter(misbehaving body: String, maxInstructions: Int = 10_000, maxMemoryMB: Int = 16) throws -> UserFunction {
        try function(.filter, """
            function filter(action, record)
              if record.id == 1 then
                \(body)
              end
              return true
            end
            """, maxInstructions: maxInstructions, maxMemoryMB: maxMemoryMB)
    }

    @Test func endlessLoopRunsOutOfInstructions() throws {
        let f = try Self.filter(misbehaving: "while true do end")
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.runaway) }
        #expect(thrown?.message.hasPrefix("functions[0].code:3: exceeded its budget of 10000 instructions") == true)
        #expect(try f.filter(Self.normal))
    }

    @Test func pcallCannotOutlastTheBudget() throws {
        let f = try Self.filter(misbehaving: "while true do pcall(function() while true do end end) end")
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.runaway) }
        #expect(thrown?.message.contains("exceeded its budget of 10000 instructions") == true)
        #expect(try f.filter(Self.normal))
    }

    @Test func theBudgetIsPerMessage() throws {
        // About 4,000 instructions a call: 20 calls together are far over the budget, each alone is not.
        let f = try function(.filter, "function filter() local n = 0 for i = 1, 1000 do n = n + i end return n > 0 end",
                             maxInstructions: 10_000)
        for _ in 0..<20 { #expect(try f.filter(Self.normal)) }
    }

    @Test func endlessLoopWhileLoadingTheChunk() {
        let thrown = #expect(throws: FunctionError.self) {
            try function(.filter, "while true do end\nfunction filter() return true end", maxInstructions: 10_000)
        }
        #expect(thrown?.message.hasPrefix("functions[0].code:1: exceeded its budget of 10000 instructions") == true)
    }

    @Test func hugeStringRunsOutOfMemory() throws {
        let f = try Self.filter(misbehaving: #"local s = string.rep("x", 2^30)"#)
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.runaway) }
        #expect(thrown?.message.contains("exceeded its memory limit of 16 MB") == true)
        #expect(try f.filter(Self.normal))
    }

    @Test func growingTableRunsOutOfMemory() throws {
        let f = try Self.filter(misbehaving: "local t = {} for i = 1, 1e9 do t[i] = i end",
                                maxInstructions: 100_000_000, maxMemoryMB: 2)
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.runaway) }
        #expect(thrown?.message.contains("exceeded its memory limit of 2 MB") == true)
        #expect(try f.filter(Self.normal))
    }

    @Test func memoryIsReclaimedBetweenMessages() throws {
        // 30 messages of about 100 KB each: far more than the 1 MB limit together, each fits alone.
        let f = try function(.transform, #"function transform(action, record) return {n = #record.text, copy = record.text .. "!"} end"#,
                             maxMemoryMB: 1)
        let text = String(repeating: "x", count: 100_000)
        let expected = #"{"copy":"\#(text)!","n":100000}"#.bytes
        var sent = 0
        for _ in 0..<30 where try f.transform(message(record: #"{"text":"\#(text)"}"#)) == expected { sent += 1 }
        #expect(sent == 30)
    }

    @Test func memoryFailureInsidePcallDoesNotBreakTheState() throws {
        let f = try Self.filter(misbehaving: #"local ok = pcall(string.rep, "x", 2^30) if not ok then return false end"#)
        #expect(try !f.filter(Self.runaway))
        #expect(try f.filter(Self.normal))
    }

    @Test func deepRecursionFails() throws {
        let f = try Self.filter(misbehaving: "local function f(n) return f(n + 1) + 1 end\n    f(1)",
                                maxInstructions: 1_000_000)
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.runaway) }
        // With the default budgets the stack outgrows the memory limit first.
        #expect(thrown?.message.hasPrefix("functions[0].code: exceeded its memory limit of 16 MB") == true)
        #expect(try f.filter(Self.normal))
    }

    @Test func recursionThroughLibraryFunctionsFails() throws {
        let viaGsub = try Self.filter(misbehaving: #"local function f(s) return (s:gsub(".", f)) end f("ab")"#)
        let thrown = #expect(throws: FunctionError.self) { try viaGsub.filter(Self.runaway) }
        #expect(thrown?.message.contains("C stack overflow") == true)
        #expect(try viaGsub.filter(Self.normal))

        let viaIndex = try Self.filter(misbehaving: "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) local _ = t.x")
        let indexed = #expect(throws: FunctionError.self) { try viaIndex.filter(Self.runaway) }
        #expect(indexed?.message == "functions[0].code:3: C stack overflow")
        #expect(try viaIndex.filter(Self.normal))
    }

    @Test func everyFailureLeavesTheFunctionUsable() throws {
        let f = try function(.transform, #"""
            function transform(action, record)
              if record.id == 1 then while true do end end
              if record.id == 2 then local s = string.rep("x", 2^30) end
              if record.id == 3 then error({}) end
              if record.id == 4 then error("plain") end
              if record.id == 5 then local function f(n) return f(n + 1) + 1 end f(1) end
              return {id = record.id}
            end
            """#, maxInstructions: 200_000)
        for round in 0..<3 {
            for id in 1...5 {
                #expect(throws: FunctionError.self, "round \(round), id \(id)") {
                    try f.transform(message(record: #"{"id":\#(id)}"#))
                }
                #expect(try f.transform(message(record: #"{"id":\#(10 + id)}"#)) == #"{"id":\#(10 + id)}"#.bytes)
            }
        }
    }

    /// Tables and strings that grow across the allocator's small-block sizes (16…256 bytes, then
    /// malloc) keep their contents, call after call, while freed blocks are reused.
    @Test func growingValuesKeepTheirContentsAcrossCalls() throws {
        let f = try function(.transform, #"""
            function transform(action, record)
              local t, s = {}, ""
              for i = 1, 300 do
                t[i] = record.id * 1000 + i
                s = s .. string.char(65 + (record.id + i) % 26)
              end
              local h = {}
              for i = 1, 40 do h["k" .. i] = i * record.id end
              return { n = #t, first = t[1], last = t[300], len = #s, head = s:sub(1, 3), tail = s:sub(-3), h40 = h.k40 }
            end
            """#, maxInstructions: 200_000)
        for id in 1...200 {
            let letters = (1...300).map { Character(Unicode.Scalar(UInt8(65 + (id + $0) % 26))) }
            let expected = #"{"n":300,"first":\#(id * 1000 + 1),"last":\#(id * 1000 + 300),"len":300,"#
                + #""head":"\#(String(letters.prefix(3)))","tail":"\#(String(letters.suffix(3)))","h40":\#(40 * id)}"#
            let got = try f.transform(message(record: #"{"id":\#(id)}"#))
            #expect(Set(String(decoding: got, as: UTF8.self).dropFirst().dropLast().split(separator: ","))
                    == Set(expected.dropFirst().dropLast().split(separator: ",")), "id \(id)")
        }
    }
}
