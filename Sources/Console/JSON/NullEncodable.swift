/// An optional field the API always writes: `null` when there is no value, where synthesized `Encodable`
/// would leave the key out. Clients read `"partition": null` as "does not apply" and check that every
/// field is there.
@propertyWrapper
struct NullEncodable<Value: Encodable & Sendable>: Encodable, Sendable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}
