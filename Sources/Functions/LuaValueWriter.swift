import CLua
import SluiceCore

/// Writes a Lua value as JSON: what a transform returned becomes the message value.
///
/// Tables that came from the message keep their shape (key order, null keys, array or object,
/// also when empty); keys a function added follow in sorted order. A table the function built is
/// an array if its keys are exactly 1…n, otherwise an object (`{}` when empty; `sluice.array()`
/// makes an empty array). `sluice.null` is JSON null.
struct LuaValueWriter {
    let L: OpaquePointer
    /// Where the number texts of the message's values are (they grow while the writer fills lazy tables).
    let arguments: MessageArguments?
    var json = JSONWriter(capacity: 512)
    private var shapes: Int32 = 0

    init(_ L: OpaquePointer, arguments: MessageArguments?) {
        self.L = L
        self.arguments = arguments
    }

    /// The JSON text of the value at `index`.
    static func json(_ L: OpaquePointer, at index: Int32, arguments: MessageArguments?) throws(FunctionError) -> [UInt8] {
        var writer = LuaValueWriter(L, arguments: arguments)
        let absolute = lua_absindex(L, index)
        let top = lua_gettop(L)
        defer { lua_settop(L, top) }
        guard lua_checkstack(L, 20) != 0 else { throw FunctionError("Lua stack exhausted") }
        lua_getfield(L, sluice_lua_registryindex(), "sluice.shapes")
        writer.shapes = lua_gettop(L)
        do throws(Failure) {
            try writer.write(absolute, depth: 0)
        } catch {
            throw FunctionError(error.text)
        }
        return writer.json.bytes
    }

    /// A value that cannot be written, and where it is: the path is collected only on the way out
    /// of a failure, so writing builds no path texts.
    struct Failure: Error {
        var before: String
        var after: String
        /// Innermost first: `[2]`, `.name`.
        var path: [String] = []
        /// No path in the message (`Lua stack exhausted`).
        var located = true

        init(_ before: String, _ after: String) {
            self.before = before
            self.after = after
        }

        static func unlocated(_ text: String) -> Failure {
            var failure = Failure(text, "")
            failure.located = false
            return failure
        }

        var text: String {
            guard located else { return before }
            return before + (path.isEmpty ? "the top level" : path.reversed().joined()) + after
        }
    }

    private mutating func write(_ index: Int32, depth: Int) throws(Failure) {
        switch lua_type(L, index) {
        case LUA_TNIL:
            json.null()
        case LUA_TBOOLEAN:
            json.bool(lua_toboolean(L, index) != 0)
        case LUA_TNUMBER:
            if lua_isinteger(L, index) != 0 {
                json.number(lua_tointegerx(L, index, nil))
            } else {
                let value = lua_tonumberx(L, index, nil)
                if let arguments, let text = arguments.numberTexts[value.bitPattern] {
                    json.raw(text)
                } else {
                    guard value.isFinite else {
                        throw Failure("returned \(value) at ", " — JSON has no NaN or infinity; return a string")
                    }
                    json.raw(Self.floatText(value))
                }
            }
        case LUA_TSTRING:
            var length = 0
            let pointer = lua_tolstring(L, index, &length)!
            let bytes = UnsafeRawBufferPointer(start: pointer, count: length).bindMemory(to: UInt8.self)
            guard Self.isValidUTF8(bytes) else {
                throw Failure("returned a string that is not valid UTF-8 at ", " — JSON text must be UTF-8")
            }
            json.string(utf8: bytes)
        case LUA_TTABLE:
            // Deeper than a message may nest (200), so that passed-through values fit even when wrapped.
            guard depth < 256 else {
                throw Failure("returned tables nested deeper than 256 levels at ", " (a table that contains itself?)")
            }
            guard lua_checkstack(L, 8) != 0 else { throw Failure.unlocated("Lua stack exhausted") }
            try writeTable(index, depth: depth)
        case LUA_TLIGHTUSERDATA where sluice_lua_isnull(L, index) != 0:
            json.null()
        default:
            let typeName = String(cString: lua_typename(L, lua_type(L, index)))
            throw Failure("returned a \(typeName) at ", " — only nil, booleans, numbers, strings, tables and sluice.null become JSON")
        }
    }

    /// Where a value is in its table, for failures.
    private enum Step {
        case position(Int64)
        /// The key is the string at this stack index.
        case key(Int32)
        case name(String)
    }

    /// Writes the value at `index`, the element or field that `step` names.
    private mutating func write(_ index: Int32, depth: Int, step: Step) throws(Failure) {
        do throws(Failure) {
            try write(index, depth: depth)
        } catch {
            var failure = error
            if failure.located {
                switch step {
                case .position(let position): failure.path.append("[\(position)]")
                case .key(let key): failure.path.append("." + string(at: key))
                case .name(let name): failure.path.append("." + name)
                }
            }
            throw failure
        }
    }

    private mutating func writeTable(_ table: Int32, depth: Int) throws(Failure) {
        lua_pushvalue(L, table)
        var shapeType = lua_rawget(L, shapes)
        let shape = lua_gettop(L)
        defer { lua_settop(L, shape - 1) }
        if shapeType == LUA_TNIL, lua_getmetatable(L, table) != 0 {
            // A lazy table of the message not read yet: fill it now (a no-op for other metatables).
            sluice_lua_pop(L, 1)
            sluice_lua_materialize(L, table)
            sluice_lua_pop(L, 1)
            lua_pushvalue(L, table)
            shapeType = lua_rawget(L, shapes)
        }
        switch shapeType {
        case LUA_TBOOLEAN:
            try writeArray(table, count: Int64(lua_rawlen(L, table)), depth: depth)
        case LUA_TTABLE:
            try writeShapedObject(table, keys: shape, depth: depth)
        default:
            // Built by the function: 1…n keys make an array, anything else an object.
            if let count = sequenceLength(table), count > 0 {
                try writeArray(table, count: count, depth: depth)
            } else {
                json.raw(UInt8(ascii: "{"))
                var first = true
                try writeOtherKeys(table, except: nil, first: &first, depth: depth)
                json.raw(UInt8(ascii: "}"))
            }
        }
    }

