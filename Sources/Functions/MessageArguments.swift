import CLua
import Foundation
import SluiceCore

/// Gives a message to a function lazily. `action` is pushed as a string (`changes` as nil when the
/// JSON has null), but `record`, `changes` (an object) and `metadata` are pushed as empty tables with
/// the proxy metatable (`sluice.proxy`, see shim.h). At push time the message is only scanned — which
/// checks all of it, so a broken message still fails before the function runs — and the byte range
/// of each part remembered. The first time user code touches one of those tables (or the transform
/// writer meets it), `materialize` converts its JSON into the table itself, exactly as an eager push
/// would (shapes and number texts for transforms), and from then on it is a plain table. A filter
/// that looks at nothing converts nothing.
///
/// Lifetime: the message's bytes are valid only during the call. A table still untouched when the
/// call ends — user code may have kept it in a global, to read in a later call — gets a copy of the
/// message's JSON (one Lua string per call, shared by its tables, under a key no Lua code can make,
/// with the part's range: `sluice_lua_keep_text`) and is filled
/// from that copy whenever it is touched; the copy goes with the table, or when it is filled. So a kept
/// table reads the same in any later call, and nothing ever reads the freed message.
///
/// One per Lua state; not thread-safe (as the state is not).
final class MessageArguments {
    private let L: OpaquePointer
    private var reader: LuaValueReader
    /// Registry references: the proxy metatable and the shapes table.
    private let proxyRef: Int32
    private let shapesRef: Int32
    /// The message of the call in progress; nil between calls.
    private var bytes: UnsafeBufferPointer<UInt8>?
    /// This call's lazy tables still empty: record, changes, metadata.
    private var pending: (Pending, Pending, Pending) = (.none, .none, .none)
    /// The call's message came from Sluice's encoder (with its layout): its objects have no
    /// duplicate keys, so a single field can be read without looking at the rest.
    private var encodedBySluice = false
    private var scratch: [UInt8] = []

    struct Pending {
        /// The table (`lua_topointer`); nil when there is none or it has been filled.
        var table: UnsafeRawPointer?
        var range: Range<Int>
        /// The function may keep the table past the call (`ParameterUse.escapes`): if it is still
        /// lazy then, it gets its copy of the message.
        var mayOutliveCall = true
        static var none: Pending { Pending(table: nil, range: 0..<0) }
    }

    init(_ L: OpaquePointer, recordsShape: Bool) {
        self.L = L
        reader = LuaValueReader(L, recordsShape: recordsShape)
        lua_getfield(L, sluice_lua_registryindex(), "sluice.proxy")
        proxyRef = luaL_ref(L, sluice_lua_registryindex())
        lua_getfield(L, sluice_lua_registryindex(), "sluice.shapes")
        shapesRef = luaL_ref(L, sluice_lua_registryindex())
    }

    /// Fields can be read one by one (not for a transform's tables, which keep their JSON shape).
    var readsSingleFields: Bool { !reader.recordsShape }

    /// Number texts of the values converted during this call (for the transform writer).
    var numberTexts: [UInt64: [UInt8]] { reader.numberTexts }

    /// The C callback of the proxy metamethods; `context` is an unretained `MessageArguments`.
    static let materializer: sluice_lua_materializer = { L, table, context in
        guard let L, let context else { return }
        Unmanaged<MessageArguments>.fromOpaque(context).takeUnretainedValue().materialize(L, table)
    }

    /// The C callback that reads one field of a lazy table; `context` is an unretained `MessageArguments`.
    static let fieldReader: sluice_lua_field_reader = { L, table, key, context in
        guard let L, let context else { return -1 }
        return Unmanaged<MessageArguments>.fromOpaque(context).takeUnretainedValue().readField(L, table, key)
    }

    // MARK: - Calls

