import Functions
import SluiceCore
import Testing

/// A path function makes one part of the message the whole message value, exactly as Sluice encoded it.
@Suite struct PathFunctionTests {
    static let record = #"{"id":9007199254740993,"price":19.990,"address":{"city":"Berlin","geo":{"lat":52.52}},"tags":[1,null],"note":null,"escaped\"key":"v"}"#
    static let order = message(record: record)

    static func path(_ path: String, _ value: [UInt8] = order) throws -> String {
        let f = try UserFunction(FunctionConfig(name: "city", kind: .path, path: path))
        return String(decoding: try f.transform(value), as: UTF8.self)
    }

    @Test(arguments: [
        ("record", record),
        ("record.address.city", #""Berlin""#),
        ("record.address", #"{"city":"Berlin","geo":{"lat":52.52}}"#),
        ("record.address.geo.lat", "52.52"),
        ("record.price", "19.990"),
        ("record.id", "9007199254740993"),
        ("record.tags", "[1,null]"),
        ("record.note", "null"),
        ("record.escaped\"key", #""v""#),
        ("action", #""insert""#),
        ("changes", "null"),
        ("metadata.table_name", #""orders""#),
    ])
    func navigatesTheMessage(path: String, json: String) throws {
        #expect(try Self.path(path) == json)
    }

    @Test(arguments: ["record.missing", "record.address.zip", "record.address.city.name", "record.tags.1", "changes.status"])
    func missingPathIsNull(path: String) throws {
        #expect(try Self.path(path) == "null")
    }

    @Test func changesOnAnUpdate() throws {
        let update = message(record: #"{"id":1,"status":"paid"}"#, changes: #"{"status":"pending"}"#, action: "update")
        #expect(try Self.path("changes.status", update) == #""pending""#)
    }

    @Test func whitespaceInsideTheValueIsKept() throws {
        let spaced = Array(#"{ "record" : { "a" : [ 1 , 2 ] } , "action" : "read" }"#.utf8)
        #expect(try Self.path("record", spaced) == #"{ "a" : [ 1 , 2 ] }"#)
        #expect(try Self.path("record.a", spaced) == "[ 1 , 2 ]")
    }

    @Test(arguments: ["address.city", "record..city", "record.", "", "Record"])
    func invalidPathIsRefused(path: String) {
        let thrown = #expect(throws: FunctionError.self) {
            try UserFunction(FunctionConfig(name: "city", kind: .path, path: path))
        }
        #expect(thrown?.message == #"city: "\#(path)" — start with record, changes, action or metadata"#)
    }

    @Test func invalidJSONIsAnError() throws {
        let f = try UserFunction(FunctionConfig(name: "city", kind: .path, path: "record.b"))
        let thrown = #expect(throws: FunctionError.self) { try f.transform(Array(#"{"record":{"a":tru"#.utf8)) }
        #expect(thrown?.message.hasPrefix("the message is not valid JSON") == true)
    }
}
