import Testing
@testable import SluiceCore

/// The exact sentences users read for the most common problems. The other config tests check codes
/// and paths; these pin the wording, so that a change to it is a decision, not an accident.
@Suite("Config messages")
struct ConfigMessageTests: ConfigFixtures {
    static let cases: [(destination: [(String, ConfigNode?)], functions: [ConfigNode], uses: [(String, ConfigNode)], line: String)] = [
        ([("compresion", s("gzip"))], [], [],
         "sinks[0].destination.compresion: unknown field — did you mean compression?"),
        ([("xyzzy", s("1"))], [], [],
         "sinks[0].destination.xyzzy: unknown field — remove it"),
        ([("topic", nil)], [], [],
         "sinks[0].destination.topic: is required: the Kafka topic to write to (or set a routing function that sets topic)"),
        ([("hosts", s("kafka:99999"))], [], [],
         #"sinks[0].destination.hosts: "kafka:99999" — port must be 1-65535"#),
        ([("hosts", seq(s("a:1")))], [], [],
         "sinks[0].destination.hosts: must be a single value"),
        ([("topic", s("${TOPIC_NAME}"))], [], [],
         "sinks[0].destination.topic: environment variable TOPIC_NAME is not set — export it, or write ${TOPIC_NAME:-default}"),
        ([("batch_size", s("0"))], [], [],
         #"sinks[0].destination.batch_size: "0" — must be a whole number from 1 to 10000"#),
        ([("compression", s("brotli"))], [], [],
         #"sinks[0].destination.compression: "brotli" — use none, gzip, snappy, lz4 or zstd"#),
        ([], [paidOnly], [("filter", s("paid-onyl"))],
         #"sinks[0].filter: "paid-onyl" is not a declared function — did you mean paid-only?"#),
        ([], [paidOnly], [("transform", s("paid-only"))],
         #"sinks[0].transform: "paid-only" is a filter function — this takes a transform or path function"#),
    ]

    @Test(arguments: cases.indices)
    func commonProblem(index: Int) {
        let (destination, functions, uses, line) = Self.cases[index]
        let root = Self.root(sinks: [Self.sink(destination: Self.destination(destination), extra: uses)],
                             extra: functions.isEmpty ? [] : [("functions", .sequence(functions))])
        #expect(Self.errors(root).map(\.description) == [line])
    }

    /// What `sluice check` prints for a file with three mistakes (as the integration test runs it).
    @Test func everyProblemOneLineEach() {
        let root = Self.root(database: map(["url": s("postgres://app@127.0.0.1:5432/app")]), sinks: [
            Self.sink(name: "orders", tables: nil, destination: Self.destination([
                ("hosts", s("kafka:99999")), ("topic", s("bad topic")), ("compresion", s("gzip")),
            ])),
        ])
        guard case .failure(let failure) = ConfigReader.read(root, environment: [:]) else {
            Issue.record("expected the config to be refused")
            return
        }
        #expect(failure.description == """
            sinks[0].destination.compresion: unknown field — did you mean compression?
            sinks[0].destination.hosts: "kafka:99999" — port must be 1-65535
            sinks[0].destination.topic: "bad topic" — a topic name uses only letters, digits, '.', '_' and '-'
            """)
    }

    @Test func codesNameThemselves() {
        #expect("\(ConfigError.Code.unknownField)" == "unknownField")
        #expect("\(ConfigError.Code.databaseSetup)" == "databaseSetup")
        #expect(ConfigError(.outOfRange, at: "a.b", quoting: "7", "— too big").description == #"a.b: "7" — too big"#)
        #expect(ConfigError(.invalidFunction, at: "", "functions[0].code:3: oops").description == "functions[0].code:3: oops")
    }
}
