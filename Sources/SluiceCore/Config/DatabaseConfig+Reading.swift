extension DatabaseConfig {
    static let connectionKeys = ["url", "host", "port", "dbname", "user", "password"]
    static let fieldNames = connectionKeys + ["slot", "publication", "heartbeat_interval", "name", "annotations"]

    /// `database:` — the connection (a URL, or libpq's separate fields), the slot, the publication
    /// and the heartbeat. Nil only when it is not a mapping.
    init?(reading node: ConfigNode, at path: String, reader: inout ConfigReader) {
        guard let fields = reader.fields(node, at: path, allowed: Self.fieldNames) else { return nil }
        let parameters = Self.connectionParameters(fields, reader: &reader)

        var slotName = "sluice", createSlot = true
        if let slot = fields["slot"], let slotFields = reader.fields(slot, at: fields.path("slot"), allowed: ["name", "create_if_not_exists"]) {
            if let name = reader.string("name", in: slotFields) {
                if Self.isValidSlotName(name) { slotName = name } else {
                    reader.report(name.isEmpty ? .empty : .invalidValue, at: slotFields.path("name"), quoting: name,
                                  "— slot names use only lower-case letters, digits and _ (at most 63)")
                }
            }
            createSlot = reader.bool("create_if_not_exists", in: slotFields) ?? true
        }
        var publicationName = "sluice", createPublication = true
        var tables: [TableName] = []
        var viaRoot = true
        if let publication = fields["publication"],
           let pubFields = reader.fields(publication, at: fields.path("publication"),
                                         allowed: ["name", "create_if_not_exists", "tables", "publish_via_partition_root"]) {
            if let name = reader.string("name", in: pubFields) {
                if !name.isEmpty && name.utf8.count <= 63 { publicationName = name } else {
                    reader.report(name.isEmpty ? .empty : .outOfRange, at: pubFields.path("name"), quoting: name,
                                  "— a publication name has 1-63 characters")
                }
            }
            createPublication = reader.bool("create_if_not_exists", in: pubFields) ?? true
            tables = pubFields["tables"].map { reader.tableNames($0, at: pubFields.path("tables")) } ?? []
            viaRoot = reader.bool("publish_via_partition_root", in: pubFields) ?? true
        }
        var heartbeat = 15.0
        if let text = reader.string("heartbeat_interval", in: fields) {
            if let duration = ConfigDuration(text) { heartbeat = duration.seconds } else {
                reader.report(.invalidValue, at: fields.path("heartbeat_interval"), quoting: text,
                              "— write a duration such as 15s, 500ms or 2m (0 turns heartbeats off)")
            }
        }
        self.init(connectionParameters: parameters, slotName: slotName, createSlot: createSlot,
                  publicationName: publicationName, createPublication: createPublication,
                  publicationTables: tables, publishViaPartitionRoot: viaRoot, heartbeatInterval: heartbeat)
        name = reader.string("name", in: fields)
        if name?.isEmpty == true {
            reader.report(.empty, at: fields.path("name"), "is empty — give the name consumers see in metadata.database.name, or leave it out")
        }
        annotations = fields["annotations"].flatMap { reader.annotations($0, at: fields.path("annotations")) } ?? "{}"
    }

    /// libpq keywords in order; a URL comes first as `dbname` (libpq expands it).
    static func connectionParameters(_ fields: ConfigFields, reader: inout ConfigReader) -> [(String, String)] {
        var parameters: [(String, String)] = []
        if let url = reader.string("url", in: fields, secret: true) {
            if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
                parameters.append(("dbname", url))
            } else {
                reader.report(.invalidValue, at: fields.path("url"), "must start with postgres:// or postgresql://, e.g. postgres://user@127.0.0.1:5432/app")
            }
        }
        for key in connectionKeys.dropFirst() {
            guard let value = reader.string(key, in: fields, secret: key == "password") else { continue }
            if key == "port", Int(value).map({ (1...65535).contains($0) }) != true {
                reader.report(Int(value) == nil ? .invalidValue : .outOfRange, at: fields.path("port"), quoting: value, "— port must be 1-65535")
                continue
            }
            parameters.append((key, value))
        }
        if fields["url"] == nil && fields["host"] == nil && fields["dbname"] == nil {
            reader.report(.missingField, at: fields.path, "give url (postgres://user:password@host:port/dbname) or host and dbname")
        }
        return parameters
    }

    /// PostgreSQL's rule for slot names: 1-63 of lower-case letters, digits and `_`.
    static func isValidSlotName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 63 && name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "_")
        }
    }
}
