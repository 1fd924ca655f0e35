import Foundation
import Testing

/// `sluice fn test`: a function on a message file, on standard input, and on recently delivered messages.
@Suite(.serialized)
struct FunctionCommandTests {
    static let functions = [
        FunctionDeclaration(name: "paid-only", type: "filter", code: """
            function filter(action, record, changes, metadata)
              return record.status == "paid"
            end
            """),
        FunctionDeclaration(name: "slim", type: "transform", code: """
            function transform(action, record, changes, metadata)
              return { id = record.id, status = record.status }
            end
            """),
        FunctionDeclaration(name: "by-status", type: "routing", code: """
            function route(action, record, changes, metadata)
              return { topic = "orders." .. record.status }
            end
            """),
        FunctionDeclaration(name: "broken", type: "filter", code: """
            function filter(action, record, changes, metadata)
              return record.missing.field
            end
            """),
    ]

    static let message = """
        {"record":{"id":7,"status":"paid"},"changes":null,"action":"insert","metadata":{"table_schema":"public",\
        "table_name":"orders","record_pks":["7"]}}
        """

    func writeConfig(_ yaml: String) throws -> (config: String, message: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("fn"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("sluice.yml").path
        let message = directory.appendingPathComponent("message.json").path
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        try Self.message.write(toFile: message, atomically: true, encoding: .utf8)
        return (config, message)
    }

    @Test func runsEachKindOfFunctionOnAMessageFile() throws {
        let environment = try TestEnvironment.current()
        let yaml = """
            database: { url: "postgres://nobody@127.0.0.1:1/none" }
            sinks:
              - name: s
                destination: { type: kafka, hosts: "127.0.0.1:1", topic: orders }

            """ + FunctionDeclaration.yaml(Self.functions)
        let files = try writeConfig(yaml)
        func fn(_ name: String) throws -> (status: Int32, stdout: String, stderr: String) {
            try runCommand(environment.sluiceBinary, ["fn", "test", "--config", files.config, "--function", name, "--message", files.message])
        }
        #expect(try fn("paid-only").stdout == "keep\n")
        #expect(try fn("slim").stdout == "{\"id\":7,\"status\":\"paid\"}\n")
        #expect(try fn("by-status").stdout == "topic: orders.paid\nmessage_key: 7 (the primary key)\n")
        let broken = try fn("broken")
        #expect(broken.status == 1)
        #expect(broken.stdout.hasPrefix("error: functions[3].code:2: attempt to index a nil value (field 'missing')"), "\(broken)")
        let unknown = try fn("nope")
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("--function: \"nope\" is not declared"))
    }

    @Test func aSyntaxErrorRefusesTheConfigurationWithTheLine() throws {
        let environment = try TestEnvironment.current()
        let yaml = """
            database: { url: "postgres://nobody@127.0.0.1:1/none" }
            sinks:
              - name: s
                filter: bad
                destination: { type: kafka, hosts: "127.0.0.1:1", topic: orders }

            """ + FunctionDeclaration.yaml([FunctionDeclaration(name: "bad", type: "filter", code: """
                function filter(action, record)
                  return record.x ==
                end
                """)])
        let files = try writeConfig(yaml)
        for command in [["run"], ["check"]] {
            let result = try runCommand(environment.sluiceBinary, command + ["--config", files.config])
            #expect(result.status == 2)
            #expect(result.stderr == "functions[0].code:3: unexpected symbol near 'end' (function bad)\n", "\(command): \(result.stderr)")
        }
    }

    @Test func runsOnTheMessagesASinkDeliveredRecently() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let topic = fixture.topic("recent")
        try db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL)")
        let config = fixture.config(tables: ["public.orders"], sinks: [.init(name: "s", topic: topic)])
            + FunctionDeclaration.yaml(Self.functions)
        let sluice = try fixture.startSluice(config: config)
        try db.execute("INSERT INTO public.orders VALUES (1, 'paid'), (2, 'new'), (3, 'paid')")
        _ = try topic.waitForMessages(3, timeout: 60)
        // Bodies are saved about once a second.
        var result: (status: Int32, stdout: String, stderr: String) = (0, "", "")
        let saved = try eventually(timeout: 15, every: 0.5) {
            result = try runCommand(fixture.environment.sluiceBinary, ["fn", "test", "--config", sluice.configURL.path,
                                                                       "--function", "paid-only", "--recent", "3", "--sink", "s"])
            return result.stdout.split(separator: "\n").count == 3
        }
        #expect(saved, "\(result)")
        #expect(result.stdout == "[1] keep\n[2] drop\n[3] keep\n", "oldest first; \(result)")
        #expect(sluice.stop() == 0)

        // With sluice stopped, the state file still answers.
        let routed = try runCommand(fixture.environment.sluiceBinary, ["fn", "test", "--config", sluice.configURL.path,
                                                                       "--function", "by-status", "--recent", "1", "--sink", "s"])
        #expect(routed.stdout == "topic: orders.paid\nmessage_key: 3 (the primary key)\n", "\(routed)")
    }
}
