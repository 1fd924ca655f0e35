#!/usr/bin/env python3
"""Sluice benchmarks: throughput from a backlog, parking, latency, memory, CPU cost and backfills.

Run through `scripts/bench`, which installs what is needed, builds sluice in release mode, starts a
throwaway PostgreSQL 15 and broker and then calls this file with their addresses in the
environment:

    SLUICE_TEST_PG_URL       postgres://postgres@127.0.0.1:PORT/postgres
    SLUICE_PG_PORT           PORT
    SLUICE_BIN               the release sluice binary
    SLUICE_PG_BIN            PostgreSQL's bin directory (pg_recvlogical, psql)
    BENCH_WORKDIR            a scratch directory (configs, logs)

Brokers are started per measurement through bench/broker.sh (scripts/lib/services.sh).

It prints the result tables (Markdown) and writes them between the markers in BENCHMARKS.md.
"""
#
# The parts live next to this file, each a module a reader can take on its own:
#
#   common.py      the environment, SQL/LSN helpers, the broker, process sampling, median
#   runners.py     sluice, the ceiling (pg_recvlogical → /dev/null) and the naive pipe on a backlog
#   throughput.py  throughput from a backlog, one large transaction, hot rows
#   parking.py     the parking path: parks per second with Kafka unreachable, SQLite vs PostgreSQL state
#   latency.py     latency of sluice and of the PostgreSQL and Kafka floors at steady rates
#   backfill.py    COPY vs a sluice backfill, and the stream's rate with and without one running
#   profiling.py   sluice under perf record (--profile)
#   report.py      the machine, and the results rendered as BENCHMARKS.md's tables
#   workload.py    the backlog workload (inserts, updates and deletes on public.bench)
#
# This file parses the options, runs the parts in order and writes the results (JSON, Markdown).
import argparse
import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload  # noqa: E402
from backfill import backfill, backfill_runs  # noqa: E402
from common import PUBLICATION, ROOT, Env, allow_wal2json, log  # noqa: E402
from latency import latency  # noqa: E402
from parking import STORES as PARKING_STORES, parking  # noqa: E402
from profiling import profile  # noqa: E402
from report import machine, render, write_markdown  # noqa: E402
from throughput import big_transaction, hot_rows, kafka_floor, throughput  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--changes", type=int, default=1_000_000, help="backlog size (default 1,000,000)")
    p.add_argument("--runs", type=int, default=5,
                   help="throughput repetitions (median is quoted; one round alone swings by ±0.1 on 2 shared cores)")
    p.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the single large transaction")
    p.add_argument("--rates", default="1000,5000,20000", help="latency: changes/s, comma-separated")
    p.add_argument("--latency-seconds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=2, help="latency: seconds not measured at the start")
    p.add_argument("--txn-per-second", type=int, default=200, help="latency: writer commits per second")
    p.add_argument("--no-floor", action="store_true", help="latency: skip the floor runs")
    p.add_argument("--floor-seconds", type=int, default=15, help="latency: seconds per floor run")
    p.add_argument("--heartbeat", default="1s", help="sluice's database.heartbeat_interval (default 1s)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of every topic")
    p.add_argument("--profile", action="store_true", help="also profile sluice with perf record")
    p.add_argument("--profile-changes", type=int, default=300_000)
    p.add_argument("--profile-top", type=int, default=10)
    p.add_argument("--profile-function", choices=("route", "filter"),
                   help="profile with the function runs' routing function or filter on the sink")
    p.add_argument("--no-functions", action="store_true",
                   help="throughput: skip the runs with a routing function and with a filter")
    p.add_argument("--no-backfill", action="store_true", help="skip the backfill part")
    p.add_argument("--no-exactly-once", action="store_true",
                   help="skip the exactly-once runs (throughput (f), and latency at --eo-rates)")
    p.add_argument("--eo-rates", default="5000", help="latency: rates to run an exactly-once sink at too")
    p.add_argument("--no-postgres-state", action="store_true",
                   help="throughput: skip the runs with state.store: postgres ((g))")
    p.add_argument("--park-changes", type=int, default=100_000,
                   help="parking: backlog parked with Kafka unreachable, per store and run (default 100,000; 0 = skip)")
    p.add_argument("--park-after", default="1s", help="parking: the sink's park_after (default 1s)")
    p.add_argument("--park-max-ack-pending", type=int, default=10_000,
                   help="parking: the sink's max_ack_pending (default 10,000, as in the throughput runs)")
    p.add_argument("--backfill-rows", type=int, default=1_000_000,
                   help="backfill: rows of public.bench_backfill (default 1,000,000)")
    p.add_argument("--backfill-changes", type=int, default=200_000,
                   help="backfill: changes the writers replay for the stream's rate with and without a "
                        "concurrent backfill (default 200,000; 0 = skip those two runs)")
    p.add_argument("--backfill-writers", type=int, default=4,
                   help="backfill: parallel writers of those changes (default 4, so that they outpace sluice)")
    p.add_argument("--copy-runs", type=int, default=3, help="backfill: timed COPY runs (median is quoted)")
    p.add_argument("--hot-updates", type=int, default=20_000, help="hot rows: updates of the one row (and of uniform keys)")
    p.add_argument("--floor-message-bytes", type=int, default=850,
                   help="Kafka floor: size of the pre-built messages (default 850, about sluice's on this workload)")
    p.add_argument("--skip", default="",
                   help="comma-separated parts to skip: throughput,parking,big,hot,floor,latency,backfill")
    p.add_argument("--markdown", default=os.path.join(ROOT, "BENCHMARKS.md"),
                   help="file to update ('' = do not write)")
    p.add_argument("--json", default=os.path.join(ROOT, ".build-bench", "bench-results.json"))
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    env = Env()
    env.heartbeat = args.heartbeat
    started = time.monotonic()
    conn = env.connect()
    allow_wal2json(conn)
    with conn.cursor() as cur:
        cur.execute(workload.TABLE_DDL)
        cur.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE public.bench")
    results = {"started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
               "machine": machine(env, conn), "args": vars(args)}
    log("machine: " + json.dumps(results["machine"]))

    if "throughput" not in skip:
        results["throughput"] = throughput(env, conn, args)
    if "parking" not in skip and args.park_changes > 0:
        try:
            results["parking"] = parking(env, conn, args)
        except Exception as e:  # keep the other parts' results
            log(f"parking: FAILED: {e!r}")
            results["parking"] = {"error": f"{type(e).__name__}: {e}"}
    if "big" not in skip and args.big_rows > 0:
        results["big_transaction"] = big_transaction(env, conn, args)
    if "hot" not in skip and args.hot_updates > 0:
        results["hot_rows"] = hot_rows(env, conn, args)
    if "floor" not in skip:
        results["kafka_floor"] = kafka_floor(env, args)
    if "latency" not in skip:
        results["latency"] = latency(env, conn, args)
    if "backfill" not in skip and not args.no_backfill and args.backfill_rows > 0:
        try:
            results["backfill"] = backfill(env, conn, args)
        except Exception as e:  # keep the other parts' results
            log(f"backfill: FAILED: {e!r}")
            results["backfill"] = {"error": f"{type(e).__name__}: {e}"}
    if args.profile:
        results["profile"] = profile(env, conn, args)
    results["duration_s"] = time.monotonic() - started
    results["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]

    if args.json:  # raw results first, so a rendering problem loses nothing
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    body, summary = render(results, args)
    results["summary"] = summary
    if args.json:
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    print(body)
    if args.markdown:
        write_markdown(args.markdown, body)
        log(f"wrote {args.markdown}")
    failed = any(r.get("failure") for r in (results.get("throughput", {}).get("sluice", [])
                                              + results.get("throughput", {}).get("sluice_route", [])
                                              + results.get("throughput", {}).get("sluice_filter", [])
                                              + results.get("throughput", {}).get("sluice_pg", [])
                                              + [r for store in PARKING_STORES
                                                 for r in results.get("parking", {}).get(store, [])]
                                              + results.get("throughput", {}).get("naive", [])
                                              + ([results["big_transaction"]] if "big_transaction" in results else [])
                                              + [results["hot_rows"][k] for k in ("hot", "uniform") if "hot_rows" in results]
                                              + [results["kafka_floor"][k] for k in ("sluice", "in_flight_5")
                                                 if "kafka_floor" in results]
                                              + results.get("latency", {}).get("sluice", [])
                                              + backfill_runs(results.get("backfill"))))
    failed = failed or bool((results.get("backfill") or {}).get("error")) or bool((results.get("parking") or {}).get("error"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
