// Values that parse themselves from the text of one field, and the readers for values that several
// sections share (table lists, annotations).

extension HostPort {
    /// `host:port`, or `[ipv6]:port`. The port is not range-checked here: each field says its own rule.
    init?(parsing text: String) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":"),
                  let port = Int(text[text.index(close, offsetBy: 2)...]) else { return nil }
            self.init(host: String(text[text.index(after: text.startIndex)..<close]), port: port)
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]) else { return nil }
        self.init(host: String(parts[0]), port: port)
    }
}

/// A duration as sluice.yml writes it: `15s`, `500ms`, `2m`, `1h`, or a plain number of seconds.
struct ConfigDuration: Equatable {
    var seconds: Double

    init?(_ text: String) {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value >= 0 else { return nil }
            seconds = value * factor
            return
        }
        guard let value = Double(text), value >= 0 else { return nil }
        seconds = value
    }
}

/// What is wrong with a Kafka topic name, by Kafka's own rule: 1-255 of `[a-zA-Z0-9._-]`, not `.` or `..`.
public enum TopicNameProblem: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    case tooLong(bytes: Int)
    case dots
    case illegalCharacter

    /// The problem with `topic`, or nil when Kafka accepts the name.
    public init?(topic: String) {
        if topic.isEmpty { self = .empty; return }
        if topic.utf8.count > 255 { self = .tooLong(bytes: topic.utf8.count); return }
        if topic == "." || topic == ".." { self = .dots; return }
        let legal = topic.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        if legal { return nil }
        self = .illegalCharacter
    }

    public var description: String {
        switch self {
        case .empty: "a topic name cannot be empty"
        case .tooLong(let bytes): "a topic name has at most 255 characters (this one has \(bytes))"
        case .dots: "a topic cannot be named . or .."
        case .illegalCharacter: "a topic name uses only letters, digits, '.', '_' and '-'"
        }
    }

    var code: ConfigError.Code {
        switch self {
        case .empty: .empty
        case .tooLong: .outOfRange
        case .dots, .illegalCharacter: .invalidValue
        }
    }
}

extension ConfigReader {
    /// Kafka's own rule: 1-255 of `[a-zA-Z0-9._-]`, not `.` or `..`. Nil when the name is legal.
    public static func topicProblem(_ topic: String) -> String? {
        TopicNameProblem(topic: topic)?.description
    }

    /// A list of `schema.table` names (`orders` means `public.orders`).
    mutating func tableNames(_ node: ConfigNode, at path: String) -> [TableName] {
        var tables: [TableName] = []
        for (index, item) in list(node, at: path).enumerated() {
            guard let text = string(item, at: "\(path)[\(index)]") else { continue }
            if let table = TableName(parsing: text) { tables.append(table) } else {
                report(.invalidValue, at: "\(path)[\(index)]", quoting: text, "— write schema.table, e.g. public.orders")
            }
        }
        return tables
    }

    /// `annotations:` — a mapping, written as a JSON object. YAML's plain scalars keep their YAML type
    /// (numbers, true/false, null); everything else is a string.
    mutating func annotations(_ node: ConfigNode, at path: String) -> String? {
        guard case .mapping = node else {
            if case .null = node { return "{}" }
            report(.wrongType, at: path, "must be a mapping, e.g. annotations: {team: billing}")
            return nil
        }
        var json = JSONWriter()
        node.writeJSON(to: &json)
        return String(decoding: json.bytes, as: UTF8.self)
    }
}

extension ConfigNode {
    func writeJSON(to json: inout JSONWriter) {
        switch self {
        case .null:
            json.null()
        case .scalar(let text):
            if text == "true" || text == "false" {
                json.bool(text == "true")
            } else if text.utf8.first.map({ $0 == UInt8(ascii: "-") || ($0 >= 0x30 && $0 <= 0x39) }) == true,
                      text.utf8.withContiguousStorageIfAvailable({ ValueConverter.isJSONNumber($0) }) == true {
                json.raw(text.utf8)
            } else {
                json.string(text)
            }
        case .sequence(let items):
            json.raw(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { json.raw(UInt8(ascii: ",")) }
                item.writeJSON(to: &json)
            }
            json.raw(UInt8(ascii: "]"))
        case .mapping(let pairs):
            json.raw(UInt8(ascii: "{"))
            for (index, (key, value)) in pairs.enumerated() {
                if index > 0 { json.raw(UInt8(ascii: ",")) }
                json.key(key)
                value.writeJSON(to: &json)
            }
            json.raw(UInt8(ascii: "}"))
        }
    }
}
