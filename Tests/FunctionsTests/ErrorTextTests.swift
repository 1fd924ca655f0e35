import Functions
import SluiceCore
import Testing

/// Errors name where the code came from and the line, as a user would look for it.
@Suite struct ErrorTextTests {
    static let order = message(record: #"{"id":1}"#)

    @Test func runtimeErrorCarriesTheLine() throws {
        let f = try function(.filter, """
            function filter(action, record)
              local customer = record.customer
              return customer.vip
            end
            """)
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.order) }
        #expect(thrown?.message == "functions[0].code:3: attempt to index a nil value (local 'customer')")
    }

    @Test func errorCallCarriesTheLine() throws {
        let f = try function(.transform, """
            function transform(action, record)

              error("no customer for order " .. record.id)
            end
            """)
        let thrown = #expect(throws: FunctionError.self) { try f.transform(Self.order) }
        #expect(thrown?.message == "functions[0].code:3: no customer for order 1")
    }

    @Test func codeFromAFileIsNamedByItsPath() throws {
        let f = try function(.filter, "function filter(action, record)\n  return record.id > nil\nend", origin: "functions/paid.lua")
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.order) }
        #expect(thrown?.message == "functions/paid.lua:2: attempt to compare nil with number")
    }

    @Test func syntaxErrorAtCompileTime() {
        let thrown = #expect(throws: FunctionError.self) {
            try function(.filter, "function filter(action, record)\n  return record.id >\nend")
        }
        #expect(thrown?.message == "functions[0].code:3: unexpected symbol near 'end'")
    }

    @Test func chunkThatFailsWhileLoading() {
        let thrown = #expect(throws: FunctionError.self) {
            try function(.filter, "local limit = nil + 1\nfunction filter() return true end")
        }
        #expect(thrown?.message == "functions[0].code:1: attempt to perform arithmetic on a nil value")
    }

    @Test(arguments: [
        (FunctionConfig.Kind.filter, "filter"),
        (.transform, "transform"),
        (.routing, "route"),
    ])
    func chunkMustDefineItsGlobalFunction(kind: FunctionConfig.Kind, entry: String) {
        let thrown = #expect(throws: FunctionError.self) {
            try function(kind, "local function \(entry)() end\nfunction other() end")
        }
        #expect(thrown?.message
            == "functions[0].code: defines no global function \(entry) — write function \(entry)(action, record, changes, metadata) … end")
    }

    @Test func errorWithATableValueStillGivesAMessage() throws {
        let f = try function(.filter, #"function filter(action, record) if record.id == 1 then error({}) end return true end"#)
        let thrown = #expect(throws: FunctionError.self) { try f.filter(Self.order) }
        #expect(thrown?.message.hasPrefix("functions[0].code") == true)
        #expect(thrown?.message.contains(#"raised an error that is a table value, not a message — use error("text")"#) == true)
        #expect(try f.filter(message(record: #"{"id":2}"#)))
    }
}
