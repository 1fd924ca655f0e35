"""Latency: writers commit at a steady rate while a consumer measures commit → receipt, for sluice and
for two floors, a bare pgoutput client (what PostgreSQL alone takes) and a bare librdkafka producer with
sluice's settings (what the broker and consumer alone take). The writers, producer and consumers run in
forked processes; the percentiles are computed here.
"""
import datetime
import json
import multiprocessing
import os
import queue
import re
import select
import statistics
import time

import psycopg2
from confluent_kafka import Consumer, TopicPartition, KafkaError

import workload
from common import (PUBLICATION, Broker, console_request, cpu_share, drop_slot, fmt_ms, free_port, log, log_problems,
                    machine_cpu, padded_message, proc_sample, sql_one, stop_process, tail)
from runners import start_sluice


def paced(rate, seconds, batch, wait):
    """Yields (index, due) for `rate * seconds / batch` batches at a steady pace; `wait(s)` sleeps."""
    interval = batch / rate
    total = int(round(rate * seconds / batch))
    t0 = time.monotonic()
    for i in range(total):
        due = t0 + i * interval
        left = due - time.monotonic()
        while left > 0:
            wait(left)
            left = due - time.monotonic()
        yield i, due


def latency_writer(pg_url, rate, seconds, start_id, rows_per_txn, out):
    """Commits transactions of `rows_per_txn` inserts at a steady pace; reports what it wrote."""
    conn = psycopg2.connect(pg_url, application_name="sluice-bench-writer")
    cur = conn.cursor()
    next_id = start_id
    late = 0
    t0 = time.monotonic()
    for i, due in paced(rate, seconds, rows_per_txn, time.sleep):
        if time.monotonic() - due > 0.05:
            late += 1
        cur.execute(workload.INSERT_SQL, {"a": next_id, "b": next_id + rows_per_txn - 1, "r": i})
        conn.commit()
        next_id += rows_per_txn
    out.put({"rows": next_id - start_id, "seconds": time.monotonic() - t0, "late": late})
    conn.close()


