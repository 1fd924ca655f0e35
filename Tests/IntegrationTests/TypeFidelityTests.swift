import Foundation
import Testing

/// Every PostgreSQL type arrives as the message contract says (ARCHITECTURE.md, "Message format"):
/// one table, one column per type, one row per case; each row's column is compared with the
/// expected JSON after both are parsed, and, where the digits matter, in the raw payload too.
@Suite(.serialized)
struct TypeFidelityTests {
    struct Case: CustomStringConvertible {
        /// The column's SQL type.
        var type: String
        /// An SQL expression for the value (cast to `type`); `$2` when `parameter` carries the text.
        var sql: String
        /// The expected JSON value.
        var json: String
        /// Also require `"column":json` verbatim in the payload (exact number digits, exact form).
        var exact: Bool
        /// Text sent as a query parameter, for values that are awkward to write in SQL.
        var parameter: String?

        var description: String { "\(type) \(parameter.map { "parameter \($0.debugDescription)" } ?? sql)" }
    }

    static func c(_ type: String, _ sql: String, _ json: String, exact: Bool = false) -> Case {
        Case(type: type, sql: sql, json: json, exact: exact, parameter: nil)
    }

    static func p(_ type: String, _ parameter: String, _ json: String, exact: Bool = false) -> Case {
        Case(type: type, sql: "$2", json: json, exact: exact, parameter: parameter)
    }

