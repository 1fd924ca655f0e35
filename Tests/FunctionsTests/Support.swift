import Functions
import SluiceCore

/// A Sequin-shaped message value, as Sluice encodes it.
func message(record: String, changes: String = "null", action: String = "insert",
             metadata: String = #"{"table_schema":"public","table_name":"orders"}"#) -> [UInt8] {
    Array(#"{"record":\#(record),"changes":\#(changes),"action":"\#(action)","metadata":\#(metadata)}"#.utf8)
}

/// A function declared inline, the way `functions[0].code` reaches Sluice.
func function(_ kind: FunctionConfig.Kind, _ code: String, name: String = "fn", origin: String = "functions[0].code",
              maxInstructions: Int = 1_000_000, maxMemoryMB: Int = 16) throws(FunctionError) -> UserFunction {
    try UserFunction(FunctionConfig(name: name, kind: kind, code: code, origin: origin,
                                    maxInstructions: maxInstructions, maxMemoryMB: maxMemoryMB))
}

/// A transform's output as text.
func transformed(_ code: String, _ value: [UInt8]) throws(FunctionError) -> String {
    String(decoding: try function(.transform, code).transform(value), as: UTF8.self)
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
