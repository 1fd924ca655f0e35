/// Tables the backfill tests read: one per kind of primary key, and one with a column of many types.
enum BackfillTables {
    /// A primary key of each kind, each (but the enum) with more rows than the first page (1,000),
    /// so that the keyset cursor of that type is written and read back between pages.
    static let keyKinds = [
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'very happy', 'ünï 👋')",
        "CREATE TABLE public.by_pair (a int, b text, v int NOT NULL, PRIMARY KEY (a, b))",
        """
        INSERT INTO public.by_pair SELECT a, 'k' || lpad(b::text, 2, '0') || CASE WHEN b % 7 = 0 THEN ' ü:x' ELSE '' END, a * b
        FROM generate_series(1, 30) a, generate_series(1, 50) b
        """,
        "CREATE TABLE public.by_text (code text PRIMARY KEY, v int NOT NULL)",
        """
        INSERT INTO public.by_text SELECT 'code ' || g || CASE g % 4 WHEN 0 THEN ' Ä' WHEN 1 THEN ' ''q''' WHEN 2 THEN ' 👋' ELSE '' END, g
        FROM generate_series(1, 1500) g
        """,
        "CREATE TABLE public.by_uuid (id uuid PRIMARY KEY, v int NOT NULL)",
        "INSERT INTO public.by_uuid SELECT gen_random_uuid(), g FROM generate_series(1, 1500) g",
        "CREATE TABLE public.by_mood (m mood PRIMARY KEY, v int NOT NULL)",
        "INSERT INTO public.by_mood SELECT m, row_number() OVER () FROM unnest(enum_range(NULL::mood)) m",
    ]

    /// The key columns of each `keyKinds` table, in key order.
    static let keyColumns = [
        "public.by_pair": ["a", "b"], "public.by_text": ["code"], "public.by_uuid": ["id"], "public.by_mood": ["m"],
    ]

    /// A table with a column of many types; `rows` are the rows inserted into it (typical, extreme, NULL).
    static let manyTypes = [
        "CREATE TYPE colour AS ENUM ('red', 'green', 'blue')",
        "CREATE TYPE pair AS (x int, label text, at timestamptz)",
        """
        CREATE TABLE public.kinds (
          id int8 PRIMARY KEY, amount numeric(12,3), exact numeric, big int8, small int2, ratio float8, tiny float4,
          flag bool, doc jsonb, raw json, tags text[], grid int[], nums numeric[], colours colour[], docs jsonb[],
          at timestamptz, local_at timestamp, day date, clock time, clock_tz timetz, span interval, uid uuid,
          blob bytea, c colour, p pair, note text, code varchar(10), fixed char(5), addr inet, net cidr,
          mac macaddr, bits bit(4), vbits varbit, pt point, rng int4range, during tstzrange, money_col money, big_text text)
        """,
        // REPLICA IDENTITY FULL does not change an insert; it is there so a user's usual setting is covered.
        "ALTER TABLE public.kinds REPLICA IDENTITY FULL",
        // Unusual database defaults: sluice's own session settings must win for both paths alike.
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'America/New_York'); END $$",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET datestyle = %L', current_database(), 'SQL, DMY'); END $$",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET intervalstyle = %L', current_database(), 'postgres_verbose'); END $$",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET extra_float_digits = %L', current_database(), '0'); END $$",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET bytea_output = %L', current_database(), 'escape'); END $$",
    ]

    static let manyTypeRows = [
        """
        INSERT INTO public.kinds VALUES (1, 19.990, 123456789012345678901234567890.000000000000000000001, 9007199254740993, -32768,
          0.1, 1.1, true, '{"a": [1, 2.50, {"b": null}], "é": "ü \\" \\\\ 👋", "big": 12345678901234567890}',
          '{"keep":  "spacing",  "dup": 1, "dup": 2}', ARRAY['a', 'b,c', 'd"e', NULL, 'ü 👋', ''], '{{1,2},{3,NULL}}',
          ARRAY[1.50, -0.001, 'NaN']::numeric[], ARRAY['red', 'blue']::colour[], ARRAY['{"x": 1}', '[]']::jsonb[],
          '2026-01-02 03:04:05.123456+00', '2026-01-02 03:04:05.000001', '2026-01-02', '23:59:59.999999', '12:00:00+05:30',
          '1 year 2 mons 3 days 04:05:06.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10deadbeef', 'green',
          ROW(7, 'lab,el "q"', '2026-05-06 07:08:09+02'), E'line\\nnext\\ttab \\\\ "quoted" ü 👋 \\u2028', 'short', 'ab',
          '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', B'110', '(1.5,-2)', '[1,10)',
          '[2026-01-01 00:00:00+00,2026-02-01 00:00:00+00)', 12.34, repeat(md5('x'), 400))
        """,
        """
        INSERT INTO public.kinds VALUES (2, -999999999.999, 'NaN', -9223372036854775808, 32767, 'Infinity', '-Infinity',
          false, '[]', '{}', '{}', '{}', '{}', '{}', '{}', 'infinity', '-infinity', '0001-01-01 BC', '00:00', '00:00:00-12',
          '-1 year -2 mons +3 days -04:05:06', '00000000-0000-0000-0000-000000000000', '\\x', 'red', ROW(NULL, '', NULL),
          '', '', '', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', B'0000', B'', '(0,0)', 'empty', '(,)', -0.01, '')
        """,
        """
        INSERT INTO public.kinds (id) VALUES (3)
        """,
    ]
}
