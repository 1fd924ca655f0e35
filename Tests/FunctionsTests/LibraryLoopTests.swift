import Foundation
import Functions
import SluiceCore
import Testing

/// Library functions that loop in C — pattern matching, `string.rep`, `table.move`/`insert`/`remove`/`sort` —
/// run no VM instructions, so Lua's count hook never fires inside them: they charge their steps to the
/// same budget. Each hostile call here would run for hours (or forever) in stock Lua 5.4.
@Suite struct LibraryLoopTests {
    static let budget = 1_000_000

    /// A filter that runs `body` on record 1 and returns true for any other.
    static func filter(misbehaving body: String) throws -> UserFunction {
        try function(.filter, """
            function filter(action, record)
              if record.id == 1 then
                \(body)
              end
              return true
            end
            """, maxInstructions: budget)
    }

    /// Runs `call` on a thread of its own and waits up to `seconds`: nil if it is still running (the
    /// thread is left to spin; the test has failed by then).
    static func bounded<T: Sendable>(seconds: Double = 20, _ call: @escaping @Sendable () throws -> T) -> Result<T, Error>? {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        Thread.detachNewThread {
            box.result = Result { try call() }
            done.signal()
        }
        return done.wait(timeout: .now() + seconds) == .success ? box.result : nil
    }

