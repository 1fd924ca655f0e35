import SluiceCore

/// Turns a sink's `destination` into librdkafka properties.
public enum KafkaSettings {
    /// Properties for a producer that keeps every message, in order per partition, until the broker
    /// acknowledged it: idempotent, `acks=all`, no delivery timeout (Sluice decides when to give up),
    /// Java-compatible partitioning.
    public static func producerProperties(for destination: KafkaDestination, clientID: String) -> [(String, String)] {
        var properties: [(String, String)] = [
            ("bootstrap.servers", destination.hosts.map(\.description).joined(separator: ",")),
            ("client.id", clientID),
            ("enable.idempotence", "true"),
            // A failed batch that would leave a gap in a partition is a fatal error instead: the
            // dispatcher replaces the producer and sends again in order (hot keys are pipelined).
            ("enable.gapless.guarantee", "true"),
            // One produce request per broker at a time: a request that fails and is retried is never
            // overtaken by a later one, even on brokers that do not check idempotent sequence numbers
            // (librdkafka's mock cluster among them). Batches stay large, so this costs little.
            ("max.in.flight.requests.per.connection", "1"),
            ("acks", "all"),
            ("partitioner", "murmur2_random"),
            ("message.timeout.ms", "0"),
            ("compression.type", destination.compression.rawValue),
            ("batch.num.messages", String(destination.batchSize)),
            // A batch (compressed or not) must fit what the broker accepts.
            ("message.max.bytes", String(destination.maxMessageBytes)),
            ("batch.size", String(min(1_000_000, destination.maxMessageBytes))),
            ("linger.ms", "5"),
            ("queue.buffering.max.messages", String(max(100_000, destination.maxAckPending * 2))),
            ("socket.keepalive.enable", "true"),
            // A broker that comes back is used within 2 s (librdkafka waits up to 10 s by default), so a
            // retry right after an outage does not time out while the client still waits to reconnect.
            ("reconnect.backoff.max.ms", "2000"),
        ]
        properties += securityProperties(for: destination)
        return properties
    }

    /// security.protocol and SASL/TLS properties; shared by the producer and `sluice check`.
    public static func securityProperties(for destination: KafkaDestination) -> [(String, String)] {
        var properties: [(String, String)] = []
        let sasl = destination.saslMechanism != nil
        switch (sasl, destination.tls != nil) {
        case (false, false): properties.append(("security.protocol", "plaintext"))
        case (false, true): properties.append(("security.protocol", "ssl"))
        case (true, false): properties.append(("security.protocol", "sasl_plaintext"))
        case (true, true): properties.append(("security.protocol", "sasl_ssl"))
        }
        if let tls = destination.tls {
            // `tls: true` encrypts without verifying (as Sequin does); `verify: true` checks the
            // broker's certificate chain and host name.
            properties.append(("enable.ssl.certificate.verification", tls.verify ? "true" : "false"))
            properties.append(("ssl.endpoint.identification.algorithm", tls.verify ? "https" : "none"))
            if let ca = tls.caFile { properties.append(("ssl.ca.location", ca)) }
            if let cert = tls.certFile { properties.append(("ssl.certificate.location", cert)) }
            if let key = tls.keyFile { properties.append(("ssl.key.location", key)) }
        }
        if let mechanism = destination.saslMechanism, let username = destination.username, let password = destination.password {
            properties += [("sasl.mechanisms", mechanism.librdkafkaName), ("sasl.username", username),
                           ("sasl.password", password)]
        }
        return properties
    }

    /// Property names whose values must never be logged.
    public static let secretProperties: Set<String> = ["sasl.password", "ssl.key.password", "ssl.key.pem"]
}
