/// The whole `sluice.yml`, validated.
public struct SluiceConfig: Sendable {
    public var database: DatabaseConfig
    /// `state.path`: the SQLite state file (`state.store: sqlite`); spill files go next to it in every mode.
    public var statePath: String
    /// `state.store`: where parked messages, delivered and cancelled ones and backfills are kept.
    public var stateStore: StateStoreConfig = .sqlite
    /// `ha`: leader election among instances of one slot (with `state.store: postgres`).
    public var ha = HAConfig()
    public var console: ConsoleConfig?
    /// Declared once at the top level; sinks refer to them by name.
    public var functions: [FunctionConfig] = []
    public var sinks: [SinkConfig]
    /// `log_format`: text (default) or json lines.
    public var logFormat: LogFormat = .text
}

public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

/// How column values are written: Sluice's exact JSON (default), or Sequin's forms for the types where
/// they differ (numeric as a string with its digits, composites and nested domains as their text form).
public enum ValueFormat: String, Sendable, CaseIterable {
    case sluice, sequin
}

/// A sink's `source`: which tables of the publication it takes. Each list that is given must agree
/// (as in Sequin): a table is taken when its schema is not excluded, is included if includes are
/// listed, and the same for the table itself.
public struct SinkSource: Sendable, Equatable {
    public var includeSchemas: Set<String>?
    public var excludeSchemas: Set<String>?
    public var includeTables: Set<TableName>?
    public var excludeTables: Set<TableName>?

    public init(includeSchemas: Set<String>? = nil, excludeSchemas: Set<String>? = nil,
                includeTables: Set<TableName>? = nil, excludeTables: Set<TableName>? = nil) {
        self.includeSchemas = includeSchemas
        self.excludeSchemas = excludeSchemas
        self.includeTables = includeTables
        self.excludeTables = excludeTables
    }

    public func contains(_ table: TableName) -> Bool {
        if let excludeSchemas, excludeSchemas.contains(table.schema) { return false }
        if let includeSchemas, !includeSchemas.contains(table.schema) { return false }
        if let excludeTables, excludeTables.contains(table) { return false }
        if let includeTables, !includeTables.contains(table) { return false }
        return true
    }
}

/// A user function (`functions[i]`): Lua code for filter, transform and routing, or a path.
public struct FunctionConfig: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case filter, transform, path, routing
        /// A SQL query run on the source database for a batch of messages' primary keys.
        case enrichment
        /// The global a chunk of this kind must define.
        public var entryPoint: String? {
            switch self {
            case .filter: "filter"
            case .transform: "transform"
            case .routing: "route"
            case .path, .enrichment: nil
            }
        }
        public var isLua: Bool { entryPoint != nil }
    }

    public var name: String
    public var kind: Kind
    /// Lua source (empty for path functions); SQL for enrichment functions.
    public var code: String
    /// Where the code came from, as error messages name it: the file as written, or `functions[i].code`.
    public var origin: String
    /// For path functions: `record.address.city`.
    public var path: String
    public var maxInstructions: Int
    public var maxMemoryMB: Int
    /// Enrichment: the query's statement timeout, in seconds.
    public var statementTimeout: Double = 5

    public init(name: String, kind: Kind, code: String = "", origin: String = "", path: String = "",
                maxInstructions: Int = 1_000_000, maxMemoryMB: Int = 16) {
        self.name = name
        self.kind = kind
        self.code = code
        self.origin = origin
        self.path = path
        self.maxInstructions = maxInstructions
        self.maxMemoryMB = maxMemoryMB
    }
}

public struct TableName: Hashable, Sendable, CustomStringConvertible {
    public var schema: String
    public var name: String

    public init(schema: String, name: String) {
        self.schema = schema
        self.name = name
    }

    /// `public.orders`, or `orders` meaning `public.orders`.
    public init?(parsing text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        switch parts.count {
        case 1 where !parts[0].isEmpty: self.init(schema: "public", name: parts[0])
        case 2 where !parts[0].isEmpty && !parts[1].isEmpty: self.init(schema: parts[0], name: parts[1])
        default: return nil
        }
    }

