import CLua

/// What a function's code does with each of its four parameters (`action, record, changes,
/// metadata`), read from its compiled bytecode once, so that a call can skip the work for tables
/// the function can never see again:
///
/// - `unused`: the function never reads the parameter (or declares fewer parameters): nil is
///   passed, no table is made.
/// - `indexed`: the parameter is only ever indexed (`record.id`, `record[k]`), tested (`if changes`,
///   `changes == nil`) or measured (`#record`), never copied,
///   passed, returned, compared, captured by a closure or overwritten. The table cannot be reached
///   once the call returns, so it needs no copy of the message to outlive the call.
/// - `escapes`: anything else; the table may be kept (`last = record`) and read in a later call.
///
/// The analysis is conservative: an operand field that merely might name the parameter's register
/// counts as a use, and any bytecode it cannot read in full makes every parameter `escapes`. It
/// looks at the entry function's own instructions (parameters are its lowest registers, below every
/// local and temporary) and at the registers its nested functions capture; nothing else in a
/// sandboxed state can reach a parameter (no `debug`, no `load`).
struct ParameterUse: Equatable, CustomStringConvertible {
    enum Use: Equatable { case unused, indexed, escapes }

    /// For action, record, changes and metadata.
    var uses: [Use]

    static let allEscape = ParameterUse(uses: [.escapes, .escapes, .escapes, .escapes])

    var description: String { uses.map { "\($0)" }.joined(separator: ",") }

    subscript(_ parameter: Int) -> Use { uses[parameter] }

    /// The uses of the Lua function on top of the stack (left there), from `lua_dump`.
    static func of(functionOnTop L: OpaquePointer) -> ParameterUse {
        guard lua_type(L, -1) == LUA_TFUNCTION, lua_iscfunction(L, -1) == 0 else { return .allEscape }
        var dump: [UInt8] = []
        let status = withUnsafeMutablePointer(to: &dump) { pointer in
            lua_dump(L, { _, bytes, size, context in
                guard let bytes, let context else { return 1 }
                context.assumingMemoryBound(to: [UInt8].self).pointee
                    .append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: size))
                return 0
            }, pointer, 1)
        }
        guard status == 0 else { return .allEscape }
        return analyze(dump: dump)
    }

    /// The uses, from a stripped dump of a Lua 5.4 function (`lua_dump(…, strip: 1)`).
    static func analyze(dump: [UInt8]) -> ParameterUse {
        var reader = DumpReader(bytes: dump)
        guard let function = try? reader.entryFunction(), reader.atEnd else { return .allEscape }
        return analyze(function)
    }

    static func analyze(_ function: DumpReader.Function) -> ParameterUse {
        if function.isVararg { return .allEscape }
        var uses = [Use](repeating: .unused, count: 4)
        func escape(_ register: Int) { if register < 4 { uses[register] = .escapes } }
        func escapeFrom(_ first: Int) { for register in 0..<4 where register >= first { uses[register] = .escapes } }
        func index(_ register: Int) { if register < 4, uses[register] == .unused { uses[register] = .indexed } }
        for instruction in function.code {
            let op = Int(instruction & 0x7F)
            let a = Int((instruction >> 7) & 0xFF)
            let b = Int((instruction >> 16) & 0xFF)
            let c = Int((instruction >> 24) & 0xFF)
            guard op < Op.registers.count else { return .allEscape }
            switch Op.registers[op] {
            case .none: break
            case .a: escape(a)
            case .c: escape(c)
            case .ab: escape(a); escape(b)
            case .ac: escape(a); escape(c)
            case .abc: escape(a); escape(b); escape(c)
            case .rangeFromA: escapeFrom(a)
            case .indexB: escape(a); index(b)
            case .indexBKeyC: escape(a); index(b); escape(c)
            case .readA: index(a)
            case .readB: escape(a); index(b)
            }
        }
        for child in function.children {
            for upvalue in child.upvalues where upvalue.inStack { escape(Int(upvalue.index)) }
        }
        for register in 0..<4 where register >= function.parameterCount {
            uses[register] = .unused                                // never bound to anything the code can name
        }
        return ParameterUse(uses: uses)
    }

    /// Which operand fields of each Lua 5.4 opcode name registers (lopcodes.h, the same in every
    /// 5.4 release), and how. Fields that hold constants, counts or immediates are left out.
    enum Op {
        enum Registers {
            case none, a, c, ab, ac, abc
            /// Registers A and up (calls, returns, loops, concatenation, …).
            case rangeFromA
            /// R[A] := R[B][constant or integer]: B is only indexed.
            case indexB
            /// R[A] := R[B][R[C]]: B is only indexed, C is used as a key.
            case indexBKeyC
            /// A is only tested, or compared with a constant.
            case readA
            /// R[A] := not R[B] / #R[B] (the proxy's own __len): B is only read.
            case readB
        }

        static let registers: [Registers] = [
            .ab,            // 0 MOVE
            .a, .a, .a, .a, // 1 LOADI, LOADF, LOADK, LOADKX
            .a, .a, .a,     // 5 LOADFALSE, LFALSESKIP, LOADTRUE
            .rangeFromA,    // 8 LOADNIL
            .a, .a, .a,     // 9 GETUPVAL, SETUPVAL, GETTABUP
            .indexBKeyC,    // 12 GETTABLE
            .indexB, .indexB, // 13 GETI, GETFIELD
            .c,             // 15 SETTABUP (UpValue[A][K[B]] := RK(C))
            .abc, .ac, .ac, // 16 SETTABLE, SETI, SETFIELD
            .a,             // 19 NEWTABLE
            .abc,           // 20 SELF
            .ab, .ab, .ab, .ab, .ab, .ab, .ab, .ab, .ab, .ab, .ab, // 21 ADDI, ADDK … BXORK
            .ab, .ab,       // 32 SHRI, SHLI
            .abc, .abc, .abc, .abc, .abc, .abc, .abc, .abc, .abc, .abc, .abc, .abc, // 34 ADD … SHR
            .ab, .a, .a,    // 46 MMBIN, MMBINI, MMBINK
            .ab, .ab,       // 49 UNM, BNOT
            .readB, .readB, // 51 NOT, LEN
            .rangeFromA,    // 53 CONCAT
            .rangeFromA,    // 54 CLOSE
            .a,             // 55 TBC
            .none,          // 56 JMP
            .ab, .ab, .ab,  // 57 EQ, LT, LE
            .readA, .readA, // 60 EQK, EQI
            .a, .a, .a, .a, // 62 LTI, LEI, GTI, GEI (a metamethod may see A)
            .readA,         // 66 TEST
            .ab,            // 67 TESTSET
            .rangeFromA, .rangeFromA, .rangeFromA, // 68 CALL, TAILCALL, RETURN
            .none,          // 71 RETURN0
            .a,             // 72 RETURN1
            .rangeFromA, .rangeFromA, .rangeFromA, .rangeFromA, .rangeFromA, // 73 FORLOOP … TFORLOOP
            .rangeFromA,    // 78 SETLIST
            .a,             // 79 CLOSURE
            .rangeFromA,    // 80 VARARG
            .none, .none,   // 81 VARARGPREP, EXTRAARG
        ]
    }
}

