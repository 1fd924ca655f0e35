import Pipeline

/// The query of `GET /api/sinks/:sink/messages`: `state` (one of the message states; all when
/// absent) and `limit` (1…`MessageInspector.maxLimit`, default 100).
public struct MessageListQuery: Equatable, Sendable {
    public var states: [MessageState]
    public var limit: Int

    public init(state: String?, limit: String?) throws(RequestError) {
        states = MessageState.allCases
        if let state {
            guard let known = MessageState(rawValue: state) else {
                throw RequestError("state: \"\(state)\" — use in_flight, waiting, failing, delivered or cancelled")
            }
            states = [known]
        }
        self.limit = 100
        if let limit {
            guard let value = Int(limit), (1...MessageInspector.maxLimit).contains(value) else {
                throw RequestError("limit: \"\(limit)\" — give a whole number from 1 to \(MessageInspector.maxLimit)")
            }
            self.limit = value
        }
    }
}
