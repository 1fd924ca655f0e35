"""The backlog workload: a deterministic mix of inserts, updates and deletes on public.bench.

Rows are ~250 bytes (text, numeric, integer, timestamptz, jsonb); transactions hold 1-1,000
changes (log-uniform sizes, so most are small and most changes are in large ones). Inserts append
ids, deletes remove the oldest live ids, updates touch a random run of live ids, so every statement
affects exactly the number of rows it was given and the total is exact.
"""
import math
import random

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS public.bench (
    id         bigint PRIMARY KEY,
    customer   text        NOT NULL,
    amount     numeric(12,2) NOT NULL,
    quantity   integer     NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    attrs      jsonb       NOT NULL,
    note       text        NOT NULL
)
"""

# One row, computed on the server from its id (g) and a revision number (r).
ROW_SQL = """
    g,
    'customer-' || lpad(g::text, 12, '0'),
    ((g * 7919) %% 1000000) / 100.0 + %(r)s,
    (g %% 1000)::int + %(r)s,
    now(),
    NULL,
    jsonb_build_object('tier', (ARRAY['gold','silver','bronze'])[1 + g %% 3],
                       'tags', jsonb_build_array('a', 'b', g %% 7), 'score', g %% 97, 'rev', %(r)s),
    repeat(md5((g + %(r)s)::text), 2)
"""

INSERT_SQL = "INSERT INTO public.bench SELECT " + ROW_SQL + " FROM generate_series(%(a)s::bigint, %(b)s::bigint) AS g"
UPDATE_SQL = """UPDATE public.bench SET amount = amount + 1, quantity = quantity + 1, updated_at = now(),
    attrs = jsonb_set(attrs, '{rev}', to_jsonb(%(r)s)), note = repeat(md5((id + %(r)s)::text), 2)
    WHERE id BETWEEN %(a)s AND %(b)s"""
DELETE_SQL = "DELETE FROM public.bench WHERE id BETWEEN %(a)s AND %(b)s"

WEIGHTS = (("insert", 0.50), ("update", 0.35), ("delete", 0.15))


def transaction_sizes(total, rng, smallest=1, largest=1000):
    """Log-uniform sizes in [smallest, largest] adding up to exactly `total`."""
    left = total
    while left > 0:
        size = int(round(math.exp(rng.uniform(math.log(smallest), math.log(largest + 0.999)))))
        size = max(smallest, min(largest, size, left))
        left -= size
        yield size


def write(conn, total, seed=5, start_id=None):
    """Writes `total` changes; returns counts per action and the number of transactions."""
    rng = random.Random(seed)
    cur = conn.cursor()
    cur.execute("SET synchronous_commit = off")  # the writer's speed is not what is measured
    conn.commit()
    if start_id is None:
        cur.execute("SELECT coalesce(min(id), 1), coalesce(max(id), 0) + 1 FROM public.bench")
        lo, hi = cur.fetchone()
        conn.commit()
    else:
        lo = hi = start_id
    counts = {"insert": 0, "update": 0, "delete": 0}
    transactions = 0
    revision = 0
    for size in transaction_sizes(total, rng):
        revision += 1
        # Split the transaction into inserts, updates and deletes.
        parts = {"insert": 0, "update": 0, "delete": 0}
        for _ in range(size):
            x = rng.random()
            acc = 0.0
            for action, weight in WEIGHTS:
                acc += weight
                if x < acc:
                    parts[action] += 1
                    break
            else:
                parts["insert"] += 1
        live = hi - lo
        # Never touch more rows than exist; what cannot be updated/deleted becomes an insert.
        if parts["update"] > live:
            parts["insert"] += parts["update"]
            parts["update"] = 0
        if parts["delete"] > live:
            parts["insert"] += parts["delete"]
            parts["delete"] = 0
        if parts["insert"]:
            n = parts["insert"]
            cur.execute(INSERT_SQL, {"a": hi, "b": hi + n - 1, "r": revision})
            hi += n
        if parts["update"]:
            n = parts["update"]
            start = rng.randint(lo, hi - n)
            cur.execute(UPDATE_SQL, {"a": start, "b": start + n - 1, "r": revision})
            assert cur.rowcount == n, (cur.rowcount, n)
        if parts["delete"]:
            n = parts["delete"]
            cur.execute(DELETE_SQL, {"a": lo, "b": lo + n - 1})
            assert cur.rowcount == n, (cur.rowcount, n)
            lo += n
        conn.commit()
        transactions += 1
        for action in counts:
            counts[action] += parts[action]
    assert sum(counts.values()) == total, (counts, total)
    return counts, transactions


def write_single_transaction(conn, rows, start_id):
    """One transaction inserting `rows` rows with ids from `start_id`."""
    cur = conn.cursor()
    cur.execute("SET synchronous_commit = off")
    cur.execute(INSERT_SQL, {"a": start_id, "b": start_id + rows - 1, "r": 0})
    assert cur.rowcount == rows
    conn.commit()
