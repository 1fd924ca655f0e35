import Foundation

extension KafkaDestination {
    static let fieldNames = ["type", "hosts", "topic", "tls", "username", "password", "sasl_mechanism", "compression",
                             "batch_size", "max_ack_pending", "max_message_bytes", "transactional_id", "transaction_timeout",
                             "offsets_topic"]

    /// A sink's `destination:`. `topicOptional`: a routing function may set the topic instead.
    /// Nil only when it is not a mapping.
    init?(reading node: ConfigNode, at path: String, topicOptional: Bool = false, reader: inout ConfigReader) {
        guard let fields = reader.fields(node, at: path, allowed: Self.fieldNames) else { return nil }
        switch reader.string("type", in: fields) {
        case "kafka": break
        case .some(let type): reader.report(.invalidValue, at: fields.path("type"), quoting: type, "— the only destination type is kafka")
        case nil: reader.report(.missingField, at: fields.path("type"), "is required: type: kafka")
        }
        let hosts = Self.hosts(fields, reader: &reader)
        var topic = ""
        if let text = reader.string("topic", in: fields) {
            if let problem = TopicNameProblem(topic: text) {
                reader.report(problem.code, at: fields.path("topic"), quoting: text, "— \(problem)")
            }
            topic = text
        } else if fields["topic"] == nil && !topicOptional {
            reader.report(.missingField, at: fields.path("topic"),
                          "is required: the Kafka topic to write to (or set a routing function that sets topic)")
        }
        let tls = fields["tls"].flatMap { TLS(reading: $0, at: fields.path("tls"), reader: &reader) }
        let username = reader.string("username", in: fields)
        let password = reader.string("password", in: fields, secret: true)
        let mechanism = Self.saslMechanism(fields, reader: &reader)
        var compression = Compression.none
        if let text = reader.string("compression", in: fields) {
            if let value = Compression(rawValue: text) { compression = value } else {
                reader.report(.invalidValue, at: fields.path("compression"), quoting: text, "— use none, gzip, snappy, lz4 or zstd")
            }
        }
        self.init(hosts: hosts, topic: topic, tls: tls, username: username, password: password,
                  saslMechanism: mechanism, compression: compression,
                  batchSize: reader.integer("batch_size", in: fields, range: 1...10_000) ?? 200,
                  maxAckPending: reader.integer("max_ack_pending", in: fields, range: 1...1_000_000) ?? 10_000,
                  maxMessageBytes: reader.integer("max_message_bytes", in: fields, range: 1_000...100_000_000) ?? 1_000_000)
        readTransactions(fields, reader: &reader)
    }

    /// `transactional_id`, `transaction_timeout` and `offsets_topic`: used by `delivery: exactly_once`.
    mutating func readTransactions(_ fields: ConfigFields, reader: inout ConfigReader) {
        if let text = reader.string("transactional_id", in: fields) {
            if text.trimmingSpaces.isEmpty {
                reader.report(.empty, at: fields.path("transactional_id"), "is empty — leave it out for sluice-<slot>-<sink name>, or name it")
            } else if text.utf8.count > 255 {
                reader.report(.outOfRange, at: fields.path("transactional_id"), quoting: text, "— at most 255 bytes")
            }
            transactionalID = text
        }
        if let text = reader.string("transaction_timeout", in: fields) {
            let duration = ConfigDuration(text)
            if let duration, (1...900).contains(duration.seconds) { transactionTimeout = duration.seconds } else {
                reader.report(duration == nil ? .invalidValue : .outOfRange, at: fields.path("transaction_timeout"), quoting: text,
                              "— write a duration from 1s to 15m (the brokers' transaction.max.timeout.ms), such as 60s")
            }
        }
        if let text = reader.string("offsets_topic", in: fields) {
            if let problem = TopicNameProblem(topic: text) {
                reader.report(problem.code, at: fields.path("offsets_topic"), quoting: text, "— \(problem)")
            }
            offsetsTopic = text
        }
    }

