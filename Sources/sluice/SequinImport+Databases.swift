import SluiceCore

/// `databases:` → Sluice's `database:` section, one per output file.
extension SequinImport {
    struct Database {
        var name: String
        /// `databases[0] ("app")`, as notes name it.
        var path: String
        var pairs: [(String, YAMLValue)]
    }

    mutating func readDatabases(_ node: ConfigNode?) throws(Failure) -> [Database] {
        guard let node else {
            throw Failure(path: "databases", message: "is missing — the import needs the database the Kafka sinks read from")
        }
        guard let items = node.items, !items.isEmpty else {
            throw Failure(path: "databases", message: "must be a list with at least one database")
        }
        var databases: [Database] = []
        for (index, item) in items.enumerated() {
            let database = try readDatabase(item, at: "databases[\(index)]")
            if databases.contains(where: { $0.name == database.name }) {
                throw Failure(path: "databases[\(index)].name", message: "\(Self.shown(database.name)) is used by another database — names must be unique")
            }
            databases.append(database)
        }
        return databases
    }

    /// Sequin's connection fields and defaults (user and password `postgres`, port 5432), its slot and
    /// publication (never created unless it says so), name and annotations.
    private mutating func readDatabase(_ node: ConfigNode, at path: String) throws(Failure) -> Database {
        guard node.pairs != nil else { throw Failure(path: path, message: "must be a mapping with name, hostname, database, slot and publication") }
        guard let name = node["name"]?.text, !name.isEmpty else {
            throw Failure(path: "\(path).name", message: "is required: Sequin's sinks name their database by it")
        }
        let label = Self.label(path, kind: nil, name: name)
        var pairs: [(String, YAMLValue)] = [("name", .string(name))]

        let connectionKeys = ["hostname", "port", "database", "username", "password"]
        let ssl = node["ssl"]?.boolean
        if let url = node["url"]?.text {
            if let extra = connectionKeys.first(where: { node[$0] != nil }) {
                throw Failure(path: "\(path).\(extra)", message: "give url or the separate connection fields, not both (Sequin refuses both too)")
            }
            // Sequin allows no query in its url, so sslmode can be appended.
            pairs.append(("url", .string(ssl == .bool(true) ? url + "?sslmode=require" : url)))
            if Self.hasNoUserInfo(url) {
                pairs += [("user", .string("postgres")), ("password", .string("postgres"))]
            }
        } else {
            guard let host = node["hostname"]?.text else {
                throw Failure(path: "\(path).hostname", message: "is required (or url)")
            }
            guard let dbname = node["database"]?.text else {
                throw Failure(path: "\(path).database", message: "is required: the name of the PostgreSQL database (or url)")
            }
            pairs.append(("host", .string(host)))
            pairs.append(("port", node["port"]?.integer ?? .int(5432)))
            pairs.append(("dbname", .string(dbname)))
            pairs.append(("user", .string(node["username"]?.text ?? "postgres")))
            pairs.append(("password", .string(node["password"]?.text ?? "postgres")))
            if let password = node["password"]?.text { noteIfMasked(password, at: "\(path).password") }
            if ssl == .bool(true) {
                note("\(path).ssl", "skipped — Sluice's database section has no ssl field: set PGSSLMODE=require where sluice runs, or give a url ending in ?sslmode=require")
            }
        }
        if let ssl, ssl != .bool(true), ssl != .bool(false) {
            note("\(path).ssl", "skipped — its value is not true or false; give sslmode in a url, or PGSSLMODE where sluice runs")
        }
        if let annotations = node["annotations"] { pairs.append(("annotations", annotations.verbatim)) }

        pairs.append(("slot", .map(try replicationObject("slot", oldKey: "slot_name", node: node, at: path))))
        pairs.append(("publication", .map(try replicationObject("publication", oldKey: "publication_name", node: node, at: path))))

        for (key, value) in node.pairs ?? [] where Self.isWorthANote(key, value) {
            if let reason = Self.databaseReasons[key] {
                if Self.isDefault(key, value) { continue }
                note("\(path).\(key)", "skipped — " + reason)
            } else if !Self.databaseKeys.contains(key) {
                note("\(path).\(key)", "skipped — not a Sequin database setting")
            }
        }
        return Database(name: name, path: label, pairs: pairs)
    }

    /// `slot: {name, create_if_not_exists}` or the older `slot_name:`; Sequin creates neither unless told to.
    private mutating func replicationObject(_ key: String, oldKey: String, node: ConfigNode,
                                            at path: String) throws(Failure) -> [(String, YAMLValue)] {
        let block = node[key]
        if block != nil && node[oldKey] != nil {
            throw Failure(path: "\(path).\(oldKey)", message: "give \(key).name or the older \(oldKey), not both (Sequin refuses both too)")
        }
        guard let name = block?["name"]?.text ?? node[oldKey]?.text else {
            throw Failure(path: "\(path).\(key).name", message: "is required (Sequin needs it too)")
        }
        let create = block?["create_if_not_exists"]?.boolean ?? .bool(false)
        for (field, value) in block?.pairs ?? [] where !["name", "create_if_not_exists"].contains(field) && Self.isWorthANote(field, value) {
            switch field {
            case "init_sql":
                note("\(path).\(key).init_sql", "skipped — Sluice creates a missing publication FOR ALL TABLES (or FOR TABLE over publication.tables) with publish_via_partition_root; run this SQL yourself before the first start if you need it")
            case "schemas":
                note("\(path).\(key).schemas", "skipped — Sequin ignores it too")
            default:
                note("\(path).\(key).\(field)", "skipped — not a Sequin \(key) setting")
            }
        }
        return [("name", .string(name)), ("create_if_not_exists", create)]
    }

    static let databaseKeys: Set<String> = [
        "name", "url", "hostname", "port", "database", "username", "password", "ssl", "annotations",
        "slot", "publication", "slot_name", "publication_name",
    ]

    static let databaseReasons: [String: String] = [
        "ipv6": "not needed: libpq connects over IPv6 whenever the host name resolves to an IPv6 address",
        "use_local_tunnel": "Sluice connects to the database directly (there is no Sequin CLI tunnel)",
        "pool_size": "Sluice has no connection pool: it opens one replication connection and one for queries",
        "queue_interval": "Sluice has no connection pool: it opens one replication connection and one for queries",
        "queue_target": "Sluice has no connection pool: it opens one replication connection and one for queries",
        "await_database": "Sluice has no start-up wait for the database: start it once the database accepts connections",
        "primary": "Sluice has no separate primary connection: it reads the slot on database and writes its heartbeats there",
        "tables": "Sequin ignores it too",
    ]

    /// Settings at the value that means "off" need no note: Sluice behaves the same.
    static func isDefault(_ key: String, _ value: ConfigNode) -> Bool {
        ["ipv6", "use_local_tunnel"].contains(key) && value.boolean == .bool(false)
    }

    /// `postgres://host:5432/db` without `user:password@`: Sequin then uses its defaults, postgres/postgres.
    static func hasNoUserInfo(_ url: String) -> Bool {
        guard !url.contains("${"), let scheme = url.range(of: "://") else { return false }
        let authority = url[scheme.upperBound...].prefix { $0 != "/" }
        return !authority.contains("@")
    }
}