def floor_producer(hosts, topic, rate, seconds, per_batch, message_bytes, measure_from, out):
    """The latency floor: a librdkafka producer with sluice's settings, no PostgreSQL. Each batch of
    `per_batch` messages carries its hand-over time as metadata.commit_timestamp, in sluice's format."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": hosts, "enable.idempotence": True, "acks": "all",
                         "enable.gapless.guarantee": True, "max.in.flight.requests.per.connection": 1,
                         "partitioner": "murmur2_random", "linger.ms": 5, "batch.num.messages": 1000})
    acks = []

    def acked(sent):
        def callback(err, msg):
            if err is None and sent >= measure_from.value:
                acks.append((time.time() - sent) * 1000.0)
        return callback

    n = 0
    t0 = time.monotonic()
    for i, due in paced(rate, seconds, per_batch, lambda s: producer.poll(s)):
        sent = time.time()
        stamp = datetime.datetime.fromtimestamp(sent, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        callback = acked(sent)
        for _ in range(per_batch):
            value = padded_message(n, message_bytes, '"table_schema":"public","table_name":"bench",'
                                   '"commit_timestamp":"%s","commit_lsn":%d,"commit_idx":0' % (stamp, n)).encode()
            producer.produce(topic, key=str(n).encode(), value=value, on_delivery=callback)
            n += 1
        producer.poll(0)
    producer.flush(60)
    out.put({"rows": n, "seconds": time.monotonic() - t0, "late": 0, "acks": sorted(acks)})


def commit_to_ack_histogram(port, token):
    """sluice's `sluice_commit_to_ack_seconds` histogram from its /metrics: {upper bound s: cumulative count}
    summed over sinks, with the total count under "count"; None if it did not answer."""
    status, raw = console_request(port, token, "GET", "/metrics", timeout=5)
    if status != 200:
        return None
    text = raw.decode()
    buckets = {}
    count = 0
    for line in text.splitlines():
        m = re.match(r'^sluice_commit_to_ack_seconds_bucket\{(.*)\}\s+([0-9.eE+]+)$', line)
        if m:
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0) + float(m.group(2))
        m = re.match(r'^sluice_commit_to_ack_seconds_count(\{.*\})?\s+([0-9.eE+]+)$', line)
        if m:
            count += float(m.group(2))
    return {"buckets": buckets, "count": count}


def wait_acks_settled(console, before, timeout=30):
    """The histogram once its count stops moving (every message of the run acknowledged)."""
    last, still = None, 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = commit_to_ack_histogram(*console)
        if now and last and now["count"] == last["count"]:
            still += 1
            if still >= 3:
                return now
        else:
            still = 0
        last = now
        time.sleep(0.3)
    return last


def histogram_quantiles(before, after, prefix):
    """p50/p99/p99.9 (ms) of the observations between two scrapes of a cumulative histogram, by linear
    interpolation within the bucket (so only as fine as the buckets: 10, 15, 25, 50, 100 ms …), and the
    share of them at or below 25 ms (a bucket bound, so exact)."""
    if not before or not after:
        return {f"{prefix}count": None}
    bounds = sorted(after["buckets"])
    cumulative = [after["buckets"][b] - before["buckets"].get(b, 0) for b in bounds]
    total = cumulative[-1] if cumulative else 0
    result = {f"{prefix}count": int(total)}
    if total <= 0:
        return result
    for name, q in (("p50", 0.50), ("p99", 0.99), ("p999", 0.999)):
        target = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in zip(bounds, cumulative):
            if count >= target:
                if bound == float("inf"):
                    value = lower_bound
                else:
                    share = (target - lower_count) / (count - lower_count) if count > lower_count else 1.0
                    value = lower_bound + share * (bound - lower_bound)
                result[f"{prefix}{name}_ms"] = value * 1000.0
                break
            lower_bound, lower_count = bound, count
    at_25 = dict(zip(bounds, cumulative)).get(0.025)
    result[f"{prefix}within_25ms"] = at_25 / total if at_25 is not None else None
    return result


PG_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc).timestamp()


def replication_consumer(dsn, slot, measure_from, stop_at_count, ready, out, max_seconds):
    """The PostgreSQL floor: a bare pgoutput client (psycopg2) on its own slot. Latency of a change =
    its receipt minus its transaction's commit time (from the Begin message)."""
    from psycopg2.extras import LogicalReplicationConnection
    conn = psycopg2.connect(dsn, connection_factory=LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=slot, decode=False,
                          options={"proto_version": "1", "publication_names": PUBLICATION})
    ready.set()
    commit = None
    received = skipped = 0
    target = None
    fed = time.monotonic()
    latencies = []
    commits = []
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        if target is None and not stop_at_count.empty():
            target = stop_at_count.get()
        if target is not None and received >= target:
            break
        msg = cur.read_message()
        if msg is None:
            select.select([cur], [], [], 0.05)
            continue
        payload = msg.payload
        kind = payload[0]
        if kind == 0x42:  # Begin: final LSN, commit timestamp (µs since 2000-01-01), xid
            commit = PG_EPOCH + int.from_bytes(payload[9:17], "big", signed=True) / 1e6
        elif kind in (0x49, 0x55, 0x44):  # Insert, Update, Delete
            now = time.time()
            received += 1
            if commit >= measure_from.value:
                latencies.append((now - commit) * 1000.0)
                commits.append(commit)
            else:
                skipped += 1
        if time.monotonic() - fed > 1:
            cur.send_feedback(flush_lsn=msg.data_start)
            fed = time.monotonic()
    conn.close()
    out.put({"received": received, "latencies": latencies, "commits": commits, "warmup_messages": skipped,
             "errors": 0, "mean_bytes": None})


def latency_consumer(hosts, topic, partitions, measure_from, stop_at_count, ready, out, max_seconds):
    """Reads the topic from the beginning; latency = receipt time - metadata.commit_timestamp."""
    consumer = Consumer({"bootstrap.servers": hosts, "group.id": f"bench-{topic}", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 10, "fetch.min.bytes": 1})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    ready.set()
    marker = b'"commit_timestamp":"'
    parse_cache = {}
    latencies = []
    commits = []
    received = skipped = errors = value_bytes = 0
    deadline = time.monotonic() + max_seconds
    target = None
    while time.monotonic() < deadline:
        if target is None and not stop_at_count.empty():
            target = stop_at_count.get()
        if target is not None and received >= target:
            break
        batch = consumer.consume(num_messages=2000, timeout=0.05)
        now = time.time()
        for msg in batch:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    errors += 1
                continue
            value = msg.value()
            i = value.find(marker)
            if i < 0:
                continue
            ts = value[i + len(marker):i + len(marker) + 26]
            commit = parse_cache.get(ts)
            if commit is None:
                commit = datetime.datetime.fromisoformat(ts.decode() + "+00:00").timestamp()
                parse_cache[ts] = commit
            received += 1
            value_bytes += len(value)
            if commit >= measure_from.value:
                latencies.append((now - commit) * 1000.0)
                commits.append(commit)
            else:
                skipped += 1
    consumer.close()
    out.put({"received": received, "latencies": latencies, "commits": commits, "warmup_messages": skipped, "errors": errors,
             "mean_bytes": value_bytes / received if received else None})


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def distribution(sorted_values, prefix=""):
    return {f"{prefix}p50_ms": percentile(sorted_values, 50), f"{prefix}p99_ms": percentile(sorted_values, 99),
            f"{prefix}p999_ms": percentile(sorted_values, 99.9),
            f"{prefix}mean_ms": statistics.fmean(sorted_values) if sorted_values else None,
            f"{prefix}max_ms": sorted_values[-1] if sorted_values else None}


