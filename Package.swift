// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        // MARK: - System libraries (C stays inside the one module that imports each)
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .systemLibrary(
            name: "CLua",
            pkgConfig: "lua5.4",
            providers: [.apt(["liblua5.4-dev"])]
        ),

        // MARK: - Sluice
        .target(name: "SluiceCore"),
        .target(
            name: "PostgresSource",
            dependencies: [
                "SluiceCore", "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KafkaSink",
            dependencies: [
                "SluiceCore", "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "Functions", dependencies: ["SluiceCore", "CLua"]),
        .target(
            name: "Ledger",
            dependencies: ["SluiceCore", "PostgresSource", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .target(
            name: "Pipeline",
            dependencies: [
                "SluiceCore", "PostgresSource", "KafkaSink", "Ledger", "Functions",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // What the console reads from requests (bodies, queries, forms), parsed without a server.
        .target(name: "ConsoleRequests", dependencies: ["Pipeline", "SluiceCore"]),
        .target(
            name: "Console",
            dependencies: [
                "Pipeline", "Ledger", "SluiceCore", "PostgresSource", "ConsoleRequests",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // sluice.yml (and a Sequin file) as YAML text → ConfigNode.
        .target(name: "ConfigYAML", dependencies: ["SluiceCore", .product(name: "Yams", package: "Yams")]),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceCore", "PostgresSource", "KafkaSink", "Ledger", "Functions", "Pipeline", "Console", "ConfigYAML",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // MARK: - Tests
        // librdkafka's mock cluster, for fault injection in tests (kept out of the sluice binary).
        .target(name: "KafkaMock", dependencies: ["CRdKafka", "KafkaSink"], path: "Tests/KafkaMock"),
        .testTarget(name: "SluiceCoreTests", dependencies: ["SluiceCore"]),
        .testTarget(name: "LedgerTests", dependencies: ["Ledger", "SluiceCore"]),
        .testTarget(name: "PostgresSourceTests", dependencies: ["PostgresSource", "SluiceCore"]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "SluiceCore", "PostgresSource", "KafkaSink", "Ledger"]),
        .testTarget(name: "KafkaSinkTests", dependencies: ["KafkaSink", "KafkaMock", "SluiceCore"]),
        .testTarget(name: "FunctionsTests", dependencies: ["Functions", "SluiceCore"]),
        .testTarget(name: "ConsoleTests", dependencies: ["Console", "Pipeline", "SluiceCore"]),
        .testTarget(name: "ConfigYAMLTests", dependencies: ["ConfigYAML", "SluiceCore"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["SluiceCore", "PostgresSource", "KafkaSink", "KafkaMock", "Ledger",
                           .product(name: "Yams", package: "Yams")],
            exclude: ["Fixtures"]
        ),

        // MARK: - Fuzz targets
        // scripts/fuzz builds each one with libFuzzer (-sanitize=fuzzer,address -DSLUICE_LIBFUZZER) into
        // .build-fuzz; a plain build makes them replay tools: `swift run FuzzValues Fuzz/Corpus/values`.
        .target(name: "FuzzSupport", dependencies: ["SluiceCore"], path: "Fuzz/Support"),
        .executableTarget(name: "FuzzPgOutput", dependencies: ["FuzzSupport", "PostgresSource", "SluiceCore"],
                          path: "Fuzz/PgOutput"),
        .executableTarget(name: "FuzzValues", dependencies: ["FuzzSupport", "SluiceCore"], path: "Fuzz/Values"),
        .executableTarget(name: "FuzzAnnotations",
                          dependencies: ["FuzzSupport", "PostgresSource", "SluiceCore", .product(name: "Logging", package: "swift-log")],
                          path: "Fuzz/Annotations"),
        .executableTarget(name: "FuzzFunctionMessage", dependencies: ["FuzzSupport", "Functions", "SluiceCore"],
                          path: "Fuzz/FunctionMessage"),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzSupport", "ConfigYAML", "SluiceCore"], path: "Fuzz/Config"),
        .executableTarget(name: "FuzzConsoleRequest",
                          dependencies: ["FuzzSupport", "ConsoleRequests", "Pipeline", "Ledger", "SluiceCore"],
                          path: "Fuzz/ConsoleRequest"),
    ]
)
