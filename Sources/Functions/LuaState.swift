import CLua
import SluiceCore

/// One sandboxed Lua state: only base (without load, dofile, loadfile, require, collectgarbage),
/// string (without dump), table, math and utf8; every call runs under an instruction budget and a
/// memory cap. Not thread-safe: one state per function per thread.
final class LuaState {
    let L: OpaquePointer
    private let budget: UnsafeMutablePointer<sluice_lua_budget>
    let maxInstructions: Int
    let memoryLimitBytes: Int
    /// The chunk's name in error messages (the file, or `functions[i].code`).
    private(set) var origin = "function"

    init(maxInstructions: Int, memoryLimitBytes: Int) throws(FunctionError) {
        budget = .allocate(capacity: 1)
        budget.initialize(to: sluice_lua_budget())
        budget.pointee.limit = memoryLimitBytes
        guard let state = sluice_lua_newstate(budget) else {
            sluice_lua_budget_drain(budget)
            budget.deallocate()
            throw FunctionError("could not create a Lua state")
        }
        L = state
        self.maxInstructions = maxInstructions
        self.memoryLimitBytes = memoryLimitBytes
        try run(code: Self.prelude, chunkName: "=sluice")
        origin = "function"
    }

    /// A finalizer (`__gc`) runs whenever the collector does — also while Sluice pushes a message or
    /// closes the state, outside the budgets, where `while true do end` would hang the sink — so
    /// `setmetatable` refuses a metatable that has one. (Set later, `__gc` is never called.)
    private static let prelude = """
        local setmetatable, rawget, type, error = setmetatable, rawget, type, error
        _G.setmetatable = function(t, mt)
          if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
            error("__gc metamethods are not available to Sluice functions", 2)
          end
          return setmetatable(t, mt)
        end
        """

    deinit {
        budget.pointee.materialize = nil
        budget.pointee.read_field = nil
        budget.pointee.materialize_context = nil
        lua_close(L)
        sluice_lua_budget_drain(budget)
        budget.deallocate()
    }

    /// What fills the lazy message tables of this state (kept alive by the state).
    private(set) var arguments: MessageArguments?

    func install(_ arguments: MessageArguments) {
        self.arguments = arguments
        budget.pointee.materialize = MessageArguments.materializer
        // A transform's tables are filled whole (the writer needs their shape): no single fields there.
        budget.pointee.read_field = arguments.readsSingleFields ? MessageArguments.fieldReader : nil
        budget.pointee.materialize_context = Unmanaged.passUnretained(arguments).toOpaque()
    }

    /// Compiles and runs a chunk (which defines the functions), under the budgets.
    func run(code: String, chunkName: String) throws(FunctionError) {
        origin = chunkName.hasPrefix("=") || chunkName.hasPrefix("@") ? String(chunkName.dropFirst()) : chunkName
        var code = code
        let status = code.withUTF8 { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                sluice_lua_load(L, chars.baseAddress, chars.count, chunkName)
            }
        }
        guard status == LUA_OK else { throw popError(status: status) }
        try call(arguments: 0, results: 0)
    }

    /// Calls the function under `arguments` values on the stack; its results stay on the stack.
    func call(arguments: Int32, results: Int32) throws(FunctionError) {
        let status = sluice_lua_pcall(L, arguments, results, Int64(maxInstructions))
        guard status == LUA_OK else { throw popError(status: status) }
    }

    var top: Int32 { lua_gettop(L) }

    func setTop(_ index: Int32) { lua_settop(L, index) }

    /// True if the global `name` is a function; pushes nothing.
    func hasGlobalFunction(_ name: String) -> Bool {
        let type = lua_getglobal(L, name)
        sluice_lua_pop(L, 1)
        return type == LUA_TFUNCTION
    }

    /// Memory the state holds now (for tests and the console).
    var memoryUsed: Int { budget.pointee.used }

    /// The error on top of the stack, as one line, popped.
    private func popError(status: Int32) -> FunctionError {
        defer { sluice_lua_pop(L, 1) }
        if status == LUA_ERRMEM {
            return FunctionError("\(origin): exceeded its memory limit of \(memoryLimitBytes / 1_048_576) MB (functions[].max_memory_mb)")
        }
        switch lua_type(L, -1) {
        case LUA_TSTRING, LUA_TNUMBER:
            var length = 0
            let text = lua_tolstring(L, -1, &length)
            return FunctionError(text.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self) } ?? "error")
        default:
            let typeName = String(cString: lua_typename(L, lua_type(L, -1)))
            return FunctionError("\(origin): raised an error that is a \(typeName) value, not a message — use error(\"text\")")
        }
    }

    func typeName(at index: Int32) -> String {
        if sluice_lua_isnull(L, index) != 0 { return "sluice.null" }
        return String(cString: lua_typename(L, lua_type(L, index)))
    }
}