    /// `hosts: a:9092, [::1]:9092` — brokers, comma-separated.
    static func hosts(_ fields: ConfigFields, reader: inout ConfigReader) -> [HostPort] {
        let path = fields.path("hosts")
        guard let text = reader.string("hosts", in: fields) else {
            if fields["hosts"] == nil { reader.report(.missingField, at: path, "is required: list brokers as host:port, comma-separated") }
            return []
        }
        var hosts: [HostPort] = []
        for entry in text.split(separator: ",").map({ $0.trimmingSpaces }) {
            guard let host = HostPort(parsing: entry), !host.host.isEmpty else {
                reader.report(.invalidValue, at: path, quoting: entry, "— write host:port, e.g. 127.0.0.1:9092 or [::1]:9092")
                continue
            }
            guard (1...65535).contains(host.port) else {
                reader.report(.outOfRange, at: path, quoting: entry, "— port must be 1-65535")
                continue
            }
            hosts.append(host)
        }
        if hosts.isEmpty && text.trimmingSpaces.isEmpty {
            reader.report(.empty, at: path, "is empty — list brokers as host:port, comma-separated")
        }
        return hosts
    }

    /// `sasl_mechanism`, and the rule that it, `username` and `password` come together. Judged by what
    /// was written: a password whose variable is unset was still given.
    static func saslMechanism(_ fields: ConfigFields, reader: inout ConfigReader) -> SASLMechanism? {
        if (fields["username"] == nil) != (fields["password"] == nil) {
            reader.report(.missingField, at: fields.path(fields["username"] == nil ? "username" : "password"),
                          "username and password go together — give both or neither")
        }
        guard let text = reader.string("sasl_mechanism", in: fields) else {
            if fields["username"] != nil {
                reader.report(.missingField, at: fields.path("sasl_mechanism"),
                              "is required with username and password: plain, scram_sha_256 or scram_sha_512")
            }
            return nil
        }
        guard let mechanism = SASLMechanism(rawValue: text) else {
            reader.report(.invalidValue, at: fields.path("sasl_mechanism"), quoting: text, "— use plain, scram_sha_256 or scram_sha_512")
            return nil
        }
        if fields["username"] == nil {
            reader.report(.missingField, at: fields.path("sasl_mechanism"), "needs username and password")
        }
        return mechanism
    }
}

extension KafkaDestination.TLS {
    /// `tls: true|false`, or `tls: {ca_file, cert_file, key_file, verify}` (verify defaults to true there).
    /// Nil for `tls: false`, and when the value is refused.
    init?(reading node: ConfigNode, at path: String, reader: inout ConfigReader) {
        if case .scalar = node {
            guard reader.bool(node, at: path) == true else { return nil }
            self.init(verify: false)
            return
        }
        guard let fields = reader.fields(node, at: path, allowed: ["ca_file", "cert_file", "key_file", "verify"]) else { return nil }
        self.init(verify: reader.bool("verify", in: fields) ?? true)
        caFile = Self.pemFile("ca_file", in: fields, reader: &reader)
        certFile = Self.pemFile("cert_file", in: fields, reader: &reader)
        keyFile = Self.pemFile("key_file", in: fields, reader: &reader)
        if (certFile == nil) != (keyFile == nil) {
            reader.report(.missingField, at: fields.path(certFile == nil ? "cert_file" : "key_file"),
                          "cert_file and key_file go together — give both for a client certificate, or neither")
        }
    }

    static func pemFile(_ key: String, in fields: ConfigFields, reader: inout ConfigReader) -> String? {
        guard let value = reader.string(key, in: fields) else { return nil }
        if !FileManager.default.isReadableFile(atPath: value) {
            reader.report(.unreadableFile, at: fields.path(key), quoting: value, "— no readable file there; give the path of a PEM file")
        }
        return value
    }
}
