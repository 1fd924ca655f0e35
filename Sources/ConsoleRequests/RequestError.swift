/// A request the console refuses as malformed: the API answers 400 with `message`.
public struct RequestError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