    public var description: String { "\(schema).\(name)" }
}

public struct DatabaseConfig: Sendable {
    /// libpq connection keywords in order; a URL comes first as `dbname` (libpq expands it).
    public var connectionParameters: [(String, String)]
    public var slotName: String
    public var createSlot: Bool
    public var publicationName: String
    public var createPublication: Bool
    /// Empty: every table (`FOR ALL TABLES`).
    public var publicationTables: [TableName]
    /// Changes of a partition are published as changes of its partitioned (root) table.
    public var publishViaPartitionRoot: Bool
    /// Seconds between heartbeat messages; 0 turns them off.
    public var heartbeatInterval: Double
    /// `metadata.database.name`; nil: the database's own name.
    public var name: String?
    /// `metadata.database.annotations`, as JSON text (an object).
    public var annotations: String = "{}"

    public init(connectionParameters: [(String, String)], slotName: String, createSlot: Bool = true,
                publicationName: String, createPublication: Bool = true, publicationTables: [TableName] = [],
                publishViaPartitionRoot: Bool = true, heartbeatInterval: Double = 15) {
        self.connectionParameters = connectionParameters
        self.slotName = slotName
        self.createSlot = createSlot
        self.publicationName = publicationName
        self.createPublication = createPublication
        self.publicationTables = publicationTables
        self.publishViaPartitionRoot = publishViaPartitionRoot
        self.heartbeatInterval = heartbeatInterval
    }
}

public struct ConsoleConfig: Sendable {
    public var listen: String
    public var token: String
}

/// A sink's `delivery`.
public enum DeliveryMode: String, Sendable, CaseIterable {
    /// Idempotent producer; after a crash a consumer may see a change again (same `idempotency_key`).
    case atLeastOnce = "at_least_once"
    /// Transactional producer: whole PostgreSQL transactions per Kafka transaction, with the sink's position
    /// committed alongside in `offsets_topic`; a `read_committed` consumer sees each change once.
    case exactlyOnce = "exactly_once"
}

public struct SinkConfig: Sendable {
    public var name: String
    /// Empty: every published table (within `source`).
    public var tables: [TableName]
    /// Sequin's `source`: include/exclude schemas and tables.
    public var source = SinkSource()
    /// `status: disabled`: the sink sends nothing and holds no slot position back.
    public var enabled = true
    /// `metadata.consumer.annotations`, as JSON text (an object).
    public var annotations = "{}"
    public var valueFormat = ValueFormat.sluice
    /// Runs first: adds `metadata.enrichment` from a query on the source database.
    public var enrichment: FunctionConfig?
    public var actions: Set<Action>
    public var messageGrouping: Bool
    /// Per table, the columns whose values form the message group instead of the primary key.
    public var groupColumns: [TableName: [String]]
    public var maxMemoryMB: Int
    /// Seconds a message may wait for Kafka's acknowledgement before its group is parked.
    public var parkAfter: Double
    public var destination: KafkaDestination
    /// Drops changes for which it returns false.
    public var filter: FunctionConfig?
    /// Sets `topic` and/or `message_key`.
    public var routing: FunctionConfig?
    /// A transform or path function: its result is the message value.
    public var transform: FunctionConfig?
    /// Backfills to run once, when the sink is first seen: nil for none; empty for every table of the sink.
    public var initialBackfill: [BackfillSpec]?
    /// Backfill pages adapt their size to keep each query under this.
    public var backfillMaxQueryMS: Int = 5_000
    public var delivery = DeliveryMode.atLeastOnce

