import Foundation

/// One message as a consumer (kcat) sees it.
struct ConsumedMessage {
    var partition: Int
    var offset: Int
    var key: String?
    /// The raw JSON text, to check exact number digits and field order.
    var payload: String
    var json: [String: Any]

    var record: [String: Any] { json["record"] as? [String: Any] ?? [:] }
    var metadata: [String: Any] { json["metadata"] as? [String: Any] ?? [:] }
    var action: String? { json["action"] as? String }
}

/// Reads a topic from the beginning with kcat, a consumer independent of Sluice's producer.
struct KafkaTopic {
    let hosts: String
    let name: String

    /// Every message currently in the topic (empty while the topic does not exist yet), as a consumer
    /// with librdkafka's default `isolation.level=read_committed` sees it; with `readUncommitted`, also
    /// the messages of aborted and still open transactions.
    func messages(partition: Int? = nil, readUncommitted: Bool = false) throws -> [ConsumedMessage] {
        // A partition whose leader is down never reaches its end: give up after a while and keep what came.
        let only = (partition.map { ["-p", String($0)] } ?? []) + (readUncommitted ? ["-X", "isolation.level=read_uncommitted"] : [])
        let result = try runCommand("/usr/bin/timeout", ["-k", "1", "10", "/usr/bin/kcat", "-C", "-b", hosts, "-t", name, "-o", "beginning",
                                                         "-e", "-J", "-q", "-X", "topic.metadata.refresh.interval.ms=1000"] + only)
        return result.stdout.split(separator: "\n").compactMap { line -> ConsumedMessage? in
            guard let envelope = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return nil }
            let payload = envelope["payload"] as? String ?? ""
            let json = (try? JSONSerialization.jsonObject(with: Data(payload.utf8))) as? [String: Any] ?? [:]
            return ConsumedMessage(partition: envelope["partition"] as? Int ?? -1, offset: envelope["offset"] as? Int ?? -1,
                                   key: envelope["key"] as? String, payload: payload, json: json)
        }.sorted { ($0.partition, $0.offset) < ($1.partition, $1.offset) }
    }

    /// Waits until at least `count` messages are in the topic; returns all of them.
    func waitForMessages(_ count: Int, partition: Int? = nil, timeout: Double = 60) throws -> [ConsumedMessage] {
        var last: [ConsumedMessage] = []
        _ = try eventually(timeout: timeout, every: 0.5) {
            last = try messages(partition: partition)
            return last.count >= count
        }
        return last
    }
}
