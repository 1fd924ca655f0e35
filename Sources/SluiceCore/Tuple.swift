/// One value of a row as pgoutput sends it.
public enum Cell: Hashable, Sendable {
    case null
    /// The column is TOASTed and did not change; the server did not send its value.
    case unchangedToast
    /// Text form; the range indexes the owning tuple's byte buffer.
    case text(Range<Int>)
    case binary(Range<Int>)
}

/// A row's values, sharing one byte buffer so decoding a row allocates once.
public struct Tuple: Hashable, Sendable {
    public var bytes: [UInt8]
    public var cells: [Cell]

    public init(bytes: [UInt8], cells: [Cell]) {
        self.bytes = bytes
        self.cells = cells
    }

    /// Builds a tuple from optional strings (nil = NULL); handy for tests and backfills.
    public init(texts: [String?]) {
        var bytes: [UInt8] = []
        var cells: [Cell] = []
        for text in texts {
            guard let text else { cells.append(.null); continue }
            let start = bytes.count
            bytes.append(contentsOf: text.utf8)
            cells.append(.text(start..<bytes.count))
        }
        self.init(bytes: bytes, cells: cells)
    }

    /// The text of cell `index`, or nil for NULL, unchanged TOAST or binary values.
    public func text(at index: Int) -> String? {
        guard index < cells.count, case .text(let range) = cells[index] else { return nil }
        return String(decoding: bytes[range], as: UTF8.self)
    }

    /// Whether cells `index` of two tuples hold the same value.
    public func sameValue(at index: Int, as other: Tuple) -> Bool {
        guard index < cells.count, index < other.cells.count else { return false }
        switch (cells[index], other.cells[index]) {
        case (.null, .null), (.unchangedToast, .unchangedToast): return true
        case (.text(let a), .text(let b)), (.binary(let a), .binary(let b)):
            return bytes[a].elementsEqual(other.bytes[b])
        default: return false
        }
    }
}