    /// Pushes `action, record, changes, metadata` of a Sequin-shaped message: four values. `buffer`
    /// must stay valid until `finish`. With the encoder's `layout` nothing is scanned: the parts'
    /// ranges are known and the JSON is Sluice's own.
    ///
    /// `uses` says what the function does with each parameter: one it never reads gets nil (no
    /// table is made), and a table it only indexes needs no copy of the message when the call ends.
    func push(_ buffer: UnsafeBufferPointer<UInt8>, layout: MessageLayout? = nil,
              uses: ParameterUse = .allEscape) throws(FunctionError) {
        guard lua_checkstack(L, 16) != 0 else { throw FunctionError("Lua stack exhausted") }
        reader.startMessage()
        if let layout, let parts = Self.parts(of: layout, in: buffer) {
            var found: (Pending, Pending, Pending) = (.none, .none, .none)
            if uses[0] == .unused {
                lua_pushnil(L)
            } else {
                let action = layout.action.rawValue
                lua_pushlstring(L, action, action.utf8.count)
            }
            found.0 = pushLazyTable(parts.record, fields: Int(layout.recordFields), use: uses[1])
            if let changes = parts.changes {
                found.1 = pushLazyTable(changes, fields: Int(layout.changesFields), use: uses[2])
            } else {
                lua_pushnil(L)
            }
            found.2 = pushLazyTable(parts.metadata, fields: 12, use: uses[3])
            bytes = buffer
            pending = found
            encodedBySluice = true
            return
        }
        encodedBySluice = false
        let base = lua_gettop(L)
        let first = base + 1
        for _ in 0..<4 { lua_pushnil(L) }
        if reader.recordsShape {
            lua_rawgeti(L, sluice_lua_registryindex(), lua_Integer(shapesRef))
            reader.shapesIndex = lua_gettop(L)
        }
        var found: (Pending, Pending, Pending) = (.none, .none, .none)
        do throws(FunctionError) {
            var cursor = JSONCursor(buffer)
            try cursor.expect(UInt8(ascii: "{"))
            var sawRecord = false
            if !cursor.take(UInt8(ascii: "}")) {
                repeat {
                    let slot = try Self.slot(&cursor)
                    try cursor.expect(UInt8(ascii: ":"))
                    guard let slot else {
                        try cursor.skipValue()
                        continue
                    }
                    if slot == 1 { sawRecord = true }
                    cursor.skipWhitespace()
                    var pending = Pending.none
                    if uses[Int(slot)] == .unused {
                        // Read past but checked all the same, so a broken message fails as it would otherwise.
                        _ = try cursor.skipValue(maxDepth: LuaValueReader.maxDepth)
                        continue
                    }
                    if slot != 0, cursor.peek == UInt8(ascii: "{") {
                        let (range, fields) = try cursor.skipObject(maxDepth: LuaValueReader.maxDepth)
                        pending = pushLazyTable(range, fields: fields, use: uses[Int(slot)])
                    } else {
                        try reader.push(&cursor, depth: 0, inArray: false)
                    }
                    switch slot {
                    case 1: found.0 = pending
                    case 2: found.1 = pending
                    case 3: found.2 = pending
                    default: break
                    }
                    lua_copy(L, -1, first + slot)
                    sluice_lua_pop(L, 1)
                } while cursor.take(UInt8(ascii: ","))
                try cursor.expect(UInt8(ascii: "}"))
            }
            guard sawRecord else { throw FunctionError("the message has no \"record\": give a Sequin-shaped message") }
        } catch {
            lua_settop(L, base)
            throw error
        }
        lua_settop(L, base + 4)
        bytes = buffer
        pending = found
    }

    /// The layout's ranges, if they fit the buffer and start and end where objects do (else the
    /// message is scanned as any other).
    private static func parts(of layout: MessageLayout, in buffer: UnsafeBufferPointer<UInt8>)
        -> (record: Range<Int>, changes: Range<Int>?, metadata: Range<Int>)? {
        let record = Int(layout.record.lowerBound)..<Int(layout.record.upperBound)
        let changes = layout.changes.map { Int($0.lowerBound)..<Int($0.upperBound) }
        guard buffer.count > 2, Int(layout.metadataStart) < buffer.count - 1 else { return nil }
        let metadata = layout.metadata(in: buffer.count)
        func isObject(_ range: Range<Int>) -> Bool {
            range.lowerBound >= 0 && range.count >= 2 && range.upperBound <= buffer.count
                && buffer[range.lowerBound] == UInt8(ascii: "{") && buffer[range.upperBound - 1] == UInt8(ascii: "}")
        }
        guard isObject(record), isObject(metadata), changes.map(isObject) ?? true else { return nil }
        return (record, changes, metadata)
    }

