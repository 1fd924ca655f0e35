import Foundation
import Ledger
import Testing

/// A row far larger than any message Kafka takes: memory stays bounded by the row itself, the message
/// is cancelled as too large with its size in the log, and the stream goes on.
@Suite(.serialized)
struct LargeValueTests {
    /// Sluice's peak resident memory so far (VmHWM), in MB.
    static func peakRSSMegabytes(_ process: SluiceProcess) -> Int? { memoryMegabytes(process, "VmHWM:") }

    /// A memory line of /proc/PID/status (VmHWM: peak resident, VmRSS: resident now), in MB.
    static func memoryMegabytes(_ process: SluiceProcess, _ field: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(process.process.processIdentifier)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
              let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return kilobytes / 1024
    }

    @Test func aHundredMegabyteValueIsCancelledAsTooLargeWithBoundedMemoryAndTheStreamGoesOn() throws {
        let fixture = try Fixture()
        let db = fixture.database
        try db.execute("CREATE TABLE public.docs (id int PRIMARY KEY, body text)")
        // Stored out of line and uncompressed (TOAST), as a value that does not compress would be.
        try db.execute("ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL")
        let topic = fixture.topic("docs")
        let sluice = try fixture.startSluice(config: fixture.config(tables: ["public.docs"], sinks: [.init(name: "s", topic: topic)]))
        try db.execute("INSERT INTO public.docs VALUES (1, 'small')")
        _ = try topic.waitForMessages(1, timeout: 30)
        let before = Self.peakRSSMegabytes(sluice) ?? 0

        let rowMB = 100
        let started = Date()
        try db.execute("INSERT INTO public.docs VALUES (2, repeat('x', \(rowMB) * 1024 * 1024))")
        try db.execute("INSERT INTO public.docs VALUES (3, 'small after')")

        // The small change after the large one arrives: the stream went on.
        let messages = try topic.waitForMessages(2, timeout: 120)
        let seconds = Date().timeIntervalSince(started)
        #expect(messages.map { $0.record["body"] as? String } == ["small", "small after"], "log:\n\(sluice.log.suffix(3000))")
        // Cancelled as too large, with its size, limit and key in the log and the ledger.
        let line = sluice.log.split(separator: "\n").first { $0.contains("message too large for Kafka; cancelled") }
        #expect(line?.contains("key=2") == true && line?.contains("limit_bytes=1000000") == true, "\(line ?? "no line")")
        let size = line.flatMap { $0.range(of: #"size_bytes=(\d+)"#, options: .regularExpression) }
            .flatMap { Int(line![$0].dropFirst("size_bytes=".count)) } ?? 0
        #expect(size >= rowMB * 1_048_576, "the log names the message's size (at least its value): \(size)")
        let cancelled = try SQLiteStateStore(path: fixture.statePath).cancelled(sink: "s")
        #expect(cancelled.map(\.reason) == ["too_large"] && cancelled.first?.key == "2")

        // Memory: bounded by max_memory_mb (128 by default) plus the row itself, over what sluice held before.
        // The row is in libpq's input buffer and in the decoded payload; libpq's own copy for us is given
        // back as it is read, and the message's JSON is never written.
        let peak = Self.peakRSSMegabytes(sluice) ?? -1
        let bound = before + 128 + rowMB
        print("\(rowMB) MB value: cancelled as too large (\(size) bytes) and the next change delivered \(Int(seconds)) s after; "
              + "sluice peak RSS \(peak) MB, bound \(bound) MB (before the row: \(before) MB; "
              + "resident after: \(Self.memoryMegabytes(sluice, "VmRSS:") ?? -1) MB)")
        #expect(peak > 0 && peak < bound, "peak RSS \(peak) MB with a \(rowMB) MB row; bound \(bound) MB")
        #expect(sluice.stop() == 0)
    }
}