    /// Types the cases use. contrib (citext, hstore) ships in Debian's postgresql-15 package, which
    /// scripts/lib/services.sh installs; a missing extension fails the test rather than skip it.
    static let setup = [
        "CREATE EXTENSION IF NOT EXISTS citext",
        "CREATE EXTENSION IF NOT EXISTS hstore",
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'very happy', 'ünï 👋')",
        "CREATE DOMAIN posint AS int4 CHECK (VALUE > 0)",
        "CREATE DOMAIN deep AS posint",
        "CREATE DOMAIN price AS numeric(10,2)",
        "CREATE DOMAIN email AS citext",
        "CREATE DOMAIN doc AS jsonb",
        """
        CREATE TYPE address AS (street text, zip int, tags text[], seen timestamptz, price numeric, meta jsonb,
          pos point, mood mood, during interval)
        """,
        "CREATE TYPE person AS (name text, home address, moods mood[], prices price[])",
        "CREATE DOMAIN checked_address AS address CHECK ((VALUE).zip IS NULL OR (VALUE).zip > 0)",
        // Dropped attributes are not in the text form and must not be in the object either.
        "CREATE TYPE withdrop AS (a int, b text, c bool)",
        "ALTER TYPE withdrop DROP ATTRIBUTE b",
        // A table's row type used as a column type.
        "CREATE TABLE coords (x int, y int)",
    ]

    static let cases: [Case] = [
        // bool
        c("bool", "true", "true"),
        c("bool", "false", "false"),
        // integers, oid, xid8: JSON numbers
        c("int2", "32767", "32767", exact: true),
        c("int2", "-32768", "-32768", exact: true),
        c("int4", "2147483647", "2147483647", exact: true),
        c("int4", "-2147483648", "-2147483648", exact: true),
        c("int4", "0", "0", exact: true),
        c("int8", "9223372036854775807", "9223372036854775807", exact: true),
        c("int8", "-9223372036854775808", "-9223372036854775808", exact: true),
        c("oid", "4294967295", "4294967295", exact: true),
        c("xid8", "'123456789012'", "123456789012", exact: true),
        // float4/float8: shortest exact form (extra_float_digits=3 on PostgreSQL 15), NaN/±Infinity as strings
        c("float4", "'1.1'", "1.1", exact: true),
        c("float4", "'3.4028235e38'", "3.4028235e+38", exact: true),
        c("float4", "'1e-45'", "1e-45", exact: true),
        c("float4", "'-0'", "-0", exact: true),
        c("float4", "'NaN'", #""NaN""#, exact: true),
        c("float4", "'Infinity'", #""Infinity""#, exact: true),
        c("float8", "0.1", "0.1", exact: true),
        c("float8", "'1e308'", "1e+308", exact: true),
        c("float8", "'5e-324'", "5e-324", exact: true),
        c("float8", "'1.7976931348623157e308'", "1.7976931348623157e+308", exact: true),
        c("float8", "'-Infinity'", #""-Infinity""#, exact: true),
        c("float8", "'NaN'", #""NaN""#, exact: true),
        // numeric: exact digits at any precision, NaN/±Infinity as strings
        c("numeric", "12345678901234567890.123456789012345678901234567890",
          "12345678901234567890.123456789012345678901234567890", exact: true),
        c("numeric", "-0.000000000000000000001", "-0.000000000000000000001", exact: true),
        c("numeric", "'1e-20'", "0.00000000000000000001", exact: true),
        c("numeric", "'1' || repeat('0', 120)", "1" + String(repeating: "0", count: 120), exact: true),
        c("numeric", "'NaN'", #""NaN""#, exact: true),
        c("numeric", "'Infinity'", #""Infinity""#, exact: true),
        c("numeric", "'-Infinity'", #""-Infinity""#, exact: true),
        c("numeric(10,2)", "1.5", "1.50", exact: true),
        c("numeric(10,2)", "0", "0.00", exact: true),
        // money: the server's locale-formatted text (lc_monetary C.UTF-8 / C)
        c("money", "1234.56", #""$1,234.56""#),
        c("money", "-1234.56", #""-$1,234.56""#),
        // text types
        c("text", "'hello'", #""hello""#),
        c("text", "''", #""""#),
        c("text", "'NULL'", #""NULL""#),
        c("text", "'  padded  '", #""  padded  ""#),
        p("text", "emoji 👋🏽 👨‍👩‍👧 🇳🇴 e\u{0301} \u{10FFFF}", #""emoji 👋🏽 👨‍👩‍👧 🇳🇴 e\u0301 \udbff\udfff""#),
        p("text", "RTL שלום عربي \u{200F}mark\u{200E} \u{202E}override\u{202C}",
          #""RTL שלום عربي \u200fmark\u200e \u202eoverride\u202c""#),
        p("text", "ctl \u{01}\u{02}\u{07}\u{08}\t\n\u{0B}\u{0C}\r\u{1B}\u{1F}\u{7F} end",
          #""ctl \u0001\u0002\u0007\b\t\n\u000b\f\r\u001b\u001f\u007f end""#),
        p("text", #"quote " backslash \ slash / {braces} [brackets]"#, #""quote \" backslash \\ slash / {braces} [brackets]""#),
        p("text", "separators \u{2028}\u{2029} bom \u{FEFF} replacement \u{FFFD}",
          #""separators \u2028\u2029 bom \ufeff replacement \ufffd""#),
        c("varchar(20)", "'abc'", #""abc""#),
        c("char(5)", "'ab'", #""ab   ""#),
        c("name", "'pg_name'", #""pg_name""#),
        c("\"char\"", "'x'", #""x""#),
        // bytea: hex with the leading \x
        c("bytea", #"'\x00ff10'"#, #""\\x00ff10""#, exact: true),
        c("bytea", "''", #""\\x""#, exact: true),
        c("bytea", "decode('DEADBEEF', 'hex')", #""\\xdeadbeef""#, exact: true),
        // uuid
        c("uuid", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", #""a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11""#),
        // json/jsonb: embedded, parsed
        c("json", #"'{"b": 1, "a": [1, 2.50, null, "x"]}'"#, #"{"b": 1, "a": [1, 2.50, null, "x"]}"#, exact: true),
        c("json", #"'"just a string"'"#, #""just a string""#),
        c("json", "'12.500'", "12.500", exact: true),
        p("json", "{\"multi\":\n  [1,\n   2]}", #"{"multi": [1, 2]}"#),
        c("jsonb", #"'{"b":1,"a":{"c":[true,false,null]}}'"#, #"{"a": {"c": [true, false, null]}, "b": 1}"#),
        c("jsonb", #"'{"k":"\u00e9 👋 \"q\" \\ \n"}'"#, #"{"k": "é 👋 \"q\" \\ \n"}"#),
        c("jsonb", "'[1.50, 1e3]'", "[1.50, 1000]", exact: true),
        c("jsonb", "'null'", "null", exact: true),
        // date: ISO 8601; BC astronomical, years past 9999 signed; ±infinity as text
        c("date", "'2026-11-29'", #""2026-11-29""#),
        c("date", "'0044-03-15 BC'", #""-0043-03-15""#),
        c("date", "'0001-01-01 BC'", #""0000-01-01""#),
        c("date", "'5874897-12-31'", #""+5874897-12-31""#),
        c("date", "'infinity'", #""infinity""#),
        c("date", "'-infinity'", #""-infinity""#),
        // time, timetz: their text form
        c("time", "'10:00:00.5'", #""10:00:00.5""#),
        c("time", "'24:00:00'", #""24:00:00""#),
        c("timetz", "'10:00:00.5+05:30'", #""10:00:00.5+05:30""#),
        // timestamp: ISO 8601 without zone, µs
        c("timestamp", "'2026-11-29 10:00:00.123456'", #""2026-11-29T10:00:00.123456""#),
        c("timestamp", "'2026-11-29 10:00:00'", #""2026-11-29T10:00:00.000000""#),
        c("timestamp", "'0044-03-15 12:00 BC'", #""-0043-03-15T12:00:00.000000""#),
        c("timestamp", "'12345-01-02 03:04:05.6'", #""+12345-01-02T03:04:05.600000""#),
        c("timestamp", "'infinity'", #""infinity""#),
        c("timestamp", "'-infinity'", #""-infinity""#),
        // timestamptz: ISO 8601 UTC, µs, Z
        c("timestamptz", "'2026-11-29 15:30:00.123456+05:30'", #""2026-11-29T10:00:00.123456Z""#),
        c("timestamptz", "'2026-11-29 10:00:00.5+00'", #""2026-11-29T10:00:00.500000Z""#),
        c("timestamptz", "'0044-03-15 12:00+00 BC'", #""-0043-03-15T12:00:00.000000Z""#),
        c("timestamptz", "'4714-11-24 00:00+00 BC'", #""-4713-11-24T00:00:00.000000Z""#),
        c("timestamptz", "'294276-12-31 23:59:59.999999+00'", #""+294276-12-31T23:59:59.999999Z""#),
        c("timestamptz", "'9999-12-31 23:59:59.999999+00'", #""9999-12-31T23:59:59.999999Z""#),
        c("timestamptz", "'infinity'", #""infinity""#),
        c("timestamptz", "'-infinity'", #""-infinity""#),
        // interval: months, days, microseconds
        c("interval", "'1 year 2 months 3 days 4:05:06.5'", #"{"months":14,"days":3,"microseconds":14706500000}"#, exact: true),
        c("interval", "'-1.5 seconds'", #"{"months":0,"days":0,"microseconds":-1500000}"#, exact: true),
        c("interval", "'1 mon -1 day'", #"{"months":1,"days":-1,"microseconds":0}"#, exact: true),
        c("interval", "'0'", #"{"months":0,"days":0,"microseconds":0}"#, exact: true),
        c("interval", "'178000000 years'", #"{"months":2136000000,"days":0,"microseconds":0}"#, exact: true),
        c("interval", "'2562047788 hours 54.775807 seconds'",
          #"{"months":0,"days":0,"microseconds":9223372036854775807}"#, exact: true),
        c("interval", "'-2562047788 hours -54.775807 seconds'",
          #"{"months":0,"days":0,"microseconds":-9223372036854775807}"#, exact: true),
        // network
        c("inet", "'192.168.0.1/24'", #""192.168.0.1/24""#),
        c("inet", "'::1'", #""::1""#),
        c("cidr", "'10.0.0.0/8'", #""10.0.0.0/8""#),
        c("macaddr", "'08:00:2B:01:02:03'", #""08:00:2b:01:02:03""#),
        c("macaddr8", "'08:00:2b:01:02:03:04:05'", #""08:00:2b:01:02:03:04:05""#),
        // bit strings
        c("bit(4)", "B'1010'", #""1010""#),
        c("varbit", "B'101'", #""101""#),
        // xml, text search
        c("xml", #"'<a x="1">t&amp;ü</a>'"#, #""<a x=\"1\">t&amp;ü</a>""#),
        c("tsvector", "'a fat cat'", #""'a' 'cat' 'fat'""#),
        c("tsquery", "'fat & rat'", #""'fat' & 'rat'""#),
        // geometric
        c("point", "'(1,2)'", #""(1,2)""#),
        c("line", "'{1,-1,0}'", #""{1,-1,0}""#),
        c("lseg", "'[(0,0),(1,1)]'", #""[(0,0),(1,1)]""#),
        c("box", "'((1,1),(0,0))'", #""(1,1),(0,0)""#),
        c("path", "'[(0,0),(1,1)]'", #""[(0,0),(1,1)]""#),
        c("polygon", "'((0,0),(1,1),(1,0))'", #""((0,0),(1,1),(1,0))""#),
        c("circle", "'<(0,0),1>'", #""<(0,0),1>""#),
        // pg_lsn
        c("pg_lsn", "'16/B374D848'", #""16/B374D848""#),
        // arrays: nested, with NULLs, each element converted by its type
        c("int4[]", "'{1,2,NULL}'", "[1,2,null]", exact: true),
        c("int4[]", "'{{1,2},{3,NULL}}'", "[[1,2],[3,null]]", exact: true),
        c("int4[]", "'{{{1}},{{2}}}'", "[[[1]],[[2]]]", exact: true),
        c("int4[]", "'{}'", "[]", exact: true),
        c("int4[]", "'[0:1]={7,8}'", "[7,8]", exact: true),
        c("int4[]", "'{{NULL,NULL},{NULL,NULL}}'", "[[null,null],[null,null]]", exact: true),
        c("int8[]", "'{9223372036854775807,-9223372036854775808}'", "[9223372036854775807,-9223372036854775808]", exact: true),
        c("int2[]", "'{1,-1}'", "[1,-1]", exact: true),
        c("oid[]", "'{1,4294967295}'", "[1,4294967295]", exact: true),
        c("bool[]", "'{t,f,NULL}'", "[true,false,null]", exact: true),
        c("float4[]", "'{1.1,NaN}'", #"[1.1,"NaN"]"#, exact: true),
        c("float8[]", "'{1.5,Infinity,-Infinity}'", #"[1.5,"Infinity","-Infinity"]"#, exact: true),
        c("numeric[]", "'{1.10,NaN,-Infinity,NULL,12345678901234567890.000000000001}'",
          #"[1.10,"NaN","-Infinity",null,12345678901234567890.000000000001]"#, exact: true),
        c("text[]", #"'{"a b","c\"d",NULL,"NULL","","x,y","{z}"}'"#, #"["a b","c\"d",null,"NULL","","x,y","{z}"]"#),
        c("text[]", "'{{a,NULL},{NULL,b}}'", #"[["a",null],[null,"b"]]"#),
        p("text[]", "{\"👋 hi\",\"ünï\\\\\",\"tab\there\",plain}", #"["👋 hi","ünï\\","tab\there","plain"]"#),
        c("varchar[]", "'{x,y}'", #"["x","y"]"#),
        c("bytea[]", #"'{"\\x00ff",NULL}'"#, #"["\\x00ff",null]"#, exact: true),
        c("uuid[]", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", #"["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]"#),
        c("json[]", #"ARRAY['{"a": 1}'::json, '[1, "x"]']"#, #"[{"a": 1},[1, "x"]]"#, exact: true),
        c("jsonb[]", #"ARRAY['{"a":1}'::jsonb, 'null', NULL]"#, #"[{"a": 1},null,null]"#, exact: true),
        c("date[]", #"'{2026-11-29,"0044-03-15 BC",infinity}'"#, #"["2026-11-29","-0043-03-15","infinity"]"#, exact: true),
        c("time[]", "'{10:00:00,NULL}'", #"["10:00:00",null]"#),
        c("timestamp[]", #"'{"2026-11-29 10:00:00.5",-infinity}'"#, #"["2026-11-29T10:00:00.500000","-infinity"]"#, exact: true),
        c("timestamptz[]", #"'{"2026-11-29 10:00:00+00",NULL,infinity}'"#, #"["2026-11-29T10:00:00.000000Z",null,"infinity"]"#, exact: true),
        c("interval[]", "'{P1D,PT1S}'", #"[{"months":0,"days":1,"microseconds":0},{"months":0,"days":0,"microseconds":1000000}]"#, exact: true),
        c("money[]", "'{1.5,NULL}'", #"["$1.50",null]"#),
        c("inet[]", "'{10.0.0.1,::1}'", #"["10.0.0.1","::1"]"#),
        c("point[]", "ARRAY[point '(1,2)', point '(3,4)']", #"["(1,2)","(3,4)"]"#),
        c("box[]", "ARRAY[box '((1,1),(0,0))', box '((2,2),(1,1))']", #"["(1,1),(0,0)","(2,2),(1,1)"]"#),
        c("bit(2)[]", "ARRAY[B'10', B'01']", #"["10","01"]"#),
        c("xml[]", #"ARRAY['<a/>'::xml]"#, #"["<a/>"]"#),
        c("pg_lsn[]", "'{0/1,16/B374D848}'", #"["0/1","16/B374D848"]"#),
        // enums: their label
        c("mood", "'happy'", #""happy""#),
        c("mood", "'very happy'", #""very happy""#),
        c("mood", "'ünï 👋'", #""ünï 👋""#),
        c("mood[]", #"'{sad,"very happy",NULL}'"#, #"["sad","very happy",null]"#),
        // domains: as their base type
        c("posint", "5", "5", exact: true),
        c("deep", "7", "7", exact: true),
        c("price", "9.9", "9.90", exact: true),
        c("email", "'Ada@Example.com'", #""Ada@Example.com""#),
        c("doc", #"'{"a": [1, 2]}'"#, #"{"a": [1, 2]}"#, exact: true),
        c("posint[]", "'{1,2,NULL}'", "[1,2,null]", exact: true),
        c("price[]", "'{1.5,NULL}'", "[1.50,null]", exact: true),
        // composites: objects keyed by attribute, each attribute by its own type
        c("address", """
            ROW('1 Main St', 12345, '{a,"b c"}', '2026-11-29 10:00+00', 12.50, '{"k": [1]}', '(1,2)', 'happy', '1 day 2 hours')
            """,
          #"""
          {"street":"1 Main St","zip":12345,"tags":["a","b c"],"seen":"2026-11-29T10:00:00.000000Z","price":12.50,"meta":{"k": [1]},"pos":"(1,2)","mood":"happy","during":{"months":0,"days":1,"microseconds":7200000000}}
          """#, exact: true),
        c("address", #"ROW(E'quote " backslash \\ comma, paren) 👋 (x)', NULL, '{}', NULL, NULL, NULL, NULL, NULL, NULL)"#,
          #"""
          {"street":"quote \" backslash \\ comma, paren) 👋 (x)","zip":null,"tags":[],"seen":null,"price":null,"meta":null,"pos":null,"mood":null,"during":null}
          """#),
        c("address", "ROW('', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
          #"{"street":"","zip":null,"tags":null,"seen":null,"price":null,"meta":null,"pos":null,"mood":null,"during":null}"#, exact: true),
        c("address", "ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
          #"{"street":null,"zip":null,"tags":null,"seen":null,"price":null,"meta":null,"pos":null,"mood":null,"during":null}"#, exact: true),
        c("person", """
            ROW('Ada', ROW('x', 1, '{"q\\"r"}', NULL, 'NaN', '"s"', NULL, 'very happy', NULL)::address, '{sad,"very happy"}', '{1.5,NULL}')
            """,
          #"""
          {"name":"Ada","home":{"street":"x","zip":1,"tags":["q\"r"],"seen":null,"price":"NaN","meta":"s","pos":null,"mood":"very happy","during":null},"moods":["sad","very happy"],"prices":[1.50,null]}
          """#, exact: true),
        c("address[]", "ARRAY[ROW('a b', 1, NULL, NULL, 0.10, NULL, NULL, 'ok', NULL)::address, NULL]",
          #"""
          [{"street":"a b","zip":1,"tags":null,"seen":null,"price":0.10,"meta":null,"pos":null,"mood":"ok","during":null},null]
          """#, exact: true),
        c("checked_address", "ROW('d', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
          #"{"street":"d","zip":2,"tags":null,"seen":null,"price":null,"meta":null,"pos":null,"mood":null,"during":null}"#, exact: true),
        c("withdrop", "ROW(1, true)", #"{"a":1,"c":true}"#, exact: true),
        c("coords", "ROW(3, -4)", #"{"x":3,"y":-4}"#, exact: true),
        // ranges and multiranges: their text form (see ValueKind.builtin)
        c("int4range", "'[1,10)'", #""[1,10)""#),
        c("int4range", "'(1,10]'", #""[2,11)""#),
        c("int4range", "'empty'", #""empty""#),
        c("int8range", "'(,)'", #""(,)""#),
        c("numrange", "'[1.5,2.5]'", #""[1.5,2.5]""#),
        c("daterange", "'[2026-01-01,2026-02-01)'", #""[2026-01-01,2026-02-01)""#),
        c("tstzrange", "'[2026-01-01,2026-01-02)'", #""[\"2026-01-01 00:00:00+00\",\"2026-01-02 00:00:00+00\")""#),
        c("int4multirange", "'{[1,3),[5,7)}'", #""{[1,3),[5,7)}""#),
        c("int4multirange", "'{}'", #""{}""#),
        c("int4range[]", "ARRAY['[1,2)'::int4range, NULL]", #"["[1,2)",null]"#),
        // extension types: their text form
        c("citext", "'MiXeD Case'", #""MiXeD Case""#),
        c("citext[]", "'{A,b}'", #"["A","b"]"#),
        c("hstore", #"'a=>1, b=>NULL, "c d"=>"e\"f"'"#, #""\"a\"=>\"1\", \"b\"=>NULL, \"c d\"=>\"e\\\"f\"""#),
    ]

    @Test func everyTypeArrivesAsTheContractSays() throws {
        let fixture = try Fixture()
        let db = fixture.database
        for statement in Self.setup {
            do { try db.execute(statement) } catch {
                Issue.record("setup failed: \(statement): \(error) (citext and hstore come with postgresql-15's contrib)")
                throw error
            }
        }
        // One column per distinct type, in order of first use.
        var columns: [String: String] = [:]
        var columnTypes: [String] = []
        for example in Self.cases where columns[example.type] == nil {
            columns[example.type] = "c\(columnTypes.count)"
            columnTypes.append(example.type)
        }
        let definitions = columnTypes.map { "\(columns[$0]!) \($0)" }.joined(separator: ", ")
        try db.execute("CREATE TABLE public.fidelity (id int PRIMARY KEY, \(definitions))")

        let topic = fixture.topic("fidelity")
        let sluice = try fixture.startSluice(config: fixture.config(
            tables: ["public.fidelity"], sinks: [.init(name: "fidelity", topic: topic)]))

        try db.execute("BEGIN")
        for (index, example) in Self.cases.enumerated() {
            let column = columns[example.type]!
            do {
                try db.execute("INSERT INTO public.fidelity (id, \(column)) VALUES ($1, (\(example.sql))::\(example.type))",
                               [String(index)] + (example.parameter.map { [$0] } ?? []))
            } catch {
                Issue.record("case \(index) (\(example)) could not be inserted: \(error)")
                throw error
            }
        }
        try db.execute("COMMIT")

        let messages = try topic.waitForMessages(Self.cases.count)
        try #require(messages.count == Self.cases.count, "log:\n\(sluice.log)")
        var byID: [Int: ConsumedMessage] = [:]
        for message in messages {
            #expect(!message.json.isEmpty, "not valid JSON: \(message.payload)")
            if let id = message.record["id"] as? Int { byID[id] = message }
        }

        var checked = 0
        for (index, example) in Self.cases.enumerated() {
            guard let message = byID[index] else {
                Issue.record("case \(index) (\(example)): no message")
                continue
            }
            let column = columns[example.type]!
            let expected = try JSONSerialization.jsonObject(with: Data(example.json.utf8), options: [.fragmentsAllowed])
            guard let actual = message.record[column] else {
                Issue.record("case \(index) (\(example)): column \(column) missing from \(message.payload)")
                continue
            }
            #expect(canonical(actual) == canonical(expected),
                    "case \(index) (\(example)): got \(excerpt(message.payload, column: column))")
            if example.exact {
                #expect(message.payload.contains("\"\(column)\":\(example.json)"),
                        "case \(index) (\(example)): payload has \(excerpt(message.payload, column: column))")
            }
            // Only this case's column has a value; every other column arrives as null.
            let others = message.record.filter { $0.key != "id" && $0.key != column }
            #expect(others.values.allSatisfy { $0 is NSNull } && others.count == columnTypes.count - 1,
                    "case \(index): other columns \(others)")
            // Control characters never appear raw (json keeps its own whitespace, which JSON allows).
            if example.type != "json" {
                #expect(!message.payload.utf8.contains { $0 < 0x20 }, "case \(index): raw control character in payload")
            }
            checked += 1
        }
        #expect(checked == Self.cases.count)
        #expect(sluice.stop() == 0)
    }

    /// The JSON text of a parsed value with sorted keys, so equal values compare equal.
    private func canonical(_ value: Any) -> String? {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]) else {
            return nil
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The part of the payload that holds `column`, for failure messages.
    private func excerpt(_ payload: String, column: String) -> String {
        guard let range = payload.range(of: "\"\(column)\":") else { return payload }
        let rest = payload[range.lowerBound...]
        let end = rest.range(of: ",\"c")?.lowerBound ?? rest.range(of: "},\"changes\"")?.lowerBound ?? rest.endIndex
        return String(rest[..<end])
    }
}
