import CLua
import SluiceCore

/// Where a routing function sends a message; nil keeps the sink's default.
public struct Route: Sendable, Equatable {
    public var topic: String?
    public var messageKey: [UInt8]?

    public init(topic: String? = nil, messageKey: [UInt8]? = nil) {
        self.topic = topic
        self.messageKey = messageKey
    }
}

/// One declared function, compiled into a Lua state of its own (path functions need none).
/// Not thread-safe: each thread that runs functions compiles its own.
public final class UserFunction {
    public let config: FunctionConfig
    private let state: LuaState?
    private let path: PathFunction?
    /// The entry point's global name, as C text (no conversion per call).
    private let entryName: [CChar]
    /// The entry function as compiled (`lua_topointer`): a function that replaces its own global is
    /// called with every parameter treated as `escapes`.
    private let analyzedEntry: UnsafeRawPointer?
    /// What the compiled entry function does with its parameters (internal for tests).
    let parameterUses: ParameterUse
    public static let maxMessageKeyBytes = 512

    /// Compiles the function: a syntax error, a chunk that fails or one that does not define its
    /// global function is an error naming `functions[i].code` (or the file) and the line.
    public init(_ config: FunctionConfig) throws(FunctionError) {
        self.config = config
        if config.kind == .path {
            guard let path = PathFunction(path: config.path) else {
                throw FunctionError("\(config.name): \"\(config.path)\" — start with record, changes, action or metadata")
            }
            self.path = path
            self.state = nil
            self.entryName = []
            self.analyzedEntry = nil
            self.parameterUses = .allEscape
            return
        }
        path = nil
        let state = try LuaState(maxInstructions: config.maxInstructions, memoryLimitBytes: config.maxMemoryMB * 1_048_576)
        try state.run(code: config.code, chunkName: "=" + config.origin)
        let entry = config.kind.entryPoint!
        guard state.hasGlobalFunction(entry) else {
            throw FunctionError("\(config.origin): defines no global function \(entry) — write function \(entry)(action, record, changes, metadata) … end")
        }
        state.install(MessageArguments(state.L, recordsShape: config.kind == .transform))
        self.state = state
        entryName = Array(entry.utf8CString)
        entryName.withUnsafeBufferPointer { _ = lua_getglobal(state.L, $0.baseAddress) }
        analyzedEntry = lua_topointer(state.L, -1)
        parameterUses = ParameterUse.of(functionOnTop: state.L)
        state.setTop(state.top - 1)
    }

    // MARK: - Calls

    /// A filter's verdict: true keeps the message.
    public func filter(_ value: [UInt8], layout: MessageLayout? = nil) throws(FunctionError) -> Bool {
        let state = try requireState(.filter)
        return try value.withUnsafeBufferPointer { (buffer) throws(FunctionError) -> Bool in
            let top = state.top
            defer { finishCall(state, top) }
            try callEntry(state, buffer, layout)
            switch lua_type(state.L, -1) {
            case LUA_TBOOLEAN: return lua_toboolean(state.L, -1) != 0
            default: throw FunctionError("\(config.name): filter must return true or false, it returned \(describe(state, -1))")
            }
        }
    }

    /// A routing function's topic and key, checked against Kafka's rules.
    public func route(_ value: [UInt8], layout: MessageLayout? = nil) throws(FunctionError) -> Route {
        let state = try requireState(.routing)
        return try value.withUnsafeBufferPointer { (buffer) throws(FunctionError) -> Route in
            let top = state.top
            defer { finishCall(state, top) }
            try callEntry(state, buffer, layout)
            return try routeResult(state)
        }
    }

