import Foundation
import Testing
@testable import PostgresSource

/// A large XLogData message is copied out of libpq's buffer in steps, giving back the copied pages of
/// that buffer as it goes: the copy must still be exact, at every alignment and size around the steps.
@Suite struct LargePayloadTests {
    /// A malloc'd buffer like the one `PQgetCopyData` returns, filled with a pattern that shows shifts.
    static func withBuffer(count: Int, shift: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        let raw = malloc(count + shift)!
        let bytes = raw.assumingMemoryBound(to: UInt8.self) + shift
        for index in 0..<count { bytes[index] = UInt8(truncatingIfNeeded: index &* 31 &+ index >> 13) }
        body(UnsafeRawBufferPointer(start: bytes, count: count))
        free(raw)
    }

    static func expected(count: Int, from start: Int) -> [UInt8] {
        (start..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 13) }
    }

    static let large = ReplicationStream.largeMessageBytes
    /// (bytes, offset of the buffer from malloc's): just under and at the threshold, a page boundary
    /// inside, a step boundary, several steps.
    static let cases: [(Int, Int)] = [(large - 1, 0), (large, 0), (large + 4_097, 3), (large * 3 / 2 + 1, 4_095), ((16 << 20) + 25, 1)]

    @Test(arguments: cases)
    func theCopyIsExact(count: Int, shift: Int) {
        Self.withBuffer(count: count, shift: shift) { raw in
            let payload = ReplicationStream.payload(of: raw, from: 25)
            #expect(payload.count == count - 25)
            #expect(payload == Self.expected(count: count, from: 25))
        }
    }

    @Test func aSmallMessageIsCopiedWhole() {
        Self.withBuffer(count: 100, shift: 0) { raw in
            #expect(ReplicationStream.payload(of: raw, from: 25) == Self.expected(count: 100, from: 25))
        }
    }
}
