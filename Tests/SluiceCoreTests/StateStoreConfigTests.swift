import Foundation
import SluiceCore
import Testing

/// `state.store`, `state.url`, `state.schema` and `ha`: defaults, the database connection as the default
/// place, refusals by code and field path.
@Suite struct StateStoreConfigTests {
    typealias R = KafkaDestinationRulesTests
    static func s(_ text: String) -> ConfigNode { .scalar(text) }

    static func root(state: [(String, ConfigNode)]?, ha: [(String, ConfigNode)]? = nil) -> ConfigNode {
        guard case .mapping(var fields) = R.root(destination: []) else { return .mapping([]) }
        if let state { fields.append(("state", .mapping(state))) }
        if let ha { fields.append(("ha", .mapping(ha))) }
        return .mapping(fields)
    }

    @Test func sqliteIsTheDefaultAndHasNoElection() throws {
        let config = try R.read(Self.root(state: nil)).get()
        guard case .sqlite = config.stateStore else { Issue.record("\(config.stateStore)"); return }
        #expect(config.ha == HAConfig(lease: 10, instance: nil))
    }

    @Test func postgresDefaultsToTheDatabaseConnectionAndSchemaSluice() throws {
        let config = try R.read(Self.root(state: [("store", Self.s("postgres"))])).get()
        guard case .postgres(let parameters, let schema) = config.stateStore else { Issue.record("\(config.stateStore)"); return }
        #expect(parameters.map(\.1) == ["postgres://app@127.0.0.1:5432/app"] && schema == "sluice")
        #expect(config.ha.lease == 10)
    }

    @Test func urlSchemaLeaseAndInstanceAreRead() throws {
        let config = try R.read(Self.root(state: [("store", Self.s("postgres")), ("url", Self.s("postgres://state@10.0.0.5/meta")),
                                                  ("schema", Self.s("sluice_ha"))],
                                          ha: [("lease", Self.s("30s")), ("instance", Self.s("sluice-a"))])).get()
        guard case .postgres(let parameters, let schema) = config.stateStore else { Issue.record("\(config.stateStore)"); return }
        #expect(parameters.map(\.1) == ["postgres://state@10.0.0.5/meta"] && schema == "sluice_ha")
        #expect(config.ha == HAConfig(lease: 30, instance: "sluice-a"))
    }

    @Test func badValuesAreRefusedByField() {
        let postgres = [("store", Self.s("postgres"))]
        #expect(R.problems(Self.root(state: [("store", Self.s("redis"))])).map(\.path) == ["state.store"])
        #expect(R.problems(Self.root(state: postgres + [("url", Self.s("mysql://x"))])).map(\.code) == [.invalidValue])
        #expect(R.problems(Self.root(state: postgres + [("schema", Self.s("Bad-Name"))]))
            == [Problem(.invalidValue, "state.schema", "Bad-Name")])
        #expect(R.problems(Self.root(state: [("schema", Self.s("x"))])) .map { "\($0.code) \($0.path)" } == ["conflict state.schema"],
                "schema is for the postgres store")
        #expect(R.problems(Self.root(state: nil, ha: [("lease", Self.s("10s"))])).map { "\($0.code) \($0.path)" } == ["conflict ha"],
                "ha needs the shared state")
        for (lease, code) in [("1s", ConfigError.Code.outOfRange), ("11m", .outOfRange), ("soon", .invalidValue)] {
            #expect(R.problems(Self.root(state: postgres, ha: [("lease", Self.s(lease))])) == [Problem(code, "ha.lease", lease)], "\(lease)")
        }
        #expect(R.problems(Self.root(state: postgres, ha: [("instance", Self.s("a b"))])).map(\.path) == ["ha.instance"])
        #expect(R.problems(Self.root(state: postgres, ha: [("leases", Self.s("3s"))])).map(\.path) == ["ha.leases"])
    }

    @Test func theStateURLsPasswordNeverReachesAnError() {
        let problems = R.problems(Self.root(state: [("store", Self.s("postgres")), ("url", Self.s("mysql://u:hunter2@h/db"))]))
        #expect(!problems.isEmpty && !problems.description.contains("hunter2"))
    }
}
