/// `state.store`: SQLite on the local disk (default), or tables in PostgreSQL that every instance of
/// the slot shares — what high availability needs.
public enum StateStoreConfig: Sendable {
    case sqlite
    /// `connectionParameters`: libpq keywords (`state.url`, else the `database` connection); `schema`: `state.schema`.
    case postgres(connectionParameters: [(String, String)], schema: String)

    public var isPostgres: Bool { if case .postgres = self { true } else { false } }

    /// A schema name sluice can use (`state.schema`, checked again by the store): what PostgreSQL accepts
    /// unquoted — a letter or `_`, then lower-case letters, digits and `_`, at most 63 bytes — and not `pg_…`.
    public static func isValidSchemaName(_ name: String) -> Bool {
        let letter = { (byte: UInt8) in byte == UInt8(ascii: "_") || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) }
        guard let first = name.utf8.first, letter(first), name.utf8.count <= 63, !name.hasPrefix("pg_") else { return false }
        return name.utf8.allSatisfy { letter($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    init(reading fields: ConfigFields, database: DatabaseConfig?, reader: inout ConfigReader) {
        let kind = reader.string("store", in: fields) ?? "sqlite"
        let url = reader.string("url", in: fields, secret: true)
        let schema = reader.string("schema", in: fields)
        switch kind {
        case "postgres":
            var parameters = database?.connectionParameters ?? []
            if let url {
                if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
                    parameters = [("dbname", url)]
                } else {
                    reader.report(.invalidValue, at: fields.path("url"),
                                  "must start with postgres:// or postgresql://, e.g. postgres://user@127.0.0.1:5432/app — or leave it out to use the database connection")
                }
            }
            if let schema, !Self.isValidSchemaName(schema) {
                reader.report(.invalidValue, at: fields.path("schema"), quoting: schema,
                              "— use lower-case letters, digits and _ (starting with a letter or _, not pg_), at most 63")
            }
            self = .postgres(connectionParameters: parameters, schema: schema ?? "sluice")
        case "sqlite":
            for key in ["url", "schema"] where fields[key] != nil {
                reader.report(.conflict, at: fields.path(key), "is for state.store: postgres — set store: postgres, or remove \(key)")
            }
            self = .sqlite
        default:
            reader.report(.invalidValue, at: fields.path("store"), quoting: kind, "— use sqlite (a local file, the default) or postgres")
            self = .sqlite
        }
    }
}

/// `ha`: how instances of one slot share it. Only one, the leader, streams; the others wait to take over.
public struct HAConfig: Sendable, Equatable {
    /// `ha.lease`: how long a silent leader keeps the slot before a standby takes it (seconds).
    public var lease: Double = 10
    /// `ha.instance`: this instance's name in the lease, the console and metrics; default host:pid.
    public var instance: String?

    public init(lease: Double = 10, instance: String? = nil) {
        self.lease = lease
        self.instance = instance
    }

    init(reading root: ConfigFields, store: StateStoreConfig, reader: inout ConfigReader) {
        guard let node = root["ha"], let fields = reader.fields(node, at: "ha", allowed: ["lease", "instance"]) else { return }
        if !store.isPostgres {
            reader.report(.conflict, at: "ha", "needs the shared state: set state.store: postgres (every instance of the slot uses it)")
        }
        if let text = reader.string("lease", in: fields) {
            let duration = ConfigDuration(text)
            if let duration, (3...600).contains(duration.seconds) { lease = duration.seconds } else {
                reader.report(duration == nil ? .invalidValue : .outOfRange, at: fields.path("lease"), quoting: text,
                              "— write a duration from 3s to 10m, such as 10s (the leader renews every third of it)")
            }
        }
        if let text = reader.string("instance", in: fields) {
            if text.isEmpty || text.utf8.count > 48 || text.contains(where: { $0.isWhitespace || $0.isNewline }) {
                reader.report(.invalidValue, at: fields.path("instance"), quoting: text,
                              "— 1 to 48 characters without spaces, such as sluice-a; leave it out for host:pid")
            } else {
                instance = text
            }
        }
    }
}
