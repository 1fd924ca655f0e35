"""Backfill: a table of the workload's rows, read by `COPY ... ORDER BY id TO STDOUT` (the database's own
export rate) and by a sluice backfill started and polled through the console API with the stream idle;
then the stream's rate (parallel writers replaying the workload) with and without a backfill running.
"""
import datetime
import json
import multiprocessing
import os
import statistics
import subprocess
import time

import psycopg2

import workload
from common import (Broker, children_cpu, confirmed_flush, console_request, cpu_share, current_lsn, drop_slot, free_port, log,
                    log_problems, machine_cpu, median, proc_sample, sql_one, stop_process, tail)
from runners import start_sluice


BACKFILL_TABLE = "public.bench_backfill"
BACKFILL_PUBLICATION = "bench_backfill"  # public.bench (the stream's table) + public.bench_backfill
COPY_SQL = f"COPY (SELECT * FROM {BACKFILL_TABLE} ORDER BY id) TO STDOUT"


def api(port, token, method, path, body=None, timeout=10):
    """One request to sluice's console API; (HTTP status, parsed JSON or None)."""
    status, raw = console_request(port, token, method, f"/api/{path}", body, timeout)
    if status is None:
        return None, None
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        if 200 <= status < 300:
            raise
        return status, None


def api_time(text):
    """sluice's API timestamps: ISO 8601 UTC with milliseconds (2026-12-01T22:54:11.430Z)."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def fill_backfill_table(env, conn, rows):
    """public.bench_backfill: `rows` rows like the workload's (same columns, same generator), ids 1..rows,
    vacuumed and analysed so that neither COPY nor the backfill pays for setting hint bits."""
    ddl = workload.TABLE_DDL.replace("public.bench (", f"{BACKFILL_TABLE} (")
    assert ddl != workload.TABLE_DDL
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {BACKFILL_TABLE}")
        cur.execute(ddl)
    insert = f"INSERT INTO {BACKFILL_TABLE} SELECT " + workload.ROW_SQL + \
             " FROM generate_series(%(a)s::bigint, %(b)s::bigint) AS g"
    writer = env.connect(autocommit=False)
    with writer.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        for a in range(1, rows + 1, 100_000):
            cur.execute(insert, {"a": a, "b": min(rows, a + 99_999), "r": 0})
            writer.commit()
    writer.close()
    with conn.cursor() as cur:
        cur.execute(f"VACUUM (ANALYZE) {BACKFILL_TABLE}")
    count = sql_one(conn, f"SELECT count(*) FROM {BACKFILL_TABLE}")
    assert count == rows, (count, rows)
    return {
        "rows": rows,
        "row_bytes": float(sql_one(conn, f"SELECT avg(pg_column_size(b.*)) FROM "
                                         f"(SELECT * FROM {BACKFILL_TABLE} LIMIT 10000) b")),
        "table_bytes": sql_one(conn, f"SELECT pg_table_size('{BACKFILL_TABLE}')"),
    }


def run_copy(env, conn, runs):
    """The database's own export rate: `psql -c "COPY (SELECT * FROM t ORDER BY id) TO STDOUT"` into
    /dev/null, one unmeasured warm-up run, then `runs` timed ones."""
    psql = os.path.join(env.pg_bin, "psql")
    cmd = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", env.pg_port, "-U", "postgres",
           "-d", "postgres", "-c", COPY_SQL]
    plan = sql_one(conn, f"EXPLAIN (FORMAT JSON) SELECT * FROM {BACKFILL_TABLE} ORDER BY id")
    plan = plan[0]["Plan"] if isinstance(plan, list) else json.loads(plan)[0]["Plan"]
    node = plan["Node Type"] + (f" ({plan['Plans'][0]['Node Type']})" if plan.get("Plans") else "")
    seconds, cpus = [], []
    for i in range(runs + 1):
        cpu0 = children_cpu()
        t0 = time.monotonic()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=600)
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"psql COPY failed: {proc.stderr.strip()[-2000:]}")
        if i > 0:
            seconds.append(elapsed)
            cpus.append(children_cpu() - cpu0)
    return {"seconds": seconds, "psql_cpu_seconds": cpus, "plan": node}


class BackfillSluice:
    """sluice with the console API on a free port, streaming `public.bench` and `public.bench_backfill`
    from a fresh slot into a fresh topic of the broker given."""

    def __init__(self, env, conn, broker, args, label):
        self.env, self.conn, self.label = env, conn, label
        self.slot = label
        self.topic = f"bench_{label}_{env.run_id}"
        self.port = free_port()
        self.token = "bench-" + os.urandom(8).hex()
        self.kafka = broker.kafka
        self.kafka.create_topic(self.topic, args.partitions)
        self.proc, self.log = start_sluice(env, self.slot, self.topic, label, publication=BACKFILL_PUBLICATION,
                                           tables=("public.bench", BACKFILL_TABLE), console=(self.port, self.token))
        self.samples = []  # (t, rss_kb, cpu_s)
        self.hwm = 0

    def sample(self, t0):
        s = proc_sample(self.proc.pid)
        if s is not None:
            self.samples.append((time.monotonic() - t0, s[0], s[2]))
            self.hwm = max(self.hwm, s[1])
        return s

    def wait_ready(self, timeout=60):
        """Until sluice streams from its slot and its API answers (503 while the pipeline starts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label}: sluice exited with status {self.proc.returncode}: "
                                   + " / ".join(tail(self.log, 5)))
            active = sql_one(self.conn, "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
            if active and self.api("GET", "backfills")[0] == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.label}: sluice did not get ready within {timeout} s: " + " / ".join(tail(self.log, 5)))

    def api(self, method, path, body=None):
        return api(self.port, self.token, method, path, body)

    def start_backfill(self):
        status, body = self.api("POST", "sinks/bench/backfills", {"tables": [BACKFILL_TABLE]})
        if status != 201 or not isinstance(body, dict) or "id" not in body:
            raise RuntimeError(f"{self.label}: POST /api/sinks/bench/backfills answered {status}: {body}")
        return body

    def backfill(self, backfill_id):
        status, body = self.api("GET", f"backfills/{backfill_id}")
        return body if status == 200 and isinstance(body, dict) else None

    def stop(self):
        s = proc_sample(self.proc.pid)
        if s is not None:
            self.hwm = max(self.hwm, s[1])
        rc = stop_process(self.proc)
        drop_slot(self.conn, self.slot)
        problems, count = log_problems(self.log)
        return {"exit_status": rc, "log": self.log, "log_problems": problems, "log_problem_count": count,
                "peak_rss_kb": self.hwm}


