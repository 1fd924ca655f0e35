import Functions
import SluiceCore
import Testing

/// A routing function picks the topic and key; what it returns must be something Kafka accepts.
@Suite struct RoutingTests {
    static let order = message(record: #"{"id":42,"region":"eu","customer":"c-7"}"#)

    static func route(_ returned: String) throws -> Route {
        try function(.routing, "function route(action, record, changes, metadata) return \(returned) end", name: "by-region")
            .route(order)
    }

    static func routeError(_ returned: String) throws -> String? {
        let f = try function(.routing, "function route(action, record, changes, metadata) return \(returned) end", name: "by-region")
        return #expect(throws: FunctionError.self) { try f.route(order) }?.message
    }

    @Test func topicAndKeyFromTheRecord() throws {
        #expect(try Self.route(#"{topic = "orders." .. record.region, message_key = record.customer}"#)
            == Route(topic: "orders.eu", messageKey: "c-7".bytes))
    }

    @Test func eitherPartMayBeLeftOut() throws {
        #expect(try Self.route(#"{topic = metadata.table_name .. "-v2"}"#) == Route(topic: "orders-v2", messageKey: nil))
        #expect(try Self.route("{message_key = record.customer}") == Route(topic: nil, messageKey: "c-7".bytes))
        #expect(try Self.route("{}") == Route())
    }

    @Test(arguments: [
        ("record.id", "42"),
        ("-7", "-7"),
        ("9223372036854775807", "9223372036854775807"),
        ("3.0", "3"),
        (#""""#, ""),
    ])
    func messageKeyIsAStringOrAnInteger(key: String, sent: String) throws {
        #expect(try Self.route("{message_key = \(key)}").messageKey == sent.bytes)
    }

    @Test func messageKeyOfAtMost512Bytes() throws {
        #expect(try Self.route(#"{message_key = string.rep("k", 512)}"#).messageKey?.count == 512)
        #expect(try Self.routeError(#"{message_key = string.rep("k", 513)}"#)
            == "by-region: route returned a message_key of 513 bytes — at most 512")
    }

    @Test(arguments: [
        ("{message_key = 2.5}", "by-region: route returned message_key 2.5 — return a string or an integer"),
        ("{message_key = true}", "by-region: route returned a message_key that is a boolean — return a string or an integer"),
        ("{message_key = {}}", "by-region: route returned a message_key that is a table — return a string or an integer"),
        ("{topic = 7}", "by-region: route returned a topic that is a number (7) — return a string"),
        ("{topic = sluice.null}", "by-region: route returned a topic that is a sluice.null — return a string"),
        ("nil", "by-region: route must return a table with topic and/or message_key, it returned nil"),
        (#""orders""#, #"by-region: route must return a table with topic and/or message_key, it returned a string ("orders")"#),
    ])
    func wrongTypes(returned: String, error: String) throws {
        #expect(try Self.routeError(returned) == error)
    }

    @Test(arguments: [
        (#"{topic = "orders eu"}"#, #"by-region: route returned topic "orders eu" — a topic name uses only letters, digits, '.', '_' and '-'"#),
        (#"{topic = ""}"#, #"by-region: route returned topic "" — a topic name cannot be empty"#),
        (#"{topic = ".."}"#, #"by-region: route returned topic ".." — a topic cannot be named . or .."#),
        (#"{topic = "orders/" .. record.region}"#, #"by-region: route returned topic "orders/eu" — a topic name uses only letters, digits, '.', '_' and '-'"#),
    ])
    func topicMustObeyKafkasRules(returned: String, error: String) throws {
        #expect(try Self.routeError(returned) == error)
    }

    @Test func topicOfAtMost255Characters() throws {
        #expect(try Self.route(#"{topic = string.rep("t", 255)}"#).topic?.count == 255)
        let error = try Self.routeError(#"{topic = string.rep("t", 256)}"#)
        #expect(error?.hasSuffix("— a topic name has at most 255 characters (this one has 256)") == true)
    }
}
