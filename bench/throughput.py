"""Throughput from a backlog: the bench workload written once, then read from slots at the same LSN by
the ceiling, sluice (plain and with each user function) and the naive pipe, each with a fresh broker;
sluice's memory during one large transaction; and hot rows, one row updated over and over next to as
many different rows, with a check that the hot row's updates arrive in order; and the Kafka floor, a bare
producer sending pre-built messages.
"""
import json
import os
import subprocess
import time

from confluent_kafka import Consumer, TopicPartition

import workload
from common import (PUBLICATION, Broker, children_cpu, confirmed_flush, current_lsn, drop_schema, drop_slot, log,
                    lsn_text, padded_message, sql_one)
from runners import FUNCTIONS, run_ceiling, run_naive, run_sluice_backlog, state_schema


# ---------------------------------------------------------------------------------------------
# Throughput from a backlog
# ---------------------------------------------------------------------------------------------

def throughput(env, conn, args):
    n, runs = args.changes, args.runs
    # sluice runs per round: plain, and (unless --no-functions) with each function of FUNCTIONS.
    # and (unless --no-exactly-once) with delivery: exactly_once, and (unless --no-postgres-state) with
    # state.store: postgres (a schema of its own per run, in the bench database).
    variants = (["sluice"] + ([] if args.no_functions else [f"sluice_{f}" for f in FUNCTIONS])
                + ([] if args.no_exactly_once else ["sluice_eo"])
                + ([] if args.no_postgres_state else ["sluice_pg"]))
    kinds = ["ceiling", *variants, "naive"]
    log(f"throughput: creating slots, then writing {n:,} changes")
    names = {kind: [f"{kind}_{i + 1}" for i in range(runs)] for kind in kinds}
    sql_one(conn, "SELECT pg_create_logical_replication_slot('bench_origin', 'pgoutput')")
    for kind in kinds:
        for slot in names[kind]:
            if kind == "naive":
                sql_one(conn, "SELECT pg_copy_logical_replication_slot('bench_origin', %s, false, 'wal2json')", (slot,))
            else:
                sql_one(conn, "SELECT pg_copy_logical_replication_slot('bench_origin', %s)", (slot,))
    start_lsn = confirmed_flush(conn, "bench_origin")
    distinct = sql_one(conn, "SELECT count(DISTINCT confirmed_flush_lsn) FROM pg_replication_slots "
                             "WHERE slot_name LIKE 'ceiling\\_%%' OR slot_name LIKE 'sluice\\_%%' "
                             "OR slot_name LIKE 'naive\\_%%' OR slot_name = 'bench_origin'")
    assert distinct == 1, "the slots do not start at the same LSN"
    sql_one(conn, "SELECT pg_drop_replication_slot('bench_origin')")

    writer = env.connect(autocommit=False)
    t0 = time.monotonic()
    counts, transactions = workload.write(writer, n)
    write_seconds = time.monotonic() - t0
    writer.close()
    end_lsn = current_lsn(conn)
    wal_bytes = end_lsn - start_lsn
    row_bytes = float(sql_one(conn, "SELECT avg(pg_column_size(b.*)) FROM (SELECT * FROM public.bench LIMIT 10000) b"))
    log(f"workload: {counts} in {transactions:,} transactions, {wal_bytes / 1e6:.0f} MB of WAL, "
        f"written in {write_seconds:.1f} s; slots at {lsn_text(start_lsn)}, end {lsn_text(end_lsn)}")

    results = {"changes": n, "counts": counts, "transactions": transactions, "wal_bytes": wal_bytes,
               "row_bytes": row_bytes, "write_seconds": write_seconds,
               "start_lsn": lsn_text(start_lsn), "end_lsn": lsn_text(end_lsn),
               "ceiling": [], "naive": [], "functions": not args.no_functions, "exactly_once": not args.no_exactly_once,
               "postgres_state": not args.no_postgres_state,
               **{kind: [] for kind in variants}, "sluice_order": []}
    for i in range(runs):
        r = run_ceiling(env, names["ceiling"][i], end_lsn)
        drop_slot(conn, names["ceiling"][i])
        results["ceiling"].append(r)
        log(f"run {i + 1}/{runs} ceiling: {r['seconds']:.2f} s = {n / r['seconds']:,.0f} changes/s")

        # The sluice variants back to back, their order rotated from round to round so that none is
        # always the one right after the ceiling (or before the naive pipe).
        order = variants[i % len(variants):] + variants[:i % len(variants)]
        results["sluice_order"].append(order)
        for kind in order:
            function = kind[len("sluice_"):] if kind not in ("sluice", "sluice_eo", "sluice_pg") else None
            delivery = "exactly_once" if kind == "sluice_eo" else None
            store = "postgres" if kind == "sluice_pg" else None
            topic = f"bench_{kind}_{env.run_id}_{i + 1}"
            with Broker(env) as broker:
                broker.kafka.create_topic(topic, args.partitions)
                timeout = max(120.0, 20 * r["seconds"])
                cpu0 = broker.cpu_seconds()
                s = run_sluice_backlog(env, broker.kafka, conn, names[kind][i], topic, end_lsn, n, timeout,
                                       f"backlog_{kind}_{i + 1}", function=function, delivery=delivery, store=store)
                s["broker_cpu_seconds"] = broker.cpu_seconds() - cpu0
            drop_slot(conn, names[kind][i])
            if store == "postgres":  # the run's state tables, not needed any more
                s["state_schema"] = state_schema(names[kind][i])
                drop_schema(conn, s["state_schema"])
            results[kind].append(s)
            if s["seconds_slot"]:
                log(f"run {i + 1}/{runs} {kind}: {s['seconds_slot']:.2f} s to confirmed_flush_lsn "
                    f"({s['seconds_broker']:.2f} s until the broker held all {s['messages_on_broker']:,}) = "
                    f"{n / s['seconds_slot']:,.0f} changes/s, CPU {s['cpu_seconds']:.1f} s, "
                    f"peak RSS {s['peak_rss_kb'] / 1024:.0f} MB")

        topic = f"bench_naive_{env.run_id}_{i + 1}"
        with Broker(env) as broker:
            broker.kafka.create_topic(topic, args.partitions)
            cpu0 = broker.cpu_seconds()
            c = run_naive(env, broker.kafka, names["naive"][i], topic, end_lsn, n)
            c["broker_cpu_seconds"] = broker.cpu_seconds() - cpu0
        drop_slot(conn, names["naive"][i])
        results["naive"].append(c)
        log(f"run {i + 1}/{runs} naive: {c['seconds']:.2f} s = {n / c['seconds']:,.0f} changes/s"
            + (f" ({c['failure']})" if c["failure"] else ""))
    return results


