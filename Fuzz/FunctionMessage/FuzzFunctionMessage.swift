import Functions
import FuzzSupport
import SluiceCore

/// Fuzz target: message JSON (as `sluice fn test` reads it from a file, or a parked message from the
/// ledger) → the JSON reader that hands a message to functions (`JSONCursor`, `MessageArguments`,
/// `LuaValueReader`) and back (`LuaValueWriter`). Each input goes to a filter, a routing function,
/// transforms that return parts of it and one that walks it, and path functions. Bad JSON must be
/// refused with an error; a transform's or path's output must be JSON.
enum FunctionMessageTarget {
    static func function(_ name: String, _ kind: FunctionConfig.Kind, code: String = "", path: String = "") -> UserFunction {
        do {
            return try UserFunction(FunctionConfig(name: name, kind: kind, code: code, origin: name, path: path,
                                                   maxInstructions: 200_000, maxMemoryMB: 16))
        } catch {
            fatalError("fuzz target's own function \(name) does not compile: \(error)")
        }
    }

    nonisolated(unsafe) static let filter = function("filter", .filter, code: """
        function filter(action, record, changes, metadata)
          if action == "delete" then return false end
          return record.id ~= nil or (type(metadata) == "table" and metadata.table_name == "orders")
        end
        """)
    nonisolated(unsafe) static let routing = function("route", .routing, code: """
        function route(action, record, changes, metadata)
          local id = record.id
          if type(id) ~= "string" and type(id) ~= "number" then id = "none" end
          return { topic = "orders-" .. (type(metadata) == "table" and tostring(metadata.table_schema) or "x"), message_key = id }
        end
        """)
    nonisolated(unsafe) static let transforms = [
        function("record", .transform, code: "function transform(action, record, changes, metadata) return record end"),
        function("whole", .transform, code: """
            function transform(action, record, changes, metadata)
              return { action = action, record = record, changes = changes, metadata = metadata, extra = sluice.null }
            end
            """),
        function("walk", .transform, code: """
            function transform(action, record, changes, metadata)
              local out = {}
              for key, value in pairs(record) do
                if type(value) == "table" then out[key] = #value else out[key] = value end
              end
              out.changed = changes ~= nil
              return out
            end
            """),
        function("path-record", .path, path: "record"),
        function("path-deep", .path, path: "metadata.transaction_annotations"),
        function("path-nested", .path, path: "record.address.city"),
    ]

    static func run(_ input: UnsafeRawBufferPointer) {
        let value = Array(input)
        _ = try? filter.filter(value)
        _ = try? routing.route(value)
        for transform in transforms {
            guard let output = try? transform.transform(value) else { continue }
            // Strings pass through as they came, so UTF-8 is not demanded; the structure is.
            if let problem = JSONValidator.problem(in: output, requireUTF8: false) {
                FuzzRun.require(false, "\(transform.config.name) wrote something that is not JSON (\(problem)): "
                                    + String(decoding: output.prefix(300), as: UTF8.self))
            }
        }
    }
}

// scripts/fuzz builds with -DSLUICE_LIBFUZZER and `--sanitize fuzzer`: libFuzzer brings `main` and calls
// this for every input. Without it (a plain `swift build`) the target is a replay tool.
#if SLUICE_LIBFUZZER
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FunctionMessageTarget.run(FuzzRun.buffer(data, size))
    return 0
}
#else
@main
enum FuzzFunctionMessageMain {
    static func main() { FuzzRun.replay(FunctionMessageTarget.run) }
}
#endif