def wait_backfill(sl, backfill_id, t0, timeout, interval=0.1):
    """Polls GET /api/backfills/{id} (and sluice's RSS/CPU) until the backfill ends; (record, seconds since t0)."""
    record = None
    while time.monotonic() - t0 < timeout:
        sl.sample(t0)
        if sl.proc.poll() is not None:
            return record, None
        current = sl.backfill(backfill_id)
        if current is not None:
            record = current
            if current["state"] != "active":
                return record, time.monotonic() - t0
        time.sleep(interval)
    return record, None


def backfill_result(label, record, seconds, rows):
    """The common part of a backfill's result: client and server timings, rows/s, state."""
    result = {"label": label, "backfill": record, "seconds": seconds, "failure": None,
              "server_seconds": None, "rows_per_second": None}
    if record and record.get("completed_at"):
        result["server_seconds"] = api_time(record["completed_at"]) - api_time(record["inserted_at"])
    if record is None or seconds is None:
        result["failure"] = f"the backfill did not end: last seen {record}"
    elif record["state"] != "completed":
        result["failure"] = f"the backfill ended {record['state']}: {record.get('last_error')}"
    elif record["rows_ingested_count"] != rows or record["rows_processed_count"] != rows:
        result["failure"] = (f"the backfill read {record['rows_processed_count']:,} and sent "
                             f"{record['rows_ingested_count']:,} rows, expected {rows:,}")
    else:
        result["rows_per_second"] = rows / seconds
    return result