    /// Record 1 fails with the budget's error within seconds; record 2 still passes.
    func expectBudgetError(_ body: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let f = UncheckedFunction(try Self.filter(misbehaving: body))
        let started = Date()
        guard let outcome = Self.bounded({ try f.function.filter(message(record: #"{"id":1}"#)) }) else {
            Issue.record("still running after 20 s: the budget did not stop it", sourceLocation: sourceLocation)
            return
        }
        let seconds = Date().timeIntervalSince(started)
        switch outcome {
        case .success(let kept):
            Issue.record("finished (\(kept)) in \(seconds) s instead of running out of its budget", sourceLocation: sourceLocation)
        case .failure(let error):
            #expect((error as? FunctionError)?.message == "functions[0].code:3: exceeded its budget of 1000000 instructions (functions[].max_instructions)",
                    "\(error)", sourceLocation: sourceLocation)
        }
        #expect(try f.function.filter(message(record: #"{"id":2}"#)), "the function still works", sourceLocation: sourceLocation)
    }

    @Test func backtrackingPatternRunsOutOfInstructions() throws {
        // 2^40 ways to split the a's between the optional and the required ones.
        try expectBudgetError(#"string.find(string.rep("a", 40), string.rep("a?", 40) .. string.rep("a", 40))"#)
    }

    @Test func nestedLazyRepetitionOnALongSubjectRunsOutOfInstructions() throws {
        // About 30000^4 / 24 tries: every way to place four lazy runs before a "b" that never comes.
        try expectBudgetError(#"string.find(string.rep("a", 30000), ".-.-.-.-b")"#)
    }

    @Test func everyMatchingFunctionIsCounted() throws {
        try expectBudgetError(#"string.match(string.rep("a", 30000), "a*a*a*a*b")"#)
        try expectBudgetError(#"for w in string.gmatch(string.rep("a", 30000), "a-a-a-a-b") do end"#)
        try expectBudgetError(#"string.gsub(string.rep("a", 30000), "a*a*a*a*b", "")"#)
        try expectBudgetError(#"("a"):rep(30000):find("(a*)(a*)(a*)%1%2%3b")"#)
    }

    @Test func scansInsideOneStepAreCounted() throws {
        // A balanced match scanning to the end from every start.
        try expectBudgetError(#"string.find(string.rep("(", 4e6), "%b()")"#)
        // A plain search comparing a long needle at every position.
        try expectBudgetError(#"string.find(string.rep("a", 4e6), string.rep("a", 2e6) .. "b", 1, true)"#)
        // A character class as long as the subject, read for every character.
        try expectBudgetError(#"string.find(string.rep("a", 1e6), "[" .. string.rep("b", 1e6) .. "]")"#)
    }

    @Test func pcallCannotCatchTheBudgetOfAPattern() throws {
        try expectBudgetError(#"pcall(string.find, string.rep("a", 40), string.rep("a?", 40) .. string.rep("a", 40)) return true"#)
    }

    @Test func tableLoopsInCAreCounted() throws {
        try expectBudgetError("table.move({}, 1, 1e12, 2)")
        try expectBudgetError("table.insert(setmetatable({}, {__len = function() return 1e12 end}), 1, true)")
        try expectBudgetError("table.remove(setmetatable({}, {__len = function() return 1e12 end}), 1)")
        try expectBudgetError("table.sort(setmetatable({}, {__len = function() return 2^31 - 2 end}), rawequal)")
    }

    @Test func repeatingTheEmptyStringReturnsAtOnce() throws {
        // Lua's own string.rep copies zero bytes 2^62 times.
        let f = UncheckedFunction(try function(.transform, #"function transform() return { a = string.rep("", 2^62), b = string.rep("", 2^62, "") } end"#))
        let outcome = Self.bounded { try f.function.transform(message(record: "{}")) }
        #expect(try outcome?.get() == #"{"a":"","b":""}"#.bytes)
    }

    /// The counted functions match, capture, substitute and fail exactly as Lua's own (the expected
    /// lines are stock Lua 5.4's output for the same code; Lua's own test file testes/pm.lua passes too).
    @Test func countedFunctionsBehaveAsLuasOwn() throws {
        let output = try function(.transform, """
            function transform()
            \(Self.cases)
            end
            """).transform(message(record: "{}"))
        let lines = (try JSONSerialization.jsonObject(with: Data(output), options: .fragmentsAllowed) as? String)?
            .components(separatedBy: "\n") ?? []
        #expect(lines.count == Self.expected.count)
        for (index, (got, expected)) in zip(lines, Self.expected).enumerated() {
            #expect(got == expected, "line \(index + 1)")
        }
    }

    static let cases = #"""
    local function show(...)
      local t = table.pack(...)
      for i = 1, t.n do t[i] = tostring(t[i]) end
      return table.concat(t, ",", 1, t.n)
    end
    local out = {}
    local function add(...) out[#out + 1] = show(...) end
    add(string.find("hello world", "o w"))
    add(string.find("hello world", "o", 6))
    add(string.find("hello world", "l+"))
    add(string.find("hello world", "(h)(e)(l+)"))
    add(string.find("hello", "()ll()"))
    add(string.find("a.b", ".", 1, true))
    add(string.find("abc", "b", -1))
    add(string.find("abc", "", 10))
    add(string.find("abc", "", 4))
    add(string.match("key = value", "(%w+)%s*=%s*(%w+)"))
    add(string.match("  trim  ", "^%s*(.-)%s*$"))
    add(string.match("THE (quick) fox", "%((%a+)%)"))
    add(string.match("f(a(b)c)d", "%b()"))
    add(string.match("THE (quick) fox", "%f[%a]%a+", 5))
    add(string.match("2024-01-15", "(%d+)-(%d+)-(%d+)"))
    add(string.match("abcabc", "(abc)%1"))
    add(string.match("[[x]]", "%[(%b[])%]"))
    add(string.match("hello", ".-(l+)(.*)"))
    add(string.match("x=1, y=2", "y=(%d)"))
    add(string.match("aaa", "a-b"))
    add(string.match("aaab", "a-b"))
    add(string.match("", ".*"))
    add(string.match("abc", "[^%a]"))
    add(string.match("a-b", "[a%-]+"))
    add(string.match("x]y", "[]x]+"))
    add(#string.match("y\0z", "[%z]"))
    add(string.gsub("hello world", "o", "0"))
    add(string.gsub("hello world", "(%w+)", "<%1>"))
    add(string.gsub("hello world", "%w+", "%0 %0", 1))
    add(string.gsub("abc", "", "-"))
    add(string.gsub("hello", "l", {l = "L"}))
    add(string.gsub("$name is $age", "%$(%w+)", {name = "Ada", age = 36}))
    add(string.gsub("abc", "%w", function(c) return c:upper() .. "." end))
    add(string.gsub("abc", "b", function() return false end))
    add(string.gsub("one two", "(%w+) (%w+)", "%2 %1"))
    add(string.gsub("a,b,,c", ",", ";", 2))
    add(string.gsub("^^x", "^%^", "!"))
    add(string.gsub("x y", "()", "%1"))
    local words = {}
    for w in string.gmatch("one two  three", "%a+") do words[#words + 1] = w end
    add(table.concat(words, "/"))
    local pairs_ = {}
    for k, v in string.gmatch("a=1, b=2, c=3", "(%w+)=(%w+)") do pairs_[#pairs_ + 1] = k .. v end
    add(table.concat(pairs_, "/"))
    local empties = 0
    for _ in string.gmatch("abc", "") do empties = empties + 1 end
    add(empties)
    local from = {}
    for w in string.gmatch("abc def ghi", "%a+", 5) do from[#from + 1] = w end
    add(table.concat(from, "/"))
    add(pcall(string.find, "abc", "[a"))
    add(pcall(string.find, "abc", "%"))
    add(pcall(string.match, "abc", "(()"))
    add(pcall(string.gsub, "abc", "(a)", "%2"))
    add(pcall(string.rep))
    add(string.rep("ab", 3, ","), string.rep("x", 0), string.rep("x", -1), string.rep("", 5, ","))
    local t = {1, 2, 3, 4, 5}
    table.insert(t, 2, 9); add(table.concat(t, ","))
    add(table.remove(t, 1), table.concat(t, ","))
    add(table.remove(t), table.concat(t, ","))
    add(table.concat(table.move({1, 2, 3}, 1, 3, 2), ","))
    add(table.concat(table.move({1, 2, 3}, 2, 3, 1, {}), ","))
    table.sort(t); add(table.concat(t, ","))
    table.sort(t, function(a, b) return a > b end); add(table.concat(t, ","))
    add(pcall(table.insert, {}, 5, 1))
    add(pcall(table.insert, {}, 1, 2, 3))
    return table.concat(out, "\n")

    """#

    static let expected = [
            "5,7",
            "8,8",
            "3,4",
            "1,4,h,e,ll",
            "3,4,3,5",
            "2,2",
            "nil",
            "nil",
            "4,3",
            "key,value",
            "trim",
            "quick",
            "(a(b)c)",
            "quick",
            "2024,01,15",
            "abc",
            "[x]",
            "ll,o",
            "2",
            "nil",
            "aaab",
            "",
            "nil",
            "a-",
            "x]",
            "1",
            "hell0 w0rld,2",
            "<hello> <world>,2",
            "hello hello world,1",
            "-a-b-c-,4",
            "heLLo,2",
            "Ada is 36,2",
            "A.B.C.,3",
            "abc,1",
            "two one,1",
            "a;b;,c,2",
            "!^x,1",
            "1x2 3y4,4",
            "one/two/three",
            "a1/b2/c3",
            "4",
            "def/ghi",
            "false,malformed pattern (missing ']')",
            "false,malformed pattern (ends with '%')",
            "false,unfinished capture",
            "false,invalid capture index %2",
            "false,bad argument #1 to 'string.rep' (string expected, got no value)",
            "ab,ab,ab,,,,,,,",
            "1,9,2,3,4,5",
            "1,9,2,3,4,5",
            "5,9,2,3,4",
            "1,1,2,3",
            "2,3",
            "2,3,4,9",
            "9,4,3,2",
            "false,bad argument #2 to 'table.insert' (position out of bounds)",
            "false,wrong number of arguments to 'insert'"
    ]
}

/// Hands a function to the thread that runs it (each call runs on one thread at a time).
private struct UncheckedFunction: @unchecked Sendable {
    let function: UserFunction
    init(_ function: UserFunction) { self.function = function }
}

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}
