import Foundation
import SluiceCore

/// What a sink's functions made of a message.
public enum FunctionOutcome: Sendable {
    /// Send this (topic, key and value as the functions left them).
    case send(Message)
    /// The filter returned false.
    case drop
    /// A function raised, ran out of budget or returned the wrong type: the message fails.
    case failed(String)
}

/// A sink's filter → routing → transform, in that order (routing sees the untransformed message,
/// as in Sequin). One instance per thread that runs them; the lock only guards against misuse.
public final class SinkFunctions: @unchecked Sendable {
    private let filter: UserFunction?
    private let routing: UserFunction?
    private let transform: UserFunction?
    /// True when a transform (or path) makes a new message value.
    public var transformsValue: Bool { transform != nil }
    private let lock = NSLock()

    public init(sink: SinkConfig) throws(FunctionError) {
        filter = try sink.filter.map { (config) throws(FunctionError) in try UserFunction(config) }
        routing = try sink.routing.map { (config) throws(FunctionError) in try UserFunction(config) }
        transform = try sink.transform.map { (config) throws(FunctionError) in try UserFunction(config) }
    }

    /// Runs the functions on a message as Sluice encoded it (default topic and key).
    public func apply(to message: Message) -> FunctionOutcome {
        lock.lock()
        defer { lock.unlock() }
        do {
            if let filter, try !filter.filter(message.value, layout: message.layout) { return .drop }
            var result = message
            if let routing {
                let route = try routing.route(message.value, layout: message.layout)
                if let topic = route.topic { result.topic = topic }
                if let key = route.messageKey { result.key = key }
            }
            if result.topic.isEmpty {
                return .failed("\(routing?.config.name ?? "routing"): route returned no topic and the sink has no destination.topic — return a topic, or set one")
            }
            if let transform {
                result.value = try transform.transform(message.value, layout: message.layout)
                result.layout = nil
            }
            return .send(result)
        } catch {
            return .failed(error.message)
        }
    }
}
