import CLua
import Foundation
import SluiceCore

/// Pushes JSON straight onto a Lua stack: objects and arrays become tables, strings strings,
/// integers that fit 64 bits Lua integers (exact, so int8 beyond 2^53 too), other numbers Lua
/// floats. JSON null is `nil` in an object (the key reads as absent) and `sluice.null` in an array
/// (Lua arrays cannot hold nil).
///
/// For transforms it also remembers the shape of what it pushed — each object's key order and
/// null keys, which tables were arrays — and the exact text of numbers a float cannot print back
/// the same (`19.990`, `1e400`, 30 digits of numeric), so that values passed through unchanged are
/// written exactly as they came in.
struct LuaValueReader {
    let L: OpaquePointer
    let recordsShape: Bool
    private var scratch: [UInt8] = []
    /// Float bit pattern → the number's original text, where printing the float would differ.
    private(set) var numberTexts: [UInt64: [UInt8]] = [:]
    /// The stack index of the registry's shapes table while `recordsShape` pushes run.
    var shapesIndex: Int32 = 0

    /// How deep a message may nest.
    static let maxDepth = 200

    init(_ L: OpaquePointer, recordsShape: Bool) {
        self.L = L
        self.recordsShape = recordsShape
        scratch.reserveCapacity(256)
    }

    /// Forgets the number texts of the previous message.
    mutating func startMessage() {
        if !numberTexts.isEmpty { numberTexts.removeAll(keepingCapacity: true) }
    }

    /// Pushes any JSON value (for `sluice fn test` and tests).
    mutating func pushValue(_ value: [UInt8]) throws(FunctionError) {
        guard lua_checkstack(L, 40) != 0 else { throw FunctionError("Lua stack exhausted") }
        let base = lua_gettop(L)
        if recordsShape {
            lua_getfield(L, sluice_lua_registryindex(), "sluice.shapes")
            shapesIndex = lua_gettop(L)
        }
        do {
            try value.withUnsafeBufferPointer { (buffer) throws(FunctionError) in
                var cursor = JSONCursor(buffer)
                try push(&cursor, depth: 0, inArray: true)
            }
        } catch {
            lua_settop(L, base)
            throw error
        }
        if recordsShape {
            lua_rotate(L, shapesIndex, -1)
            sluice_lua_pop(L, 1)
        }
    }

    // MARK: - Values

    /// Pushes one value; a JSON null pushes nil (objects) or sluice.null (arrays, top level).
    mutating func push(_ cursor: inout JSONCursor, depth: Int, inArray: Bool) throws(FunctionError) {
        guard depth < Self.maxDepth else { throw FunctionError("the message nests deeper than \(Self.maxDepth) levels") }
        cursor.skipWhitespace()
        switch cursor.peek {
        case UInt8(ascii: "{"):
            cursor.index += 1
            try pushObject(&cursor, depth: depth)
        case UInt8(ascii: "["):
            cursor.index += 1
            try pushArray(&cursor, depth: depth)
        case UInt8(ascii: "\""):
            try cursor.readString(&scratch) { bytes in
                bytes.withMemoryRebound(to: CChar.self) { _ = lua_pushlstring(L, $0.baseAddress, $0.count) }
            }
        case UInt8(ascii: "t"):
            try cursor.readLiteral("true")
            lua_pushboolean(L, 1)
        case UInt8(ascii: "f"):
            try cursor.readLiteral("false")
            lua_pushboolean(L, 0)
        case UInt8(ascii: "n"):
            try cursor.readLiteral("null")
            if inArray { lua_pushlightuserdata(L, nil) } else { lua_pushnil(L) }
        default:
            let range = try cursor.readNumberToken()
            try pushNumber(UnsafeBufferPointer(rebasing: cursor.bytes[range]))
        }
    }

    private mutating func pushObject(_ cursor: inout JSONCursor, depth: Int) throws(FunctionError) {
        guard lua_checkstack(L, 8) != 0 else { throw FunctionError("Lua stack exhausted") }
        lua_createtable(L, 0, 8)
        try fillObject(lua_gettop(L), &cursor, depth: depth, keepExisting: false)
    }