    private mutating func writeArray(_ table: Int32, count: Int64, depth: Int) throws(Failure) {
        json.raw(UInt8(ascii: "["))
        if count > 0 {
            for position in 1...count {
                if position > 1 { json.raw(UInt8(ascii: ",")) }
                lua_rawgeti(L, table, position)
                try write(lua_gettop(L), depth: depth + 1, step: .position(position))
                sluice_lua_pop(L, 1)
            }
        }
        json.raw(UInt8(ascii: "]"))
    }

    /// An object that came from the message: its keys in their order (null keys still null unless
    /// given a value; keys set to nil left out), then keys the function added.
    private mutating func writeShapedObject(_ table: Int32, keys: Int32, depth: Int) throws(Failure) {
        json.raw(UInt8(ascii: "{"))
        var first = true
        let count = Int64(lua_rawlen(L, keys))
        if count > 0 {
            for position in 1...count {
                lua_rawgeti(L, keys, position)                  // key
                let key = lua_gettop(L)
                lua_pushvalue(L, key)
                lua_rawget(L, table)                            // value
                if lua_type(L, -1) == LUA_TNIL {
                    lua_pushvalue(L, key)
                    lua_rawget(L, keys)                         // was it null in the message?
                    let wasNull = lua_toboolean(L, -1) != 0
                    sluice_lua_pop(L, 1)
                    if wasNull {
                        writeKey(key, first: &first)
                        json.null()
                    }
                } else {
                    writeKey(key, first: &first)
                    try write(lua_gettop(L), depth: depth + 1, step: .key(key))
                }
                sluice_lua_pop(L, 2)
            }
        }
        try writeOtherKeys(table, except: keys, first: &first, depth: depth)
        json.raw(UInt8(ascii: "}"))
    }

    /// Keys of `table` not listed in `except`, in sorted order (so output does not depend on hashing).
    private mutating func writeOtherKeys(_ table: Int32, except keys: Int32?, first: inout Bool,
                                         depth: Int) throws(Failure) {
        var names: [(String, Int64?)] = []
        lua_pushnil(L)
        while lua_next(L, table) != 0 {
            // stack: key, value
            let key = lua_gettop(L) - 1
            var listed = false
            if let keys {
                lua_pushvalue(L, key)
                lua_rawget(L, keys)
                listed = lua_type(L, -1) != LUA_TNIL
                sluice_lua_pop(L, 1)
            }
            if !listed {
                switch lua_type(L, key) {
                case LUA_TSTRING:
                    var length = 0
                    let pointer = lua_tolstring(L, key, &length)!
                    names.append((String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self), nil))
                case LUA_TNUMBER where lua_isinteger(L, key) != 0:
                    let number = lua_tointegerx(L, key, nil)
                    names.append((String(number), number))
                default:
                    let typeName = String(cString: lua_typename(L, lua_type(L, key)))
                    sluice_lua_pop(L, 2)
                    throw Failure("returned a table with a \(typeName) key at ", " — JSON object keys are strings")
                }
            }
            sluice_lua_pop(L, 1)
        }
        for (name, number) in names.sorted(by: { $0.0 < $1.0 }) {
            if !first { json.raw(UInt8(ascii: ",")) }
            first = false
            json.key(name)
            if let number { lua_rawgeti(L, table, number) } else { lua_pushstring(L, name); lua_rawget(L, table) }
            try write(lua_gettop(L), depth: depth + 1, step: .name(name))
            sluice_lua_pop(L, 1)
        }
    }

    private mutating func writeKey(_ key: Int32, first: inout Bool) {
        if !first { json.raw(UInt8(ascii: ",")) }
        first = false
        var length = 0
        let pointer = lua_tolstring(L, key, &length)!
        json.string(utf8: UnsafeRawBufferPointer(start: pointer, count: length).bindMemory(to: UInt8.self))
        json.raw(UInt8(ascii: ":"))
    }

    private func string(at index: Int32) -> String {
        var length = 0
        guard let pointer = lua_tolstring(L, index, &length) else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    /// n if the table's keys are exactly the integers 1…n (0 when it is empty), else nil.
    private func sequenceLength(_ table: Int32) -> Int64? {
        var count: Int64 = 0
        var maxKey: Int64 = 0
        lua_pushnil(L)
        while lua_next(L, table) != 0 {
            sluice_lua_pop(L, 1)
            guard lua_type(L, -1) == LUA_TNUMBER, lua_isinteger(L, -1) != 0 else {
                sluice_lua_pop(L, 1)
                return nil
            }
            let key = lua_tointegerx(L, -1, nil)
            guard key >= 1 else { sluice_lua_pop(L, 1); return nil }
            count += 1
            maxKey = max(maxKey, key)
        }
        return maxKey == count ? count : nil
    }

    /// A float as JSON: shortest text that reads back as the same value.
    static func floatText(_ value: Double) -> [UInt8] {
        Array(value.description.utf8)
    }

    static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if bytes.allSatisfy({ $0 < 0x80 }) { return true }
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
