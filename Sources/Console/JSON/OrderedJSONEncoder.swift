import Foundation
import SluiceCore

/// Encodes `Encodable` values as compact JSON for the API: keys in the order a type encodes them,
/// strings escaped as `JSONWriter` escapes them (`/` left alone), and a `JSONFragment` written as the JSON
/// it already is. Foundation's `JSONEncoder` can do neither of the last two: it orders keys by hash and
/// would rewrite a message's numbers (19.990 became 19.99, a 42-digit integer was rounded), so the API's
/// answers would no longer carry a message as it was sent.
struct OrderedJSONEncoder {
    func encode(_ value: some Encodable) throws -> [UInt8] {
        let node = try JSONNode.encoding(value, codingPath: [])
        var json = JSONWriter(capacity: 512)
        node.write(to: &json)
        return json.bytes
    }
}

// MARK: - The tree an encoding builds

/// A JSON value under construction. Objects and arrays are shared (classes): `encode(to:)` may take a
/// container, hand out nested ones, and go on writing into the first.
enum JSONNode {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case fragment([UInt8])
    case array(JSONArrayNode)
    case object(JSONObjectNode)

    /// What `value` encodes to; a `JSONFragment` is taken as it is.
    static func encoding(_ value: some Encodable, codingPath: [any CodingKey]) throws -> JSONNode {
        if let fragment = value as? JSONFragment { return .fragment(fragment.bytes) }
        let slot = JSONSlot()
        try value.encode(to: JSONNodeEncoder(slot: slot, codingPath: codingPath))
        return slot.node ?? .object(JSONObjectNode())  // a value that wrote nothing is {}, as with JSONEncoder
    }

    static func number(_ value: some FloatingPoint & LosslessStringConvertible, codingPath: [any CodingKey]) throws -> JSONNode {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "\(value) is not a JSON number"))
        }
        return .number(value.description)
    }

    func write(to json: inout JSONWriter) {
        switch self {
        case .null: json.null()
        case .bool(let value): json.bool(value)
        case .number(let text): json.raw(text.utf8)
        case .string(let text): json.string(text)
        case .fragment(let bytes): json.raw(bytes)
        case .array(let array):
            json.raw(UInt8(ascii: "["))
            for (index, slot) in array.slots.enumerated() {
                if index > 0 { json.raw(UInt8(ascii: ",")) }
                slot.write(to: &json)
            }
            json.raw(UInt8(ascii: "]"))
        case .object(let object):
            json.raw(UInt8(ascii: "{"))
            for (index, key) in object.keys.enumerated() {
                if index > 0 { json.raw(UInt8(ascii: ",")) }
                json.key(key)
                object.slots[key]?.write(to: &json)
            }
            json.raw(UInt8(ascii: "}"))
        }
    }
}

/// A place for one value: an object's member, an array's item, or a whole encoding.
final class JSONSlot {
    var node: JSONNode?

    init(_ node: JSONNode? = nil) { self.node = node }

    func write(to json: inout JSONWriter) { (node ?? .object(JSONObjectNode())).write(to: &json) }
}

final class JSONArrayNode {
    var slots: [JSONSlot] = []

    func append(_ node: JSONNode? = nil) -> JSONSlot {
        let slot = JSONSlot(node)
        slots.append(slot)
        return slot
    }
}

/// Members in the order they were first encoded; encoding a key again replaces its value in place.
final class JSONObjectNode {
    private(set) var keys: [String] = []
    private(set) var slots: [String: JSONSlot] = [:]

    func slot(_ key: String) -> JSONSlot {
        if let slot = slots[key] { return slot }
        let slot = JSONSlot()
        keys.append(key)
        slots[key] = slot
        return slot
    }
}

// MARK: - Encoder

