import Foundation

/// Compares two JSON texts as values, field for field: the same keys (null is not absent), the same
/// kinds (a number stays a number, a string a string), the same strings, numbers, arrays and nesting.
enum JSONComparison {
    static func parse(_ bytes: [UInt8]) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    }

    /// Every place where `actual` differs from `expected`, by path (empty when they are the same value).
    static func differences(_ expected: [UInt8], _ actual: [UInt8]) throws -> [String] {
        differences(try parse(expected), try parse(actual), path: "$")
    }

    static func differences(_ expected: Any, _ actual: Any, path: String) -> [String] {
        let (expectedKind, actualKind) = (kind(expected), kind(actual))
        guard expectedKind == actualKind else { return ["\(path): \(expectedKind) became \(actualKind)"] }
        switch (expected, actual) {
        case let (expected as [String: Any], actual as [String: Any]):
            var found: [String] = []
            for key in Set(expected.keys).subtracting(actual.keys).sorted() { found.append("\(path).\(key): missing") }
            for key in Set(actual.keys).subtracting(expected.keys).sorted() { found.append("\(path).\(key): unexpected") }
            for (key, value) in expected.sorted(by: { $0.key < $1.key }) {
                if let other = actual[key] { found += differences(value, other, path: "\(path).\(key)") }
            }
            return found
        case let (expected as [Any], actual as [Any]):
            guard expected.count == actual.count else { return ["\(path): \(expected.count) items became \(actual.count)"] }
            return zip(expected, actual).enumerated().flatMap { differences($1.0, $1.1, path: "\(path)[\($0)]") }
        case let (expected as String, actual as String):
            return expected == actual ? [] : ["\(path): \"\(expected)\" became \"\(actual)\""]
        case let (expected as NSNumber, actual as NSNumber):
            return expected == actual ? [] : ["\(path): \(expected) became \(actual)"]
        default:
            return []  // both null
        }
    }

    static func kind(_ value: Any) -> String {
        switch value {
        case is NSNull: "null"
        case is [String: Any]: "object"
        case is [Any]: "array"
        case is String: "string"
        case let number as NSNumber: String(cString: number.objCType) == "c" ? "bool" : "number"
        default: "\(type(of: value))"
        }
    }
}
