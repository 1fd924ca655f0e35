import SluiceCore

/// A `type: path` function: the part of the message at `record.address.city` (or `record`,
/// `changes`, `action`, `metadata` …) becomes the whole message value, byte for byte as Sluice
/// encoded it. A path that leads nowhere yields JSON `null`.
public struct PathFunction: Sendable {
    public static let roots = ["record", "changes", "action", "metadata"]
    public let segments: [[UInt8]]

    /// Nil when the path does not start with one of the four parts of a message.
    public init?(path: String) {
        let parts = path.split(separator: ".", omittingEmptySubsequences: false).map { Array($0.utf8) }
        guard let first = parts.first, Self.roots.contains(String(decoding: first, as: UTF8.self)),
              parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        segments = parts
    }

    public func apply(to value: [UInt8]) throws(FunctionError) -> [UInt8] {
        try value.withUnsafeBufferPointer { (buffer) throws(FunctionError) -> [UInt8] in
            var cursor = JSONCursor(buffer)
            var scratch: [UInt8] = []
            for segment in segments {
                cursor.skipWhitespace()
                guard cursor.peek == UInt8(ascii: "{") else { return Array("null".utf8) }
                cursor.index += 1
                var found = false
                if !cursor.take(UInt8(ascii: "}")) {
                    repeat {
                        let matches = try cursor.readString(&scratch) { $0.elementsEqual(segment) }
                        try cursor.expect(UInt8(ascii: ":"))
                        if matches { found = true; break }
                        try cursor.skipValue()
                    } while cursor.take(UInt8(ascii: ","))
                }
                if !found { return Array("null".utf8) }
            }
            let range = try cursor.skipValue()
            return Array(buffer[range])
        }
    }
}