def backfill_idle(env, conn, args, rows):
    """A backfill of the whole table with the stream idle, timed from the POST until GET says completed
    (the cursor is saved, and the state set, only after a page's messages are acknowledged)."""
    label = "backfill_idle"
    with Broker(env) as broker:
        sl = BackfillSluice(env, conn, broker, args, label)
        try:
            sl.wait_ready()
            time.sleep(1.0)  # let start-up settle (first heartbeat, metadata)
            t0 = time.monotonic()
            s0 = sl.sample(t0)
            broker_cpu0 = broker.cpu_seconds()
            machine0 = machine_cpu()
            started = sl.start_backfill()
            record, seconds = wait_backfill(sl, started["id"], t0, timeout=max(180.0, rows / 2000))
            s1 = sl.sample(t0)
            busy, _ = cpu_share(machine0, machine_cpu())
            broker_cpu = broker.cpu_seconds() - broker_cpu0
            stored = sl.kafka.end_offsets(sl.topic)
        finally:
            stopped = sl.stop()
    result = backfill_result(label, record, seconds, rows)
    result.update(stopped)
    result.update({"messages_on_broker": stored, "broker_cpu_seconds": broker_cpu, "machine_busy": busy,
                   "cpu_seconds": (s1[2] - s0[2]) if s0 and s1 else None})
    window = [x for x in sl.samples if seconds and 0.2 * seconds <= x[0] <= 0.8 * seconds]
    result["steady_rss_kb"] = int(statistics.median([x[1] for x in window])) if window else None
    if not result["failure"] and stored != rows:
        result["failure"] = f"{stored:,} messages on the broker, expected {rows:,}"
    if result["failure"]:
        result["log_tail"] = tail(sl.log)
        log(f"{label}: FAILED: {result['failure']}")
    else:
        log(f"backfill, stream idle: {rows:,} rows in {seconds:.2f} s (sluice's own timestamps: "
            f"{result['server_seconds']:.2f} s) = {result['rows_per_second']:,.0f} rows/s, sluice CPU "
            f"{result['cpu_seconds']:.1f} s, peak RSS {result['peak_rss_kb'] / 1024:.0f} MB")
    return result


def stream_writer(pg_url, changes, seed, start_id, out):
    """One writer of the stream runs: the bench workload in its own id range, as fast as it can."""
    conn = psycopg2.connect(pg_url, application_name="sluice-bench-writer")
    conn.autocommit = False
    counts, transactions = workload.write(conn, changes, seed=seed, start_id=start_id)
    conn.close()
    out.put((counts, transactions))


