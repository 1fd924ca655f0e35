import Foundation
import Testing
@testable import SluiceCore

/// `functions:` declared once, and the sinks' references to them by name.
@Suite("Function config")
struct FunctionConfigReadingTests: ConfigFixtures {
    @Test func functionsAreDeclaredOnceAndUsedBySinks() throws {
        let lua = "function transform(action, record)\n  return {id = record.id}\nend\n"
        let base = try Self.folder(["functions/shape.lua": Array(lua.utf8)])
        defer { try? FileManager.default.removeItem(atPath: base) }
        let fromFile = Self.function("shape", "transform", [("file", s("functions/shape.lua")), ("description", s("id only")),
                                                            ("max_instructions", s("50_000")), ("max_memory_mb", s("4"))])
        let root = Self.root(sinks: [
            Self.sink(name: "paid", destination: Self.destination([("topic", nil)]),
                      extra: [("filter", s("paid-only")), ("transform", s("shape")), ("routing", s("by-region"))]),
            Self.sink(name: "cities", extra: [("transform", s("city"))]),
        ], extra: [("functions", seq(Self.paidOnly, fromFile, Self.city, Self.byRegion))])
        let config = try Self.read(root, baseDirectory: base)

        #expect(config.functions.map(\.name) == ["paid-only", "shape", "city", "by-region"])
        let paid = config.sinks[0]
        #expect(paid.filter == FunctionConfig(name: "paid-only", kind: .filter, code: Self.paidOnlyCode, origin: "functions[0].code"))
        #expect(paid.transform == FunctionConfig(name: "shape", kind: .transform, code: lua, origin: "functions/shape.lua",
                                                 maxInstructions: 50_000, maxMemoryMB: 4))
        #expect(paid.routing?.name == "by-region")
        #expect(paid.routing?.origin == "functions[3].code")
        #expect(paid.destination.topic == "")
        #expect(config.sinks[1].transform == FunctionConfig(name: "city", kind: .path, path: "record.address.city"))
        #expect(config.sinks[1].filter == nil)
        #expect(config.sinks[1].routing == nil)
    }

    @Test func absoluteFilePath() throws {
        let base = try Self.folder(["paid.lua": Array(Self.paidOnlyCode.utf8)])
        defer { try? FileManager.default.removeItem(atPath: base) }
        let file = (base as NSString).appendingPathComponent("paid.lua")
        let config = try Self.read(Self.root(functions: [Self.function("paid-only", "filter", [("file", s(file))])],
                                             uses: [("filter", s("paid-only"))]), baseDirectory: "/nonexistent")
        #expect(config.sinks[0].filter?.code == Self.paidOnlyCode)
        #expect(config.sinks[0].filter?.origin == file)
    }

    @Test func codeIsTakenAsWritten() throws {
        let code = #"function filter(action, record) return record.note ~= "${HOME} ${UNSET_VARIABLE}" end"#
        let config = try Self.read(Self.root(functions: [Self.function("notes", "filter", [("code", s(code))])],
                                             uses: [("filter", s("notes"))]))
        #expect(config.sinks[0].filter?.code == code)
    }

    @Test func noneMeansNoFunction() throws {
        let config = try Self.read(Self.root(functions: [Self.paidOnly, Self.shape, Self.byRegion],
                                             uses: [("filter", s("none")), ("transform", s("none")), ("routing", s("none"))]))
        #expect(config.sinks[0].filter == nil)
        #expect(config.sinks[0].transform == nil)
        #expect(config.sinks[0].routing == nil)
        #expect(!config.sinks[0].hasFunctions)
        #expect(config.functions.count == 3)
    }

    @Test func unknownFunctionNames() {
        #expect(Self.problems(functions: [Self.paidOnly], uses: [("filter", s("paid-onyl"))])
            == [Problem(.undeclaredFunction, "sinks[0].filter", "paid-onyl", suggestion: "paid-only")])
        #expect(Self.problems(functions: [Self.paidOnly], uses: [("transform", s("reshape"))])
            == [Problem(.undeclaredFunction, "sinks[0].transform", "reshape")])
        #expect(Self.problems(Self.root(sinks: [Self.sink(extra: [("routing", s("by-region"))])]))
            == [Problem(.undeclaredFunction, "sinks[0].routing", "by-region")])
    }

    @Test func functionOfTheWrongKind() {
        #expect(Self.problems(functions: [Self.shape], uses: [("filter", s("shape"))])
            == [Problem(.wrongFunctionType, "sinks[0].filter", "shape")])
        #expect(Self.problems(functions: [Self.paidOnly], uses: [("transform", s("paid-only"))])
            == [Problem(.wrongFunctionType, "sinks[0].transform", "paid-only")])
        #expect(Self.problems(functions: [Self.city], uses: [("routing", s("city"))])
            == [Problem(.wrongFunctionType, "sinks[0].routing", "city")])
    }

    @Test func functionNamesAreUnique() {
        #expect(Self.problems(functions: [Self.paidOnly, Self.shape, Self.function("paid-only", "path", [("path", s("record"))])])
            == [Problem(.duplicate, "functions[2].name", "paid-only")])
    }

    @Test func functionNameIsRequired() {
        #expect(Self.problems(functions: [.mapping([("type", s("path")), ("path", s("record"))]),
                                          .mapping([("type", s("path")), ("path", s("record.id"))])])
            == [Problem(.missingField, "functions[0].name"), Problem(.missingField, "functions[1].name")])
        #expect(Self.problems(functions: [Self.function("none", "path", [("path", s("record"))])])
            == [Problem(.invalidValue, "functions[0].name", "none")])
    }

    @Test func functionTypes() throws {
        let lookup = Self.function("lookup", "enrichment", [("code", s("SELECT id, name FROM accounts WHERE id = ANY($1)")),
                                                           ("statement_timeout", s("2s"))])
        let config = try Self.read(Self.root(functions: [lookup], uses: [("enrichment", s("lookup"))]))
        #expect(config.sinks[0].enrichment?.code == "SELECT id, name FROM accounts WHERE id = ANY($1)")
        #expect(config.sinks[0].enrichment?.statementTimeout == 2)
        #expect(config.functions[0].kind == .enrichment)
        #expect(Self.problems(functions: [Self.paidOnly], uses: [("enrichment", s("paid-only"))])
            == [Problem(.wrongFunctionType, "sinks[0].enrichment", "paid-only")])
        #expect(Self.problems(functions: [Self.function("lookup", "enrichment")]) == [Problem(.missingField, "functions[0]")])
        #expect(Self.problems(functions: [Self.function("double", "map", [("code", s("x"))])])
            == [Problem(.invalidValue, "functions[0].type", "map")])
        #expect(Self.problems(functions: [.mapping([("name", s("paid-only")), ("code", s(Self.paidOnlyCode))])])
            == [Problem(.missingField, "functions[0].type")])
        #expect(Self.problems(functions: [Self.function("paid-only", "filter", [("code", s(Self.paidOnlyCode)), ("langauge", s("lua"))])])
            == [Problem(.unknownField, "functions[0].langauge")])
    }

    @Test func pathFunctions() {
        #expect(Self.problems(functions: [Self.function("city", "path", [("path", s("row.address.city"))])])
            == [Problem(.invalidValue, "functions[0].path", "row.address.city")])
        #expect(Self.problems(functions: [Self.function("city", "path", [("path", s("record..city"))])])
            == [Problem(.invalidValue, "functions[0].path", "record..city")])
        #expect(Self.problems(functions: [Self.function("city", "path")]) == [Problem(.missingField, "functions[0].path")])
        #expect(Self.problems(functions: [Self.function("city", "path", [("path", s("record.city")), ("code", s("return 1"))])])
            == [Problem(.conflict, "functions[0].code")])
        #expect(Self.problems(functions: [Self.function("shape", "transform", [("code", s("x")), ("path", s("record"))])])
            == [Problem(.conflict, "functions[0].path")])
    }

    @Test func codeOrFile() {
        #expect(Self.problems(functions: [Self.function("paid-only", "filter", [("code", s(Self.paidOnlyCode)), ("file", s("paid.lua"))])])
            == [Problem(.conflict, "functions[0]")])
        #expect(Self.problems(functions: [Self.function("paid-only", "filter")]) == [Problem(.missingField, "functions[0]")])
        #expect(Self.problems(functions: [Self.function("by-region", "routing", [("code", seq(s("a")))])])
            == [Problem(.wrongType, "functions[0].code")])
    }

    @Test func unreadableFile() throws {
        let base = try Self.folder(["binary.lua": [0x66, 0xFF, 0xFE], "dir/keep": []])
        defer { try? FileManager.default.removeItem(atPath: base) }
        for file in ["functions/missing.lua", "binary.lua", "dir"] {
            // The sink's reference to the function is not reported again: the function's own error says it all.
            let errors = Self.errors(Self.root(functions: [Self.function("paid-only", "filter", [("file", s(file))])],
                                               uses: [("filter", s("paid-only"))]), baseDirectory: base)
            #expect(errors.map(Problem.init) == [Problem(.unreadableFile, "functions[0].file", file)])
            // It names where it looked: relative to the configuration file's folder.
            #expect(errors.first?.message.contains("at \(base)/\(file);") == true)
        }
    }

    @Test func budgets() throws {
        #expect(Self.problems(functions: [Self.function("paid-only", "filter", [("code", s("x")), ("max_instructions", s("10"))])])
            == [Problem(.outOfRange, "functions[0].max_instructions", "10")])
        #expect(Self.problems(functions: [Self.function("paid-only", "filter", [("code", s("x")), ("max_memory_mb", s("0"))])])
            == [Problem(.outOfRange, "functions[0].max_memory_mb", "0")])
        // The bounds the messages name: 1000 to 1000000000 instructions, 1 to 1024 MB.
        #expect(Self.problems(functions: [Self.function("paid-only", "filter", [("code", s("x")), ("max_instructions", s("999"))])])
            == [Problem(.outOfRange, "functions[0].max_instructions", "999")])
        #expect(Self.problems(functions: [Self.function("paid-only", "filter", [("code", s("x")), ("max_memory_mb", s("1025"))])])
            == [Problem(.outOfRange, "functions[0].max_memory_mb", "1025")])
        for (instructions, memory) in [("1000", "1"), ("1000000000", "1024")] {
            let config = try Self.read(Self.root(functions: [Self.function("paid-only", "filter", [
                ("code", s("x")), ("max_instructions", s(instructions)), ("max_memory_mb", s(memory)),
            ])]))
            #expect(config.functions[0].maxInstructions == Int(instructions) && config.functions[0].maxMemoryMB == Int(memory))
        }
    }

    @Test func topicIsOptionalOnlyWithRouting() throws {
        let noTopic = Self.destination([("topic", nil)])
        let routed = try Self.read(Self.root(functions: [Self.byRegion], uses: [("routing", s("by-region"))], destination: noTopic))
        #expect(routed.sinks[0].destination.topic == "")
        #expect(routed.sinks[0].routing?.kind == .routing)

        let expected = [Problem(.missingField, "sinks[0].destination.topic")]
        #expect(Self.problems(Self.root(sinks: [Self.sink(destination: noTopic)])) == expected)
        #expect(Self.problems(Self.root(functions: [Self.byRegion], uses: [("routing", s("none"))], destination: noTopic)) == expected)
        #expect(Self.problems(Self.root(functions: [Self.paidOnly], uses: [("filter", s("paid-only"))], destination: noTopic)) == expected)

        let withTopic = try Self.read(Self.root(functions: [Self.byRegion], uses: [("routing", s("by-region"))]))
        #expect(withTopic.sinks[0].destination.topic == "orders")
    }
}
