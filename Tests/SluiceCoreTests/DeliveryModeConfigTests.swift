import Foundation
import SluiceCore
import Testing

/// `delivery: exactly_once` and its destination settings: defaults, refusals by code and field path.
@Suite struct DeliveryModeConfigTests {
    typealias R = KafkaDestinationRulesTests
    static func s(_ text: String) -> ConfigNode { .scalar(text) }

    @Test func atLeastOnceIsTheDefaultAndExactlyOnceHasItsDefaults() throws {
        let plain = try R.read(R.root(destination: [])).get()
        #expect(plain.sinks[0].delivery == .atLeastOnce)
        let config = try R.read(R.root(destination: [], sink: [("delivery", Self.s("exactly_once"))])).get()
        let sink = config.sinks[0]
        #expect(sink.delivery == .exactlyOnce)
        #expect(sink.destination.transactionalID == nil, "sluice-<slot>-<sink name>, made where the slot is known")
        #expect(sink.destination.transactionTimeout == 60 && sink.destination.offsetsTopic == "sluice.offsets")
    }

    @Test func theTransactionSettingsAreRead() throws {
        let config = try R.read(R.root(destination: [("transactional_id", Self.s("sluice-orders")), ("transaction_timeout", Self.s("2m")),
                                                     ("offsets_topic", Self.s("app.offsets"))],
                                       sink: [("delivery", Self.s("exactly_once"))])).get()
        let destination = config.sinks[0].destination
        #expect(destination.transactionalID == "sluice-orders" && destination.transactionTimeout == 120
                && destination.offsetsTopic == "app.offsets")
    }

    @Test func badValuesAreRefusedByField() {
        #expect(R.problems(R.root(destination: [], sink: [("delivery", Self.s("exactly-once"))]))
            == [Problem(.invalidValue, "sinks[0].delivery", "exactly-once")])
        let bad: [(String, String, ConfigError.Code)] = [
            ("transactional_id", " ", .empty), ("transactional_id", String(repeating: "x", count: 256), .outOfRange),
            ("transaction_timeout", "0s", .outOfRange), ("transaction_timeout", "16m", .outOfRange),
            ("transaction_timeout", "soon", .invalidValue), ("offsets_topic", "bad topic", .invalidValue),
        ]
        for (key, value, code) in bad {
            let problems = R.problems(R.root(destination: [(key, Self.s(value))], sink: [("delivery", Self.s("exactly_once"))]))
            #expect(problems.map(\.code) == [code] && problems.map(\.path) == ["sinks[0].destination.\(key)"], "\(key): \(value)")
        }
    }

    @Test func transactionSettingsWithoutExactlyOnceAreAConflict() {
        let problems = R.problems(R.root(destination: [("offsets_topic", Self.s("app.offsets"))]))
        #expect(problems == [Problem(.conflict, "sinks[0].destination.offsets_topic")])
    }
}