struct JSONNodeEncoder: Encoder {
    let slot: JSONSlot
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedContainer<Key>(object: slot.objectNode(), codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        UnkeyedContainer(array: slot.arrayNode(), codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueContainer(slot: slot, codingPath: codingPath)
    }
}

extension JSONSlot {
    /// The object this slot holds, made if it holds none yet (a type may ask for its container twice).
    func objectNode() -> JSONObjectNode {
        if case .object(let object) = node { return object }
        let object = JSONObjectNode()
        node = .object(object)
        return object
    }

    func arrayNode() -> JSONArrayNode {
        if case .array(let array) = node { return array }
        let array = JSONArrayNode()
        node = .array(array)
        return array
    }
}

/// The key a `superEncoder()` writes under, as `JSONEncoder` names it.
private struct SuperKey: CodingKey {
    var stringValue: String { "super" }
    var intValue: Int? { nil }
    init() {}
    init?(stringValue: String) { nil }
    init?(intValue: Int) { nil }
}

private struct IndexKey: CodingKey {
    let index: Int
    var stringValue: String { "Index \(index)" }
    var intValue: Int? { index }
    init(_ index: Int) { self.index = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.index = intValue }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let object: JSONObjectNode
    let codingPath: [any CodingKey]

    func put(_ node: JSONNode, _ key: Key) { object.slot(key.stringValue).node = node }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(try .number(value, codingPath: codingPath + [key]), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(try .number(value, codingPath: codingPath + [key]), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: some Encodable, forKey key: Key) throws {
        put(try .encoding(value, codingPath: codingPath + [key]), key)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                        forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        KeyedEncodingContainer(KeyedContainer<NestedKey>(object: object.slot(key.stringValue).objectNode(), codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        UnkeyedContainer(array: object.slot(key.stringValue).arrayNode(), codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder {
        JSONNodeEncoder(slot: object.slot(SuperKey().stringValue), codingPath: codingPath + [SuperKey()])
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        JSONNodeEncoder(slot: object.slot(key.stringValue), codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let array: JSONArrayNode
    let codingPath: [any CodingKey]
    var count: Int { array.slots.count }

    private var nextPath: [any CodingKey] { codingPath + [IndexKey(count)] }

    mutating func encodeNil() throws { _ = array.append(.null) }
    mutating func encode(_ value: Bool) throws { _ = array.append(.bool(value)) }
    mutating func encode(_ value: String) throws { _ = array.append(.string(value)) }
    mutating func encode(_ value: Double) throws { _ = array.append(try .number(value, codingPath: nextPath)) }
    mutating func encode(_ value: Float) throws { _ = array.append(try .number(value, codingPath: nextPath)) }
    mutating func encode(_ value: Int) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: Int8) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: Int16) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: Int32) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: Int64) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: UInt) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: UInt8) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: UInt16) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: UInt32) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: UInt64) throws { _ = array.append(.number(String(value))) }
    mutating func encode(_ value: some Encodable) throws { _ = array.append(try .encoding(value, codingPath: nextPath)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = nextPath
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(object: array.append().objectNode(), codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = nextPath
        return UnkeyedContainer(array: array.append().arrayNode(), codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let path = nextPath
        return JSONNodeEncoder(slot: array.append(), codingPath: path)
    }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let slot: JSONSlot
    let codingPath: [any CodingKey]

    mutating func encodeNil() throws { slot.node = .null }
    mutating func encode(_ value: Bool) throws { slot.node = .bool(value) }
    mutating func encode(_ value: String) throws { slot.node = .string(value) }
    mutating func encode(_ value: Double) throws { slot.node = try .number(value, codingPath: codingPath) }
    mutating func encode(_ value: Float) throws { slot.node = try .number(value, codingPath: codingPath) }
    mutating func encode(_ value: Int) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: Int8) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: Int16) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: Int32) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: Int64) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: UInt) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: UInt8) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: UInt16) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: UInt32) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: UInt64) throws { slot.node = .number(String(value)) }
    mutating func encode(_ value: some Encodable) throws { slot.node = try .encoding(value, codingPath: codingPath) }
}