    /// An empty table with the proxy metatable, standing for the object at `range` of `fields` fields.
    /// A transform's tables are filled whole, so they get room for every field and the kept text and
    /// its range; a filter or route reads a field or two, and most tables are never read: room for the
    /// kept text is enough.
    private func pushLazyTable(_ range: Range<Int>, fields: Int, use: ParameterUse.Use) -> Pending {
        if use == .unused {
            lua_pushnil(L)
            return .none
        }
        let keeps = use == .escapes
        lua_createtable(L, 0, reader.recordsShape ? Int32(clamping: fields + 2) : keeps ? 2 : 1)
        lua_rawgeti(L, sluice_lua_registryindex(), lua_Integer(proxyRef))
        lua_setmetatable(L, -2)
        return Pending(table: lua_topointer(L, -1), range: range, mayOutliveCall: keeps)
    }

    /// 0 action, 1 record, 2 changes, 3 metadata, nil for other keys (the key read past).
    private static func slot(_ cursor: inout JSONCursor) throws(FunctionError) -> Int32? {
        var scratch: [UInt8] = []
        return try cursor.readString(&scratch) { key in
            guard let p = key.baseAddress else { return nil }
            switch key.count {
            case 6 where memcmp(p, "action", 6) == 0: return 0
            case 6 where memcmp(p, "record", 6) == 0: return 1
            case 7 where memcmp(p, "changes", 7) == 0: return 2
            case 8 where memcmp(p, "metadata", 8) == 0: return 3
            default: return nil
            }
        }
    }