# ---------------------------------------------------------------------------------------------
# One large transaction
# ---------------------------------------------------------------------------------------------

def big_transaction(env, conn, args):
    rows = args.big_rows
    slot = "sluice_big"
    sql_one(conn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    start_id = (sql_one(conn, "SELECT coalesce(max(id), 0) FROM public.bench") or 0) + 1_000_000
    log(f"big transaction: inserting {rows:,} rows in one transaction")
    writer = env.connect(autocommit=False)
    t0 = time.monotonic()
    workload.write_single_transaction(writer, rows, start_id)
    write_seconds = time.monotonic() - t0
    writer.close()
    end_lsn = current_lsn(conn)
    topic = f"bench_big_{env.run_id}"
    with Broker(env) as broker:
        broker.kafka.create_topic(topic, args.partitions)
        result = run_sluice_backlog(env, broker.kafka, conn, slot, topic, end_lsn, rows, max(180.0, rows / 2000),
                                    "big_transaction")
    drop_slot(conn, slot)
    result["rows"] = rows
    result["write_seconds"] = write_seconds
    if result["seconds_slot"]:
        log(f"big transaction: {result['seconds_slot']:.1f} s, peak RSS {result['peak_rss_kb'] / 1024:.0f} MB")
    return result


# ---------------------------------------------------------------------------------------------
# Hot rows
# ---------------------------------------------------------------------------------------------

def first_occurrences_in_order(hosts, topic, partitions, key):
    """Reads the whole topic; True when the first occurrence of each `n` of `key` comes in rising order."""
    consumer = Consumer({"bootstrap.servers": hosts, "group.id": f"hot-check-{topic}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen, order, idle = set(), [], 0
    while idle < 5:
        batch = consumer.consume(10_000, timeout=1)
        idle = idle + 1 if not batch else 0
        for m in batch:
            if m.error() or (m.key() or b"").decode() != key:
                continue
            n = json.loads(m.value())["record"]["n"]
            if n not in seen:
                seen.add(n)
                order.append(n)
    consumer.close()
    return order == sorted(order), len(order)


def hot_rows(env, conn, args):
    """One row updated `--hot-updates` times in single-row transactions, next to the same number of
    single-row updates of as many different rows (uniform keys): sluice's rate for each, from a backlog."""
    count = args.hot_updates
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS public.bench_hot (id int PRIMARY KEY, n int NOT NULL)")
        cur.execute("TRUNCATE public.bench_hot")
        cur.execute("INSERT INTO public.bench_hot SELECT g, 0 FROM generate_series(0, %s) g", (count,))
        cur.execute(f"ALTER PUBLICATION {PUBLICATION} ADD TABLE public.bench_hot")
    results = {"updates": count}
    for kind in ("hot", "uniform"):
        slot = f"sluice_hot_{kind}"
        sql_one(conn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        writer = env.connect()
        log(f"hot rows: {count:,} single-row updates ({kind})")
        with writer.cursor() as cur:
            for n in range(1, count + 1):
                cur.execute("UPDATE public.bench_hot SET n = %s WHERE id = %s", (n, 0 if kind == "hot" else n))
        writer.close()
        end_lsn = current_lsn(conn)
        topic = f"bench_hot_{kind}_{env.run_id}"
        with Broker(env) as broker:
            broker.kafka.create_topic(topic, args.partitions)
            run = run_sluice_backlog(env, broker.kafka, conn, slot, topic, end_lsn, count, max(180.0, count / 50),
                                     f"hot_{kind}", tables=("public.bench", "public.bench_hot"))
            if kind == "hot" and not run.get("failure"):
                run["in_order"], run["distinct"] = first_occurrences_in_order(broker.hosts, topic, args.partitions, "0")
        drop_slot(conn, slot)
        if run["seconds_slot"]:
            run["rate"] = count / run["seconds_slot"]
            log(f"hot rows ({kind}): {run['rate']:,.0f} changes/s")
        results[kind] = run
    return results


# ---------------------------------------------------------------------------------------------
# The Kafka floor: a bare producer with pre-built messages
# ---------------------------------------------------------------------------------------------

FLOOR_SETTINGS = {
    "sluice": ["enable.idempotence=true", "acks=all", "enable.gapless.guarantee=true",
               "max.in.flight.requests.per.connection=1", "partitioner=murmur2_random", "linger.ms=5",
               "batch.num.messages=1000", "queue.buffering.max.messages=100000"],
    "in_flight_5": ["enable.idempotence=true", "acks=all", "partitioner=murmur2_random", "linger.ms=5",
                    "batch.num.messages=1000", "queue.buffering.max.messages=100000"],
}


def kafka_floor(env, args):
    """What the broker takes without PostgreSQL and without sluice: `kcat -P` (librdkafka) sends
    `--changes` pre-built messages of `--floor-message-bytes` (keyed like sluice's, Sequin-shaped JSON)
    from a file to a fresh broker, once with sluice's producer settings and once with librdkafka's five
    requests in flight; timed until kcat has every delivery report and exits. CPU of kcat and of the broker."""
    n, size = args.changes, args.floor_message_bytes
    path = f"{env.workdir}/kafka-floor-messages.tsv"
    with open(path, "w") as f:
        for i in range(n):
            message = padded_message(i, size, '"table_schema":"public","table_name":"bench","commit_idx":%d' % i)
            f.write(f"{i}\t{message}\n")
    results = {"messages": n, "message_bytes": size}
    for name, settings in FLOOR_SETTINGS.items():
        topic = f"bench_kafka_floor_{name}_{env.run_id}"
        with Broker(env) as broker:
            broker.kafka.create_topic(topic, args.partitions)
            cmd = ["kcat", "-P", "-b", broker.hosts, "-t", topic, "-K", "\t", "-l", path]
            for setting in settings:
                cmd += ["-X", setting]
            broker_cpu0 = broker.cpu_seconds()
            cpu0 = children_cpu()
            t0 = time.monotonic()
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
            seconds = time.monotonic() - t0
            client_cpu = children_cpu() - cpu0
            broker_cpu = broker.cpu_seconds() - broker_cpu0
            stored = broker.kafka.end_offsets(topic)
        run = {"settings": settings, "seconds": seconds, "rate": n / seconds, "cpu_seconds": client_cpu,
               "broker_cpu_seconds": broker_cpu, "messages_on_broker": stored,
               "failure": None if proc.returncode == 0 and stored == n else
               f"kcat exited {proc.returncode} ({proc.stderr.strip()[-300:]}); {stored} of {n} messages on the broker"}
        log(f"kafka floor ({name}): {n:,} messages of {size} bytes in {seconds:.2f} s ({n / seconds:,.0f}/s), "
            f"kcat CPU {client_cpu:.2f} s, broker CPU {broker_cpu:.2f} s")
        results[name] = run
    os.remove(path)
    return results