/// Reads the parts of a stripped Lua 5.4 binary chunk that the analysis needs (ldump.c's layout),
/// checking the header and every length so that a dump it does not understand is refused.
struct DumpReader {
    struct Upvalue { var inStack: Bool; var index: UInt8 }
    struct Function {
        var parameterCount: Int
        var isVararg: Bool
        var code: [UInt32]
        var upvalues: [Upvalue]
        var children: [Function]
    }
    struct Malformed: Error {}

    let bytes: [UInt8]
    var offset = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { offset == bytes.count }

    mutating func entryFunction() throws(Malformed) -> Function {
        let signature: [UInt8] = [0x1B, 0x4C, 0x75, 0x61, 0x54, 0x00, 0x19, 0x93, 0x0D, 0x0A, 0x1A, 0x0A, 4, 8, 8]
        guard try take(signature.count).elementsEqual(signature) else { throw Malformed() }
        _ = try take(16)                                            // LUAC_INT and LUAC_NUM
        _ = try byte()                                              // the main function's upvalue count
        return try function(depth: 0)
    }

    private mutating func function(depth: Int) throws(Malformed) -> Function {
        guard depth < 200 else { throw Malformed() }
        try skipString()                                            // source (absent when stripped)
        _ = try size()                                              // linedefined
        _ = try size()                                              // lastlinedefined
        let parameters = Int(try byte())
        let vararg = try byte() != 0
        _ = try byte()                                              // maxstacksize
        let codeCount = try size()
        let raw = try take(codeCount * 4)
        var code: [UInt32] = []
        code.reserveCapacity(codeCount)
        var i = raw.startIndex
        while i < raw.endIndex {
            code.append(UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24)
            i += 4
        }
        for _ in 0..<(try size()) {                                 // constants
            switch try byte() {
            case 0x00, 0x01, 0x11: break                            // nil, false, true
            case 0x03, 0x13: _ = try take(8)                        // integer, float
            case 0x04, 0x14: try skipString()                       // short, long string
            default: throw Malformed()
            }
        }
        var upvalues: [Upvalue] = []
        for _ in 0..<(try size()) {
            let inStack = try byte() != 0
            let index = try byte()
            _ = try byte()                                          // kind
            upvalues.append(Upvalue(inStack: inStack, index: index))
        }
        var children: [Function] = []
        for _ in 0..<(try size()) { children.append(try function(depth: depth + 1)) }
        // Debug information: empty in a stripped dump, but read as written.
        _ = try take(try size())                                    // lineinfo
        for _ in 0..<(try size()) { _ = try size(); _ = try size() } // abslineinfo
        for _ in 0..<(try size()) { try skipString(); _ = try size(); _ = try size() } // locvars
        for _ in 0..<(try size()) { try skipString() }              // upvalue names
        return Function(parameterCount: parameters, isVararg: vararg, code: code, upvalues: upvalues, children: children)
    }

    private mutating func byte() throws(Malformed) -> UInt8 {
        guard offset < bytes.count else { throw Malformed() }
        defer { offset += 1 }
        return bytes[offset]
    }

    private mutating func take(_ count: Int) throws(Malformed) -> ArraySlice<UInt8> {
        guard count >= 0, count <= bytes.count - offset else { throw Malformed() }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    /// dumpSize: 7 bits per byte, most significant first, the last byte marked with 0x80.
    private mutating func size() throws(Malformed) -> Int {
        var value = 0
        for _ in 0..<10 {
            let next = try byte()
            value = (value << 7) | Int(next & 0x7F)
            guard value <= Int(Int32.max) else { throw Malformed() }
            if next & 0x80 != 0 { return value }
        }
        throw Malformed()
    }

    private mutating func skipString() throws(Malformed) {
        let length = try size()
        if length > 0 { _ = try take(length - 1) }
    }
}