    /// Ends the call (also one that failed): this call's tables still untouched keep a copy of their
    /// JSON. `arguments` is where `push` put `action`; the four values must still be there, unless
    /// the push failed.
    func finish(arguments: Int32) {
        defer {
            bytes = nil
            pending = (.none, .none, .none)
            encodedBySluice = false
        }
        guard let bytes, lua_gettop(L) >= arguments + 3, lua_checkstack(L, 4) != 0 else { return }
        // The tables still lazy, at their stack slots (no array: this runs for every call).
        func lazy(_ entry: Pending, _ index: Int32) -> Bool {
            entry.table != nil && entry.mayOutliveCall && lua_topointer(L, index) == entry.table
        }
        let kept = (lazy(pending.0, arguments + 1), lazy(pending.1, arguments + 2), lazy(pending.2, arguments + 3))
        guard kept.0 || kept.1 || kept.2 else { return }
        let top = lua_gettop(L)
        defer { lua_settop(L, top) }
        let whole = bytes.count < Int(UInt32.max)
        if whole {
            // One copy of the message for all of them.
            bytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) { _ = lua_pushlstring(L, $0, bytes.count) }
        }
        func keep(_ entry: Pending, at index: Int32) {
            if whole {
                sluice_lua_keep_text(L, index, -1, lua_Integer(entry.range.lowerBound), lua_Integer(entry.range.count))
                return
            }
            bytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                _ = lua_pushlstring(L, $0 + entry.range.lowerBound, entry.range.count)
            }
            sluice_lua_keep_text(L, index, -1, 0, lua_Integer(entry.range.count))
            sluice_lua_pop(L, 1)
        }
        if kept.0 { keep(pending.0, at: arguments + 1) }
        if kept.1 { keep(pending.1, at: arguments + 2) }
        if kept.2 { keep(pending.2, at: arguments + 3) }
    }

    // MARK: - Filling a table

    /// Fills the table at `table`, whose proxy metatable was just removed. Called from C (a
    /// metamethod, a replaced base function, the writer): it calls only Lua functions that cannot
    /// raise (the memory cap is lifted) and leaves the stack as it was.
    private func materialize(_ L: OpaquePointer, _ table: Int32) {
        let top = lua_gettop(L)
        defer { lua_settop(L, top) }
        guard lua_checkstack(L, 8) != 0 else { return }
        if let bytes, let range = pendingRange(lua_topointer(L, table), taking: true) {
            fill(table, bytes, range)
        } else if sluice_lua_take_kept_text(L, table) == LUA_TSTRING {
            // A table from an earlier call, filled from its call's copy (on the stack while it is read).
            let packed = lua_tointegerx(L, -1, nil)
            var length = 0
            let text = lua_tolstring(L, -2, &length)!
            let start = Int(packed >> 32), count = Int(packed & 0xFFFF_FFFF)
            guard start >= 0, start + count <= length else { return }
            let buffer = UnsafeBufferPointer(start: UnsafeRawPointer(text).assumingMemoryBound(to: UInt8.self), count: length)
            fill(table, buffer, start..<(start + count))
        }
    }

    /// Reads the field `key` of a lazy table of this call (installed for filters and routing functions
    /// only: a transform's tables are filled whole, for their shape) and stores it in the table, which
    /// stays lazy for its other fields: 1 with the value pushed (nil when absent or null), or -1.
    private func readField(_ L: OpaquePointer, _ table: Int32, _ key: Int32) -> Int32 {
        guard encodedBySluice, let bytes, lua_checkstack(L, 8) != 0,
              let range = pendingRange(lua_topointer(L, table), taking: false) else { return -1 }
        var length = 0
        guard let name = lua_tolstring(L, key, &length) else { return -1 }
        var cursor = JSONCursor(UnsafeBufferPointer(rebasing: bytes[..<range.upperBound]))
        cursor.index = range.lowerBound
        do throws(FunctionError) {
            try cursor.expect(UInt8(ascii: "{"))
            if !cursor.take(UInt8(ascii: "}")) {
                repeat {
                    let matches = try cursor.readString(&scratch) { field in
                        field.count == length && (length == 0 || memcmp(field.baseAddress!, name, length) == 0)
                    }
                    try cursor.expect(UInt8(ascii: ":"))
                    if matches {
                        try reader.push(&cursor, depth: 1, inArray: false)
                        if lua_type(L, -1) != LUA_TNIL {
                            lua_pushvalue(L, key)
                            lua_pushvalue(L, -2)
                            lua_rawset(L, table)
                        }
                        return 1
                    }
                    _ = try cursor.skipValue()
                } while cursor.take(UInt8(ascii: ","))
            }
            lua_pushnil(L)
            return 1
        } catch {
            return -1
        }
    }

    /// The range of this call's lazy table at `pointer`, if it is one still empty; `taking` marks it filled.
    private func pendingRange(_ pointer: UnsafeRawPointer?, taking: Bool) -> Range<Int>? {
        guard let pointer else { return nil }
        if pending.0.table == pointer { if taking { pending.0.table = nil }; return pending.0.range }
        if pending.1.table == pointer { if taking { pending.1.table = nil }; return pending.1.range }
        if pending.2.table == pointer { if taking { pending.2.table = nil }; return pending.2.range }
        return nil
    }

    private func fill(_ table: Int32, _ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
        if reader.recordsShape {
            lua_rawgeti(L, sluice_lua_registryindex(), lua_Integer(shapesRef))
            reader.shapesIndex = lua_gettop(L)
        }
        // Empty, unless something wrote to it first: then what was written wins.
        lua_pushnil(L)
        let keepExisting = lua_next(L, table) != 0
        if keepExisting { sluice_lua_pop(L, 2) }
        var cursor = JSONCursor(UnsafeBufferPointer(rebasing: buffer[..<range.upperBound]))
        cursor.index = range.lowerBound
        do throws(FunctionError) {
            try cursor.expect(UInt8(ascii: "{"))
            try reader.fillObject(table, &cursor, depth: 0, keepExisting: keepExisting)
        } catch {
            // The JSON was checked when it was pushed, so only a stack that cannot grow ends here:
            // what was filled stays (the caller resets the stack).
        }
    }
}
