import Functions
import SluiceCore
import Testing

/// A sink's functions run filter → routing → transform on the message Sluice encoded.
@Suite struct SinkFunctionsTests {
    static let order = Message(key: "42".bytes, value: message(record: #"{"id":42,"region":"eu","amount":250}"#),
                               topic: "orders", recordPKs: ["42"])

    static func config(_ name: String, _ kind: FunctionConfig.Kind, _ code: String) -> FunctionConfig {
        FunctionConfig(name: name, kind: kind, code: code, origin: "functions/\(name).lua")
    }

    static func sink(topic: String = "orders", filter: String? = nil, routing: String? = nil,
                     transform: FunctionConfig? = nil) throws -> SinkFunctions {
        try SinkFunctions(sink: SinkConfig(
            name: "orders-to-kafka",
            destination: KafkaDestination(hosts: [], topic: topic),
            filter: filter.map { config("paid-only", .filter, $0) },
            routing: routing.map { config("by-region", .routing, $0) },
            transform: transform))
    }

    static let regionTransform = config("shape", .transform, """
        function transform(action, record)
          record.region = "moved"
          return {id = record.id, region = record.region}
        end
        """)

    /// (topic, key, value) of a sent message, or why it was not sent.
    static func sent(_ outcome: FunctionOutcome) -> (topic: String, key: String?, value: String)? {
        guard case .send(let message) = outcome else { return nil }
        return (message.topic, message.key.map { String(decoding: $0, as: UTF8.self) }, String(decoding: message.value, as: UTF8.self))
    }

    @Test func noFunctionsSendsTheMessageAsItIs() throws {
        let result = Self.sent(try Self.sink().apply(to: Self.order))
        #expect(result?.topic == "orders")
        #expect(result?.key == "42")
        #expect(result?.value.utf8.elementsEqual(Self.order.value) == true)
    }

    @Test func filterDropsBeforeAnythingElseRuns() throws {
        let functions = try Self.sink(filter: "function filter(action, record) return record.amount > 1000 end",
                                      routing: #"function route() error("routing ran") end"#,
                                      transform: Self.config("shape", .transform, #"function transform() error("transform ran") end"#))
        guard case .drop = functions.apply(to: Self.order) else {
            Issue.record("expected the filter to drop the message")
            return
        }
    }

    @Test func routingSeesTheUntransformedMessage() throws {
        let functions = try Self.sink(
            filter: "function filter(action, record) return record.amount > 100 end",
            routing: #"function route(action, record) return {topic = "orders." .. record.region, message_key = "r-" .. record.id} end"#,
            transform: Self.regionTransform)
        let result = Self.sent(functions.apply(to: Self.order))
        #expect(result?.topic == "orders.eu")
        #expect(result?.key == "r-42")
        #expect(result?.value == #"{"id":42,"region":"moved"}"#)
    }

    @Test func routingMayKeepTheDefaultTopicOrKey() throws {
        let keyOnly = Self.sent(try Self.sink(routing: "function route(action, record) return {message_key = record.region} end")
            .apply(to: Self.order))
        #expect(keyOnly?.topic == "orders")
        #expect(keyOnly?.key == "eu")

        let topicOnly = Self.sent(try Self.sink(routing: #"function route() return {topic = "audit"} end"#).apply(to: Self.order))
        #expect(topicOnly?.topic == "audit")
        #expect(topicOnly?.key == "42")
    }

    @Test func pathFunctionAsTheTransform() throws {
        let functions = try Self.sink(transform: FunctionConfig(name: "region-only", kind: .path, path: "record.region"))
        #expect(Self.sent(functions.apply(to: Self.order))?.value == #""eu""#)
    }

    @Test func routingWithoutTopicNeedsADefault() throws {
        // Without destination.topic, Sluice encodes the message with an empty topic.
        var untopiced = Self.order
        untopiced.topic = ""
        let functions = try Self.sink(topic: "", routing: #"function route(action, record) return {message_key = "k"} end"#)
        guard case .failed(let reason) = functions.apply(to: untopiced) else {
            Issue.record("expected the message to fail")
            return
        }
        #expect(reason == "by-region: route returned no topic and the sink has no destination.topic — return a topic, or set one")

        let routed = try Self.sink(topic: "", routing: #"function route(action, record) return {topic = "orders-" .. record.region} end"#)
        #expect(Self.sent(routed.apply(to: untopiced))?.topic == "orders-eu")
    }

    @Test func aFailingFunctionFailsTheMessageWithItsReason() throws {
        let functions = try Self.sink(filter: "function filter(action, record)\n  return record.missing > 1\nend")
        guard case .failed(let reason) = functions.apply(to: Self.order) else {
            Issue.record("expected the message to fail")
            return
        }
        #expect(reason == "functions/paid-only.lua:2: attempt to compare number with nil")
        let invalidTopic = try Self.sink(routing: #"function route() return {topic = "a b"} end"#)
        guard case .failed(let topicReason) = invalidTopic.apply(to: Self.order) else {
            Issue.record("expected the message to fail")
            return
        }
        #expect(topicReason.hasPrefix(#"by-region: route returned topic "a b""#))
    }

    @Test func compileErrorsSurfaceWhenTheSinkStarts() {
        let thrown = #expect(throws: FunctionError.self) {
            try Self.sink(filter: "function filter(action, record\nend")
        }
        #expect(thrown?.message.hasPrefix("functions/paid-only.lua:2:") == true)
    }
}