KINDS = {
    "sluice": "**sluice**: commit → consumer receipt",
    "sluice_eo": "**sluice, exactly-once**: commit → `read_committed` consumer receipt",
    "pg_floor": "floor, PostgreSQL: commit → pgoutput client receipt",
    "kafka_floor": "floor, Kafka: producer hand-over → consumer receipt",
}


# Runs of sluice itself (at-least-once and exactly-once), as against the floors.
SLUICE_KINDS = ("sluice", "sluice_eo")


def latency_at(env, conn, rate, args, kind="sluice", message_bytes=600):
    broker = Broker(env) if kind != "pg_floor" else None
    try:
        return _latency_at(env, broker.kafka if broker else None, conn, rate, args, kind, message_bytes)
    finally:
        if broker:
            broker.stop()


def _latency_at(env, kafka, conn, rate, args, kind, message_bytes):
    """One latency run at `rate` changes/s: sluice; the PostgreSQL floor (a bare pgoutput client on
    the same writer); or the Kafka floor (a bare producer with sluice's settings, no PostgreSQL)."""
    topic = f"bench_lat_{kind}_{rate}_{env.run_id}"
    proc = logpath = None
    slot = f"lat_{kind}_{rate}"
    if kind != "pg_floor":
        kafka.create_topic(topic, args.partitions)
    if kind != "kafka_floor":
        sql_one(conn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    console = None
    if kind in SLUICE_KINDS:
        console = (free_port(), "bench-latency-token")
        proc, logpath = start_sluice(env, slot, topic, f"latency_{kind}_{rate}", console=console,
                                     delivery="exactly_once" if kind == "sluice_eo" else None)
        for _ in range(300):  # until sluice streams from its slot
            if sql_one(conn, "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        time.sleep(0.5)
    ctx = multiprocessing.get_context("fork")
    out_w, out_c, count_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    ready = ctx.Event()
    measure_from = ctx.Value("d", 1e18)
    seconds = (args.latency_seconds if kind in SLUICE_KINDS else args.floor_seconds) + args.warmup
    if kind == "pg_floor":
        consumer = ctx.Process(target=replication_consumer, args=(env.recv_dsn, slot, measure_from, count_q, ready,
                                                                  out_c, seconds + 90))
    else:
        consumer = ctx.Process(target=latency_consumer, args=(env.kafka, topic, args.partitions, measure_from,
                                                              count_q, ready, out_c, seconds + 90))
    consumer.start()
    ready.wait(30)
    time.sleep(1.0)
    per_txn = max(1, rate // args.txn_per_second)
    # One writer per 10,000 changes/s: a single connection cannot commit faster on this machine.
    writers = 1 if kind == "kafka_floor" else max(1, -(-rate // 10_000))
    base_id = (sql_one(conn, "SELECT coalesce(max(id), 0) FROM public.bench") or 0) + 1_000_000
    measure_from.value = time.time() + args.warmup
    procs = []
    for k in range(writers):
        if kind == "kafka_floor":
            target, wargs = floor_producer, (env.kafka, topic, rate, seconds, per_txn, message_bytes, measure_from, out_w)
        else:
            target, wargs = latency_writer, (env.pg_url, rate / writers, seconds, base_id + k * 100_000_000, per_txn,
                                             out_w)
        procs.append(ctx.Process(target=target, args=wargs))
    samples = []
    t0 = time.monotonic()
    cpu_before = machine_cpu()
    for w in procs:
        w.start()
    # sluice's own commit → broker ack histogram, from the end of the warm-up to the end of the run.
    ack_before = ack_after = None
    if console:
        time.sleep(max(0.0, measure_from.value - time.time()))
        ack_before = commit_to_ack_histogram(*console)
    reports = []
    while len(reports) < writers:
        if proc is not None:
            s = proc_sample(proc.pid)
            if s:
                samples.append((time.monotonic() - t0, s[0], s[1], s[2]))
        try:
            reports.append(out_w.get(timeout=0.25))
        except queue.Empty:
            if not any(w.is_alive() for w in procs) and out_w.empty():
                break
    for w in procs:
        w.join()
    busy, steal = cpu_share(cpu_before, machine_cpu())
    if console:
        ack_after = wait_acks_settled(console, ack_before)
    written = sum(r["rows"] for r in reports)
    writer_seconds = max((r["seconds"] for r in reports), default=0)
    count_q.put(written)
    try:
        c = out_c.get(timeout=seconds + 120)
    except queue.Empty:
        c = {"received": 0, "latencies": [], "commits": [], "warmup_messages": 0, "errors": 0, "mean_bytes": None}
    consumer.join(10)
    if consumer.is_alive():
        consumer.terminate()
    result = {"kind": kind, "rate": rate, "rows_per_txn": per_txn, "writers": writers, "written": written,
              "writer_seconds": writer_seconds, "achieved_rate": written / writer_seconds if writer_seconds else 0,
              "late_commits": sum(r["late"] for r in reports), "received": c["received"],
              "measured": len(c["latencies"]), "consumer_errors": c["errors"], "mean_message_bytes": c["mean_bytes"],
              "machine_busy": busy, "machine_steal": steal}
    result.update(distribution(sorted(c["latencies"])))
    # The raw series (commit time, latency ms), to look at tails: when do the slow ones happen?
    series = os.path.join(env.workdir, f"latency_{kind}_{rate}.json")
    with open(series, "w") as f:
        json.dump([[round(t, 6), round(v, 3)] for t, v in zip(c["commits"], c["latencies"])], f)
    result["series"] = series
    if kind == "kafka_floor":
        acks = sorted(a for r in reports for a in r.get("acks", []))
        result.update(distribution(acks, "ack_"))
    if kind in SLUICE_KINDS:
        result.update(histogram_quantiles(ack_before, ack_after, "sluice_ack_"))
        rc = stop_process(proc)
        measured = [x for x in samples if x[0] >= args.warmup]
        cpu = None
        if len(measured) >= 2:
            cpu = (measured[-1][3] - measured[0][3]) / (measured[-1][0] - measured[0][0])
        problems, problem_count = log_problems(logpath)
        result.update({"sluice_cpu_fraction": cpu, "sluice_peak_rss_kb": max((x[2] for x in samples), default=None),
                       "sluice_exit_status": rc, "log": logpath, "log_problems": problems,
                       "log_problem_count": problem_count, "label": f"latency {rate:,}/s"})
    if kind != "kafka_floor":
        drop_slot(conn, slot)
    if c["received"] < written:
        result["failure"] = f"the consumer received {c['received']:,} of {written:,} messages"
        if logpath:
            result["log_tail"] = tail(logpath)
    log(f"latency {kind} at {rate:,}/s: achieved {result['achieved_rate']:,.0f}/s, received "
        f"{c['received']:,}/{written:,}, p50 {fmt_ms(result['p50_ms'])} p99 {fmt_ms(result['p99_ms'])} "
        f"p99.9 {fmt_ms(result['p999_ms'])} ms" + (f", producer ack p50 {fmt_ms(result['ack_p50_ms'])} "
                                                   f"p99 {fmt_ms(result['ack_p99_ms'])} ms"
                                                   if kind == "kafka_floor" else ""))
    return result


def latency(env, conn, args):
    results = {"sluice": [], "sluice_eo": [], "pg_floor": [], "kafka_floor": []}
    eo_rates = set() if args.no_exactly_once else {int(r) for r in args.eo_rates.split(",") if r}
    for rate in [int(r) for r in args.rates.split(",") if r]:
        s = latency_at(env, conn, rate, args)
        results["sluice"].append(s)
        if rate in eo_rates:
            results["sluice_eo"].append(latency_at(env, conn, rate, args, kind="sluice_eo"))
        if not args.no_floor:
            results["pg_floor"].append(latency_at(env, conn, rate, args, kind="pg_floor"))
            results["kafka_floor"].append(latency_at(env, conn, rate, args, kind="kafka_floor",
                                                     message_bytes=int(s["mean_message_bytes"] or 600)))
    return results