    /// Sets the fields of the object after the cursor (past its `{`) in the table at `table`; with
    /// `keepExisting`, a key the table holds already keeps its value (it was written first).
    mutating func fillObject(_ table: Int32, _ cursor: inout JSONCursor, depth: Int, keepExisting: Bool) throws(FunctionError) {
        guard lua_checkstack(L, 8) != 0 else { throw FunctionError("Lua stack exhausted") }
        var keys: Int32 = 0
        if recordsShape {
            lua_createtable(L, 8, 8)
            keys = lua_gettop(L)
        }
        var count: Int64 = 0
        if !cursor.take(UInt8(ascii: "}")) {
            repeat {
                try cursor.readString(&scratch) { bytes in
                    bytes.withMemoryRebound(to: CChar.self) { _ = lua_pushlstring(L, $0.baseAddress, $0.count) }
                }
                try cursor.expect(UInt8(ascii: ":"))
                try push(&cursor, depth: depth + 1, inArray: false)
                let isNull = lua_type(L, -1) == LUA_TNIL
                if recordsShape {
                    count += 1
                    lua_pushvalue(L, -2)
                    lua_rawseti(L, keys, count)              // keys[n] = key
                    lua_pushvalue(L, -2)
                    lua_pushboolean(L, isNull ? 1 : 0)
                    lua_rawset(L, keys)                      // keys[key] = was null
                }
                var skip = isNull
                if !skip, keepExisting {
                    lua_pushvalue(L, -2)
                    skip = lua_rawget(L, table) != LUA_TNIL
                    sluice_lua_pop(L, 1)
                }
                if skip {
                    sluice_lua_pop(L, 2)
                } else {
                    lua_rawset(L, table)
                }
            } while cursor.take(UInt8(ascii: ","))
            try cursor.expect(UInt8(ascii: "}"))
        }
        if recordsShape {
            lua_pushvalue(L, table)
            lua_pushvalue(L, keys)
            lua_rawset(L, shapesIndex)                       // shapes[table] = keys
            sluice_lua_pop(L, 1)
        }
    }

    private mutating func pushArray(_ cursor: inout JSONCursor, depth: Int) throws(FunctionError) {
        guard lua_checkstack(L, 8) != 0 else { throw FunctionError("Lua stack exhausted") }
        lua_createtable(L, 4, 0)
        let table = lua_gettop(L)
        var count: Int64 = 0
        if !cursor.take(UInt8(ascii: "]")) {
            repeat {
                try push(&cursor, depth: depth + 1, inArray: true)
                count += 1
                lua_rawseti(L, table, count)
            } while cursor.take(UInt8(ascii: ","))
            try cursor.expect(UInt8(ascii: "]"))
        }
        if recordsShape {
            lua_pushvalue(L, table)
            lua_pushboolean(L, 1)
            lua_rawset(L, shapesIndex)                       // shapes[table] = true: an array
        }
    }

    private mutating func pushNumber(_ token: UnsafeBufferPointer<UInt8>) throws(FunctionError) {
        var isInteger = true
        for byte in token where byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
            isInteger = false
            break
        }
        if isInteger, let value = Self.parseInt64(token) {
            lua_pushinteger(L, value)
            return
        }
        // strtod wants a terminated string: copy the token (at most a few dozen bytes) to the stack.
        let value = withUnsafeTemporaryAllocation(of: CChar.self, capacity: token.count + 1) { text in
            for (offset, byte) in token.enumerated() { text[offset] = CChar(bitPattern: byte) }
            text[token.count] = 0
            return strtod(text.baseAddress!, nil)
        }
        lua_pushnumber(L, value)
        if recordsShape, numberTexts[value.bitPattern] == nil {
            let text = Array(token)
            if LuaValueWriter.floatText(value) != text {
                numberTexts[value.bitPattern] = text
            }
        }
    }

    static func parseInt64(_ token: UnsafeBufferPointer<UInt8>) -> Int64? {
        var index = 0
        var negative = false
        if token.first == UInt8(ascii: "-") { negative = true; index = 1 }
        guard index < token.count, token.count - index <= 19 else { return nil }
        var value: Int64 = 0
        while index < token.count {
            let digit = Int64(token[index]) - 48
            guard digit >= 0, digit <= 9 else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = negative ? times.subtractingReportingOverflow(digit) : times.addingReportingOverflow(digit)
            if o1 || o2 { return nil }
            value = sum
            index += 1
        }
        return value
    }
}