    public init(name: String, tables: [TableName] = [], actions: Set<Action> = Set(Action.allCases),
                messageGrouping: Bool = true, groupColumns: [TableName: [String]] = [:], maxMemoryMB: Int = 128,
                parkAfter: Double = 120, destination: KafkaDestination, filter: FunctionConfig? = nil,
                routing: FunctionConfig? = nil, transform: FunctionConfig? = nil) {
        self.name = name
        self.tables = tables
        self.actions = actions
        self.messageGrouping = messageGrouping
        self.groupColumns = groupColumns
        self.maxMemoryMB = maxMemoryMB
        self.parkAfter = parkAfter
        self.destination = destination
        self.filter = filter
        self.routing = routing
        self.transform = transform
    }

    public var hasFunctions: Bool { filter != nil || routing != nil || transform != nil }

    /// `destination.transactional_id`, or its default `sluice-<slot>-<sink name>`.
    public func transactionalID(slot: String) -> String { destination.transactionalID ?? "sluice-\(slot)-\(name)" }

    public func accepts(table: TableName, action: Action) -> Bool {
        actions.contains(action) && (tables.isEmpty || tables.contains(table)) && source.contains(table)
    }
}

public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with IPv6 hosts in brackets as librdkafka expects.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct KafkaDestination: Sendable {
    public enum SASLMechanism: String, Sendable, CaseIterable {
        case plain, scram_sha_256, scram_sha_512
        /// The name librdkafka's `sasl.mechanisms` takes.
        public var librdkafkaName: String {
            switch self {
            case .plain: "PLAIN"
            case .scram_sha_256: "SCRAM-SHA-256"
            case .scram_sha_512: "SCRAM-SHA-512"
            }
        }
    }

    public enum Compression: String, Sendable, CaseIterable {
        case none, gzip, snappy, lz4, zstd
    }

    /// TLS to the brokers. `tls: true` encrypts without verifying certificates (as Sequin does);
    /// the object form can verify against a CA and present a client certificate.
    public struct TLS: Sendable, Equatable {
        public var verify: Bool
        public var caFile: String?
        public var certFile: String?
        public var keyFile: String?

        public init(verify: Bool = false, caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil) {
            self.verify = verify
            self.caFile = caFile
            self.certFile = certFile
            self.keyFile = keyFile
        }
    }

    public var hosts: [HostPort]
    public var topic: String
    public var tls: TLS?
    public var username: String?
    public var password: String?
    public var saslMechanism: SASLMechanism?
    public var compression: Compression
    public var batchSize: Int
    public var maxAckPending: Int
    /// The largest message the brokers accept; larger messages are cancelled.
    public var maxMessageBytes: Int
    /// `delivery: exactly_once`: the producer's `transactional.id`; nil for `sluice-<slot>-<sink name>`.
    public var transactionalID: String?
    /// `transaction_timeout`, in seconds (librdkafka's `transaction.timeout.ms`).
    public var transactionTimeout: Double = 60
    /// Where an exactly-once sink commits its position, in the same Kafka transaction as its messages.
    public var offsetsTopic = "sluice.offsets"

    public init(hosts: [HostPort], topic: String, tls: TLS? = nil, username: String? = nil, password: String? = nil,
                saslMechanism: SASLMechanism? = nil, compression: Compression = .none, batchSize: Int = 200,
                maxAckPending: Int = 10_000, maxMessageBytes: Int = 1_000_000) {
        self.hosts = hosts
        self.topic = topic
        self.tls = tls
        self.username = username
        self.password = password
        self.saslMechanism = saslMechanism
        self.compression = compression
        self.batchSize = batchSize
        self.maxAckPending = maxAckPending
        self.maxMessageBytes = maxMessageBytes
    }
}

/// One table to backfill: all of it in primary-key order, or (partial) the rows with
/// `sort_column >= start_position`, in that column's order.
public struct BackfillSpec: Sendable, Equatable {
    public var table: TableName
    public var sortColumn: String?
    public var startPosition: String?

    public init(table: TableName, sortColumn: String? = nil, startPosition: String? = nil) {
        self.table = table
        self.sortColumn = sortColumn
        self.startPosition = startPosition
    }
}
