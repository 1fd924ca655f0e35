import FuzzSupport
import SluiceCore

/// Fuzz target: a PostgreSQL value's text form → `ValueConverter` (and through it the array and
/// composite literal parsers). The first byte chooses the type: a built-in type OID (scalars,
/// arrays, ranges and multiranges), or — with the high bit set — a composite type or an array of
/// composites whose attribute types the next bytes choose; bit 0x40 takes the type's `value_format:
/// sequin` form. The rest is the text. Whatever the text, the JSON written must be JSON (except for
/// json/jsonb, whose text the server vouches for and which is embedded as is).
enum ValuesTarget {
    /// Built-in OIDs with a kind of their own, their arrays, and a few text-form types.
    static let oids: [UInt32] = [
        16, 20, 21, 23, 26, 28, 700, 701, 1700, 114, 3802, 1184, 1114, 1082, 1186,
        1000, 1005, 1007, 1016, 1021, 1022, 1231, 199, 3807, 1185, 1115, 1182, 1187, 1020,
        25, 1043, 17, 2950, 1083, 1266, 1009, 1015, 2951, 22, 30,
        3904, 3906, 3908, 3910, 3912, 3926, 4451, 4532, 4536, 3905, 6150,
    ]

    static func builtinKind(_ selector: UInt8) -> ValueKind {
        ValueKind.builtin(oid: oids[Int(selector) % oids.count]) ?? .text
    }

    /// The kind the input's first bytes choose, and how many bytes that took.
    static func chooseKind(_ input: UnsafeRawBufferPointer) -> (ValueKind, Int) {
        guard let first = input.first else { return (.text, 0) }
        var used = 1
        var kind: ValueKind
        if first & 0x80 == 0 {
            kind = builtinKind(first & 0x3F)
        } else {
            // Composite: up to 4 attributes; bit 0x20 makes it an array of such composites.
            let count = used < input.count ? Int(input[used] % 5) : 0
            used += 1
            var fields: [ValueKind.Field] = []
            for index in 0..<count {
                let selector = used < input.count ? input[used] : 0
                used += 1
                fields.append(.init(name: "f\(index)", kind: selector & 0x80 == 0 ? builtinKind(selector)
                                    : .composite(fields: [.init(name: "x", kind: builtinKind(selector & 0x7F)), .init(name: "y", kind: .text)])))
            }
            kind = .composite(fields: fields)
            if first & 0x20 != 0 { kind = .array(element: kind, delimiter: UInt8(ascii: ",")) }
        }
        if first & 0x40 != 0 { kind = kind.sequinForm }
        return (kind, min(used, input.count))
    }

    static func embedsJSON(_ kind: ValueKind) -> Bool {
        switch kind {
        case .json: true
        case .array(let element, _): embedsJSON(element)
        case .composite(let fields): fields.contains { embedsJSON($0.kind) }
        default: false
        }
    }

    static func run(_ input: UnsafeRawBufferPointer) {
        let (kind, used) = chooseKind(input)
        let text = UnsafeBufferPointer(rebasing: input.assumingMemoryBound(to: UInt8.self)[used...])
        var json = JSONWriter()
        ValueConverter.write(text: text, kind: kind, to: &json)
        guard !embedsJSON(kind) else { return }
        // Text passes through byte for byte, so UTF-8 is not demanded; the structure is.
        if let problem = JSONValidator.problem(in: json.bytes, requireUTF8: false) {
            FuzzRun.require(false, "\(kind): \(problem): \(String(decoding: json.bytes, as: UTF8.self))")
        }
    }
}

// scripts/fuzz builds with -DSLUICE_LIBFUZZER and `--sanitize fuzzer`: libFuzzer brings `main` and calls
// this for every input. Without it (a plain `swift build`) the target is a replay tool.
#if SLUICE_LIBFUZZER
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    ValuesTarget.run(FuzzRun.buffer(data, size))
    return 0
}
#else
@main
enum FuzzValuesMain {
    static func main() { FuzzRun.replay(ValuesTarget.run) }
}
#endif
