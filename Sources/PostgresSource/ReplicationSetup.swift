import SluiceCore

/// Makes sure the publication and the logical slot exist as the configuration describes,
/// creating them when allowed, and explains what is wrong when they cannot be used.
public struct ReplicationSetup {
    let connection: PostgresConnection
    let config: DatabaseConfig

    public init(connection: PostgresConnection, config: DatabaseConfig) {
        self.connection = connection
        self.config = config
    }

    /// What `ensure` did, for the log.
    public struct Outcome: Sendable {
        public var createdPublication = false
        public var addedTables: [TableName] = []
        public var createdSlot = false
        public var databaseName = ""
        /// The host connected to, for `metadata.database.hostname`.
        public var hostname = ""
    }

    /// Problems that would stop replication, each naming the setting to change; empty when ready.
    public func problems() throws(PostgresError) -> [ConfigError] {
        var problems: [ConfigError] = []
        let walLevel = try connection.query("SHOW wal_level").rows.first?[0] ?? ""
        if walLevel != "logical" {
            problems.append(ConfigError(.databaseSetup, at: "database", "the server runs with wal_level=\(walLevel) — set wal_level = logical in postgresql.conf and restart it"))
        }
        for table in config.publicationTables {
            let found = try connection.query("SELECT to_regclass($1) IS NOT NULL AS found", [qualified(table)])
            if found.value("found") != "t" {
                problems.append(ConfigError(.databaseSetup, at: "database.publication.tables", "table \(table) does not exist in this database"))
            }
        }
        let publication = try connection.query("SELECT puballtables FROM pg_publication WHERE pubname = $1", [config.publicationName])
        if publication.rows.isEmpty && !config.createPublication {
            problems.append(ConfigError(.databaseSetup, at: "database.publication.name", "publication \"\(config.publicationName)\" does not exist — create it or set create_if_not_exists: true"))
        }
        if let slot = try slotRow() {
            if slot.plugin != "pgoutput" {
                problems.append(ConfigError(.databaseSetup, at: "database.slot.name", "slot \"\(config.slotName)\" uses plugin \(slot.plugin) — Sluice needs a pgoutput slot; pick another name"))
            }
            if slot.database != currentDatabase() {
                problems.append(ConfigError(.databaseSetup, at: "database.slot.name", "slot \"\(config.slotName)\" belongs to database \(slot.database) — pick another name"))
            }
        } else if !config.createSlot {
            problems.append(ConfigError(.databaseSetup, at: "database.slot.name", "replication slot \"\(config.slotName)\" does not exist — create it or set create_if_not_exists: true"))
        }
        return problems
    }

    /// Creates what is missing (when allowed) and returns what it did.
    public func ensure() throws(PostgresError) -> Outcome {
        var outcome = Outcome()
        outcome.databaseName = currentDatabase()
        outcome.hostname = connection.host
        let problems = try problems()
        if !problems.isEmpty { throw PostgresError(.query, problems.map(\.description).joined(separator: "\n")) }

        let publicationName = PostgresConnection.quoteIdentifier(config.publicationName)
        let publication = try connection.query("SELECT puballtables FROM pg_publication WHERE pubname = $1", [config.publicationName])
        if publication.rows.isEmpty {
            let target = config.publicationTables.isEmpty ? "FOR ALL TABLES"
                : "FOR TABLE " + config.publicationTables.map(qualified).joined(separator: ", ")
            let options = config.publishViaPartitionRoot ? " WITH (publish_via_partition_root = true)" : ""
            try connection.query("CREATE PUBLICATION \(publicationName) \(target)\(options)")
            outcome.createdPublication = true
        } else if publication.rows[0][0] != "t", !config.publicationTables.isEmpty {
            let published = try connection.query(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", [config.publicationName])
            let present = Set(published.rows.map { TableName(schema: $0[0] ?? "", name: $0[1] ?? "") })
            let missing = config.publicationTables.filter { !present.contains($0) }
            if !missing.isEmpty {
                guard config.createPublication else {
                    throw PostgresError(.query, "database.publication.tables: publication \"\(config.publicationName)\" does not include \(missing.map(\.description).joined(separator: ", ")) — add them with ALTER PUBLICATION or set create_if_not_exists: true")
                }
                try connection.query("ALTER PUBLICATION \(publicationName) ADD TABLE " + missing.map(qualified).joined(separator: ", "))
                outcome.addedTables = missing
            }
        }
        if try slotRow() == nil {
            try connection.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [config.slotName])
            outcome.createdSlot = true
        }
        return outcome
    }

    /// The slot's confirmed flush LSN as the server reports it.
    public func confirmedFlushLSN() throws(PostgresError) -> LSN? {
        try connection.query("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", [config.slotName])
            .rows.first?[0].flatMap { LSN($0) }
    }

    /// Writes a non-transactional logical message so that a quiet database still moves the slot.
    public func emitHeartbeat() throws(PostgresError) {
        try connection.query("SELECT pg_logical_emit_message(false, 'sluice_heartbeat', '')")
    }

    func currentDatabase() -> String {
        (try? connection.query("SELECT current_database()"))?.rows.first?[0] ?? ""
    }

    private func slotRow() throws(PostgresError) -> (plugin: String, database: String)? {
        let result = try connection.query("SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1", [config.slotName])
        guard let row = result.rows.first else { return nil }
        return (row[0] ?? "", row[1] ?? "")
    }

    private func qualified(_ table: TableName) -> String {
        PostgresConnection.quoteIdentifier(table.schema) + "." + PostgresConnection.quoteIdentifier(table.name)
    }
}
