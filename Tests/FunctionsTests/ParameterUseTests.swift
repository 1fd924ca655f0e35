@testable import Functions
import SluiceCore
import Testing

/// A call passes nil for a parameter the function never reads and skips the end-of-call copy for a
/// table it only indexes, so the analysis must never call a parameter `unused` or `indexed` when
/// the code could see it again; and whatever it decides, the function must behave exactly as
/// without it.
@Suite struct ParameterUseTests {
    static func uses(_ body: String, parameters: String = "action, record, changes, metadata") throws -> String {
        let code = "function filter(\(parameters))\n\(body)\nend"
        return try function(.filter, code).parameterUses.description
    }

    @Test func untouchedParametersAreUnused() throws {
        #expect(try Self.uses("return true") == "unused,unused,unused,unused")
        #expect(try Self.uses("return true", parameters: "action") == "unused,unused,unused,unused")
        #expect(try Self.uses("return action == 'insert'", parameters: "action") == "indexed,unused,unused,unused")
    }

    @Test func indexingAndTestsKeepATableInside() throws {
        #expect(try Self.uses("return record.status == 'paid'") == "unused,indexed,unused,unused")
        #expect(try Self.uses("local k = 'id' return record[k] ~= nil and record[1] == nil") == "unused,indexed,unused,unused")
        #expect(try Self.uses("if changes then return changes.status ~= nil end return #record > 0") == "unused,indexed,indexed,unused")
        #expect(try Self.uses("return changes == nil and not metadata") == "unused,unused,indexed,indexed")
        #expect(try Self.uses("return metadata.consumer.name == 'x'") == "unused,unused,unused,indexed")
    }

    @Test func everyWayOutEscapes() throws {
        let escaping = [
            "kept = record return true",                                 // a global
            "local t = {} t[1] = record return true",                    // a table field
            "local t = {record} return true",                            // a constructor
            "local r = record return r.id ~= nil",                       // a copy in a local
            "return helper(record)",                                     // an argument
            "return rawequal(record, record)",
            "for k, v in pairs(record) do end return true",
            "return record:find('x') ~= nil",                            // a method call
            "local f = function() return record end return f() ~= nil", // captured by a closure
            "record = nil return true",                                  // overwritten
            "return record == other",                                    // a metamethod may see it
            "return record < 1",
            "return (record and true)",                                  // TESTSET copies it
            "return record",
        ]
        for body in escaping {
            let uses = try Self.uses("helper = helper or function() return true end\n" + body)
            #expect(uses.split(separator: ",")[1] == "escapes", "\(body): \(uses)")
        }
        #expect(try Self.uses("return true", parameters: "...") == "escapes,escapes,escapes,escapes")
        #expect(try Self.uses("return select('#', ...) > 0", parameters: "action, ...") == "escapes,escapes,escapes,escapes")
    }

    @Test func aDumpItCannotReadMakesEverythingEscape() {
        #expect(ParameterUse.analyze(dump: []) == .allEscape)
        #expect(ParameterUse.analyze(dump: Array("\u{1b}Lua".utf8)) == .allEscape)
    }

    /// Messages straight from the encoder take the fast path; each function must answer as it does
    /// on the same message read from text, call after call (tables kept across calls included).
    @Test func functionsBehaveTheSameWhateverTheAnalysisDecides() throws {
        let message = EncodedMessageTests.encoded(.update)
        let bodies = [
            "return true",
            "return record.status == 'paid' and changes.status == 'new'",
            "if changes then return #record >= 0 end return false",
            "kept = kept or record return kept.status == 'paid'",
            "last, prev = record, last return prev == nil or prev.status == record.status",
            "local f = function() return metadata.table_name end return f() == 'orders'",
        ]
        for body in bodies {
            let code = "function filter(action, record, changes, metadata)\n\(body)\nend"
            let fast = try function(.filter, code)
            let scanned = try function(.filter, code)
            for _ in 0..<3 {
                let a = EncodedMessageTests.outcome { () throws(FunctionError) in try fast.filter(message.value, layout: message.layout) }
                let b = EncodedMessageTests.outcome { () throws(FunctionError) in try scanned.filter(message.value) }
                #expect(a == "keep", "\(body)")
                #expect(a == b, "\(body)")
            }
        }
    }

    @Test func aFunctionThatReplacesItselfIsCalledWithEverything() throws {
        let f = try function(.filter, """
            function filter(action, record, changes, metadata)
              filter = function(a, r, c, m) kept = r return m ~= nil and kept.status == 'paid' end
              return true
            end
            """)
        #expect(f.parameterUses.description == "unused,unused,unused,unused")
        let message = EncodedMessageTests.encoded(.insert)
        #expect(try f.filter(message.value, layout: message.layout))
        #expect(try f.filter(message.value, layout: message.layout))
        #expect(try f.filter(message.value, layout: message.layout))
    }

    @Test func tostringWritesIntegersAsLuaDoes() throws {
        let f = try function(.filter, """
            function filter(action, record, changes, metadata)
              return tostring(0) == '0' and tostring(-7) == '-7' and tostring(math.maxinteger) == '9223372036854775807'
                and tostring(math.mininteger) == '-9223372036854775808' and tostring(1.5) == '1.5'
                and tostring(2^53) == '9.007199254741e+15' and tostring(nil) == 'nil' and tostring(true) == 'true'
                and tostring(record.id) == '9007199254740993'
            end
            """)
        let message = EncodedMessageTests.encoded(.insert)
        #expect(try f.filter(message.value, layout: message.layout))
        #expect(try f.filter(message.value))
    }
}