def write_parallel(env, conn, total, writers, seed):
    """`total` changes of the bench workload from `writers` processes at once (disjoint id ranges);
    returns (counts, transactions)."""
    base = (sql_one(conn, "SELECT coalesce(max(id), 0) FROM public.bench") or 0) + 20_000_000
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    shares = [total // writers + (1 if i < total % writers else 0) for i in range(writers)]
    procs = [ctx.Process(target=stream_writer, args=(env.pg_url, n, seed + i, base + i * 10_000_000, out))
             for i, n in enumerate(shares) if n > 0]
    for p in procs:
        p.start()
    reports = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a stream writer exited with status {p.exitcode}")
    counts = {a: sum(c[a] for c, _ in reports) for a in ("insert", "update", "delete")}
    return counts, sum(t for _, t in reports)


def stream_run(env, conn, args, rows, with_backfill, seed=11):
    """The stream's rate with or without a concurrent backfill: sluice streams (idle), [a backfill of
    public.bench_backfill is started and has finished its first page], then `--backfill-writers`
    writers replay the bench workload (`--backfill-changes` changes on public.bench in all) as fast as
    they can; timed from the writers' start until the slot's confirmed_flush_lsn passes their end
    (every change acked). A backlog written beforehand would not do: the backfill's watermarks would
    land behind it in the WAL, so the backfill would only start once the backlog was through."""
    label = "stream_with_backfill" if with_backfill else "stream_alone"
    k = args.backfill_changes
    bf_start = bf_at_writer = bf_at_confirm = bf_end = None
    t_confirm = t_bf = None
    failure = None
    with Broker(env) as broker:
        sl = BackfillSluice(env, conn, broker, args, label)
        try:
            sl.wait_ready()
            time.sleep(1.0)
            t0 = time.monotonic()
            if with_backfill:
                bf_start = sl.start_backfill()
                while time.monotonic() - t0 < 60:  # past the first page: the backfill is in its stride
                    current = sl.backfill(bf_start["id"])
                    if current and (current["rows_processed_count"] > 0 or current["state"] != "active"):
                        break
                    time.sleep(0.05)
                bf_at_writer = sl.backfill(bf_start["id"])
            tw = time.monotonic()
            s0 = sl.sample(t0)
            machine0 = machine_cpu()
            counts, transactions = write_parallel(env, conn, k, args.backfill_writers, seed)
            writer_seconds = time.monotonic() - tw
            end_lsn = current_lsn(conn)
            timeout = max(120.0, k / 1000)
            while True:
                sl.sample(t0)
                if confirmed_flush(conn, sl.slot) >= end_lsn:
                    t_confirm = time.monotonic() - tw
                    break
                if sl.proc.poll() is not None:
                    failure = f"sluice exited with status {sl.proc.returncode}"
                    break
                if time.monotonic() - tw > timeout:
                    failure = f"timed out after {timeout:.0f} s: the slot did not pass the writer's end"
                    break
                time.sleep(0.05)
            s1 = sl.sample(t0)
            busy, _ = cpu_share(machine0, machine_cpu())
            if with_backfill:
                bf_at_confirm = sl.backfill(bf_start["id"])
                bf_end, t_bf = wait_backfill(sl, bf_start["id"], t0, timeout=max(180.0, rows / 1000))
            stored = sl.kafka.end_offsets(sl.topic)
        finally:
            stopped = sl.stop()
    expected = k + (rows if with_backfill else 0)
    result = {"label": label, "with_backfill": with_backfill, "changes": k, "counts": counts,
              "writers": args.backfill_writers,
              # sluice confirmed the end less than a second after the writers finished: it kept up with
              # them, so the rate is the writers' (a lower bound of what sluice can do), not sluice's.
              "writer_bound": bool(t_confirm is not None and t_confirm - writer_seconds < 1.0),
              "transactions": transactions, "writer_seconds": writer_seconds, "seconds": t_confirm,
              "changes_per_second": k / t_confirm if t_confirm and not failure else None,
              "cpu_seconds": (s1[2] - s0[2]) if s0 and s1 else None, "machine_busy": busy,
              "messages_on_broker": stored, "expected": expected, "failure": failure,
              "backfill_at_writer": bf_at_writer, "backfill_at_confirm": bf_at_confirm}
    result.update(stopped)
    if with_backfill:
        result["backfill_run"] = backfill_result("backfill during the stream run", bf_end, t_bf, rows)
        bf_failure = result["backfill_run"]["failure"]
        if bf_failure and not failure:
            result["failure"] = failure = bf_failure
        # Was the backfill still running when the stream caught up? (Else the overlap was partial.)
        result["overlap_complete"] = bool(bf_at_writer and bf_at_writer["state"] == "active" and bf_at_confirm
                                          and bf_at_confirm["state"] == "active")
        if bf_at_writer and bf_at_confirm:
            result["backfill_rows_during"] = (bf_at_confirm["rows_processed_count"]
                                              - bf_at_writer["rows_processed_count"])
    if not failure and stored != expected:
        result["failure"] = failure = f"{stored:,} messages on the broker, expected {expected:,}"
    if failure:
        result["log_tail"] = tail(sl.log)
        log(f"{label}: FAILED: {failure}")
    else:
        extra = ""
        if with_backfill:
            extra = (f"; the backfill sent {result.get('backfill_rows_during', 0):,} rows meanwhile"
                     + ("" if result["overlap_complete"] else " (it was not active all the time)"))
        log(f"{label}: {k:,} changes written in {writer_seconds:.2f} s, confirmed after {t_confirm:.2f} s = "
            f"{result['changes_per_second']:,.0f} changes/s{extra}")
    return result


def backfill(env, conn, args):
    rows = args.backfill_rows
    log(f"backfill: creating {BACKFILL_TABLE} with {rows:,} rows")
    t0 = time.monotonic()
    results = fill_backfill_table(env, conn, rows)
    results["fill_seconds"] = time.monotonic() - t0
    with conn.cursor() as cur:
        cur.execute(f"DROP PUBLICATION IF EXISTS {BACKFILL_PUBLICATION}")
        cur.execute(f"CREATE PUBLICATION {BACKFILL_PUBLICATION} FOR TABLE public.bench, {BACKFILL_TABLE}")
    copy = run_copy(env, conn, args.copy_runs)
    results["copy"] = copy
    copy_rate = rows / median(copy["seconds"])
    log(f"backfill: COPY ... ORDER BY id TO STDOUT ({copy['plan']}): "
        f"{', '.join(f'{x:.2f}' for x in copy['seconds'])} s = {copy_rate:,.0f} rows/s (median)")
    results["idle"] = backfill_idle(env, conn, args, rows)
    if args.backfill_changes > 0:
        results["stream_alone"] = stream_run(env, conn, args, rows, with_backfill=False)
        results["stream_with_backfill"] = stream_run(env, conn, args, rows, with_backfill=True)
    return results


def backfill_runs(bf):
    """The sluice runs of the backfill part (for failures and log problems)."""
    return [r for r in ((bf or {}).get(k) for k in ("idle", "stream_alone", "stream_with_backfill")) if r]
