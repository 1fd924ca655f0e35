import Foundation

/// JSON text that goes into an answer as it is — a message value Sluice holds, a number with set digits —
/// like Go's `json.RawMessage`. `OrderedJSONEncoder` writes its bytes unchanged, so a message's numbers keep
/// every digit (19.990, integers past 2^64) and its keys their order. Whoever makes one vouches that the
/// bytes are one JSON value: a message Sluice wrote, or digits it formatted.
struct JSONFragment: Encodable, Sendable {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// `value` with `fractionDigits` digits after the point, as `printf` rounds it ("12.3", "3.0").
    init(_ value: Double, fractionDigits: Int) {
        bytes = Array(String(format: "%.\(fractionDigits)f", value).utf8)
    }

    /// Other encoders cannot splice raw JSON, and a fragment re-encoded through them would lose digits:
    /// refuse rather than change a message.
    func encode(to encoder: any Encoder) throws {
        throw EncodingError.invalidValue(self, .init(
            codingPath: encoder.codingPath, debugDescription: "a JSONFragment is written by OrderedJSONEncoder only"))
    }
}