    private func routeResult(_ state: LuaState) throws(FunctionError) -> Route {
        let L = state.L
        guard lua_type(L, -1) == LUA_TTABLE else {
            throw FunctionError("\(config.name): route must return a table with topic and/or message_key, it returned \(describe(state, -1))")
        }
        let result = lua_gettop(L)
        sluice_lua_materialize(L, result)                   // `return record` reads the record's columns
        var route = Route()
        lua_pushlstring(L, "topic", 5)
        lua_rawget(L, result)
        switch lua_type(L, -1) {
        case LUA_TNIL: break
        case LUA_TSTRING:
            let topic = string(L, -1)
            if let problem = ConfigReader.topicProblem(topic) {
                throw FunctionError("\(config.name): route returned topic \"\(topic.prefix(300))\" — \(problem)")
            }
            route.topic = topic
        default:
            throw FunctionError("\(config.name): route returned a topic that is \(describe(state, -1)) — return a string")
        }
        sluice_lua_pop(L, 1)
        lua_pushlstring(L, "message_key", 11)
        lua_rawget(L, result)
        switch lua_type(L, -1) {
        case LUA_TNIL: break
        case LUA_TSTRING:
            var length = 0
            let pointer = lua_tolstring(L, -1, &length)!
            guard length <= Self.maxMessageKeyBytes else {
                throw FunctionError("\(config.name): route returned a message_key of \(length) bytes — at most \(Self.maxMessageKeyBytes)")
            }
            route.messageKey = Array(UnsafeRawBufferPointer(start: pointer, count: length))
        case LUA_TNUMBER:
            if lua_isinteger(L, -1) != 0 {
                route.messageKey = Array(String(lua_tointegerx(L, -1, nil)).utf8)
            } else {
                let number = lua_tonumberx(L, -1, nil)
                guard number.isFinite, number == number.rounded(), abs(number) < 9.2e18 else {
                    throw FunctionError("\(config.name): route returned message_key \(number) — return a string or an integer")
                }
                route.messageKey = Array(String(Int64(number)).utf8)
            }
        default:
            throw FunctionError("\(config.name): route returned a message_key that is \(describe(state, -1)) — return a string or an integer")
        }
        return route
    }

    /// A transform's (or path's) result: the new message value, as JSON.
    public func transform(_ value: [UInt8], layout: MessageLayout? = nil) throws(FunctionError) -> [UInt8] {
        if let path {
            return try path.apply(to: value)
        }
        let state = try requireState(.transform)
        return try value.withUnsafeBufferPointer { (buffer) throws(FunctionError) -> [UInt8] in
            let top = state.top
            // After the writer: it may still fill this call's tables from `buffer`.
            defer { finishCall(state, top) }
            try callEntry(state, buffer, layout)
            if lua_type(state.L, -1) == LUA_TNIL {
                throw FunctionError("\(config.name): transform returned nil — return the new message, or sluice.null for JSON null")
            }
            do throws(FunctionError) {
                return try LuaValueWriter.json(state.L, at: -1, arguments: state.arguments)
            } catch {
                throw FunctionError("\(config.name): transform \(error.message)")
            }
        }
    }

    // MARK: - Plumbing

    private func requireState(_ kind: FunctionConfig.Kind) throws(FunctionError) -> LuaState {
        guard config.kind == kind || (kind == .transform && config.kind == .path), let state else {
            throw FunctionError("\(config.name) is a \(config.kind.rawValue) function, not a \(kind.rawValue) function")
        }
        return state
    }

    /// Pushes the entry point and then the message's four parts (kept at `top + 2…5` until
    /// `finishCall`), then a copy of all five, and calls it; leaves one result on top.
    private func callEntry(_ state: LuaState, _ value: UnsafeBufferPointer<UInt8>, _ layout: MessageLayout?) throws(FunctionError) {
        let L = state.L
        let arguments = state.arguments!
        let top = state.top
        entryName.withUnsafeBufferPointer { _ = lua_getglobal(L, $0.baseAddress) }
        let uses = lua_topointer(L, -1) == analyzedEntry ? parameterUses : .allEscape
        try arguments.push(value, layout: layout, uses: uses)
        for index in top + 1...top + 5 { lua_pushvalue(L, index) }
        try state.call(arguments: 4, results: 1)
    }

    /// After a call (or a failed one): the message's tables stop reading its bytes; the stack is reset.
    private func finishCall(_ state: LuaState, _ top: Int32) {
        state.arguments?.finish(arguments: top + 2)
        state.setTop(top)
    }

    private func describe(_ state: LuaState, _ index: Int32) -> String {
        let name = state.typeName(at: index)
        switch lua_type(state.L, index) {
        case LUA_TNIL: return "nil"
        case LUA_TSTRING: return "a string (\"\(string(state.L, index).prefix(60))\")"
        case LUA_TNUMBER: return "a number (\(String(cString: lua_tolstring(state.L, index, nil))))"
        default: return "a \(name)"
        }
    }

    private func string(_ L: OpaquePointer, _ index: Int32) -> String {
        var length = 0
        guard let pointer = lua_tolstring(L, index, &length) else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }
}
