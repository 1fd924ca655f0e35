import Foundation
import Logging
import SluiceCore

/// `--log-format json`: one JSON object per line on standard error —
/// `{"time":…,"level":…,"label":…,"message":…,"metadata":{…}}` — for log collectors.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// One writer for every handler: lines from different threads never interleave.
    private static let output = LineWriter()

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var json = JSONWriter(capacity: 256)
        json.raw("{\"time\":")
        json.string(Self.timestamp())
        json.raw(",\"level\":")
        json.string(event.level.rawValue)
        json.raw(",\"label\":")
        json.string(label)
        json.raw(",\"message\":")
        json.string(event.message.description)
        json.raw(",\"metadata\":")
        Self.write(.dictionary(merged), to: &json)
        json.raw("}\n")
        Self.output.write(json.bytes)
    }

    static func write(_ value: Logger.Metadata.Value, to json: inout JSONWriter) {
        switch value {
        case .string(let text): json.string(text)
        case .stringConvertible(let value): json.string(value.description)
        case .array(let items):
            json.raw(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { json.raw(UInt8(ascii: ",")) }
                write(item, to: &json)
            }
            json.raw(UInt8(ascii: "]"))
        case .dictionary(let entries):
            json.raw(UInt8(ascii: "{"))
            for (index, key) in entries.keys.sorted().enumerated() {
                if index > 0 { json.raw(UInt8(ascii: ",")) }
                json.key(key)
                write(entries[key]!, to: &json)
            }
            json.raw(UInt8(ascii: "}"))
        }
    }

    /// RFC 3339 in UTC with microseconds, like the messages' timestamps.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let micros = Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000 - 946_684_800_000_000
        return PostgresTime.iso8601(microsecondsSince2000: micros)
    }
}

/// Writes whole lines to standard error under a lock.
final class LineWriter: @unchecked Sendable {
    private let lock = NSLock()

    func write(_ bytes: [UInt8]) {
        lock.lock()
        defer { lock.unlock() }
        bytes.withUnsafeBufferPointer { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
