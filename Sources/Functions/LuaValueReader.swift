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
    private var shapesIndex: Int32 = 0

    init(_ L: OpaquePointer, recordsShape: Bool) {
        self.L = L
        self.recordsShape = recordsShape
        scratch.reserveCapacity(256)
    }

    /// Pushes `action, record, changes, metadata` of a Sequin-shaped message: four values.
    mutating func pushMessageArguments(_ value: [UInt8]) throws(FunctionError) {
        guard lua_checkstack(L, 40) != 0 else { throw FunctionError("Lua stack exhausted") }
        let base = lua_gettop(L)
        if recordsShape {
            lua_getfield(L, sluice_lua_registryindex(), "sluice.shapes")
            shapesIndex = lua_gettop(L)
        }
        let first = lua_gettop(L) + 1
        for _ in 0..<4 { lua_pushnil(L) }
        do {
            try value.withUnsafeBufferPointer { (buffer) throws(FunctionError) in
                var cursor = JSONCursor(buffer)
                try cursor.expect(UInt8(ascii: "{"))
                var sawRecord = false
                if !cursor.take(UInt8(ascii: "}")) {
                    repeat {
                        let slot: Int32? = try cursor.readString(&scratch) { key in
                            switch key.count {
                            case 6 where key.elementsEqual("action".utf8): 0
                            case 6 where key.elementsEqual("record".utf8): 1
                            case 7 where key.elementsEqual("changes".utf8): 2
                            case 8 where key.elementsEqual("metadata".utf8): 3
                            default: nil
                            }
                        }
                        try cursor.expect(UInt8(ascii: ":"))
                        guard let slot else {
                            try cursor.skipValue()
                            continue
                        }
                        if slot == 1 { sawRecord = true }
                        try push(&cursor, depth: 0, inArray: false)
                        lua_copy(L, -1, first + slot)
                        sluice_lua_pop(L, 1)
                    } while cursor.take(UInt8(ascii: ","))
                    try cursor.expect(UInt8(ascii: "}"))
                }
                guard sawRecord else { throw FunctionError("the message has no \"record\": give a Sequin-shaped message") }
            }
        } catch {
            lua_settop(L, base)
            throw error
        }
        if recordsShape {
            // Move the four arguments down over the shapes table.
            lua_rotate(L, shapesIndex, -1)
            sluice_lua_pop(L, 1)
        }
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
    private mutating func push(_ cursor: inout JSONCursor, depth: Int, inArray: Bool) throws(FunctionError) {
        guard depth < 200 else { throw FunctionError("the message nests deeper than 200 levels") }
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
        let table = lua_gettop(L)
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
                if isNull {
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
        var text = Array(token)
        text.append(0)
        let value = text.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { strtod($0.baseAddress!, nil) }
        }
        lua_pushnumber(L, value)
        if recordsShape {
            text.removeLast()
            if LuaValueWriter.floatText(value) != text, numberTexts[value.bitPattern] == nil {
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
