"""The parking path: how fast sluice parks messages Kafka does not take, per state store.

A backlog of `--park-changes` changes, read by a sluice whose sink points at a Kafka address where nothing
listens (a free, closed port of 127.0.0.1) with `park_after: 1s`: every message times out in librdkafka
after park_after and is parked, i.e. written durably to the state store, and only then does the slot move
past it. Timed until the slot's confirmed_flush_lsn reaches the end of the backlog, once per store
(`sqlite`, `postgres`) and run, on slots copied at the same LSN; then sluice is killed (SIGKILL: it would
retry the parked messages forever) and the store is checked to hold exactly that many parked messages.

What the manual run showed, and why the rate is taken from the "streaming" line on: with the state file
sluice first waits up to 10 s for the brokers to answer before it streams, a new leader (`store:
postgres`) does not; librdkafka fails nothing faster than park_after (connection refused is retried until
`message.timeout.ms` = park_after), and the parked groups are retried (and fail again) while the rest is
still being parked, competing with it for max_ack_pending.
"""
import os
import socket
import signal
import sqlite3
import time

import workload
from common import (confirmed_flush, current_lsn, drop_schema, drop_slot, log, lsn_text, proc_sample,
                    sql_one, tail)
from runners import start_sluice, state_file, state_schema

STORES = ("sqlite", "postgres")


def parked_in_store(conn, store, slot, config_path):
    """How many parked messages the run's store holds."""
    if store == "postgres":
        return sql_one(conn, f'SELECT count(*) FROM "{state_schema(slot)}".parked WHERE slot = %s', (slot,))
    db = sqlite3.connect(state_file(config_path))
    try:
        return db.execute("SELECT count(*) FROM parked").fetchone()[0]
    finally:
        db.close()


def count_lines(path, needle):
    n = 0
    with open(path, errors="replace") as f:
        for line in f:
            if needle in line:
                n += 1
    return n


def closed_port():
    """A port of 127.0.0.1 where nothing listens, below the ephemeral range. A closed port inside that range
    (as free_port gives) can be picked as the source port of sluice's own connection to it: Linux then
    connects the socket to itself (a TCP simultaneous open) and librdkafka reads its own requests back."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for port in range(low - 1, 1024, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def run_parking(env, conn, slot, store, end_lsn, expected, timeout, label, args):
    """One sluice on `slot` with an unreachable sink until the slot's confirmed_flush_lsn reaches end_lsn."""
    port = closed_port()
    t0 = time.monotonic()
    proc, logpath = start_sluice(env, slot, f"bench_parking_{slot}", label, store=store, hosts=f"127.0.0.1:{port}",
                                 park_after=args.park_after, max_ack_pending=args.park_max_ack_pending)
    config_path = os.path.join(env.workdir, f"{label}.yml")
    t_streaming = t_done = cpu_done = None
    hwm = 0
    failure = None
    log_offset = 0
    with open(logpath, "rb") as logfile:
        while True:
            now = time.monotonic() - t0
            s = proc_sample(proc.pid)
            if s is not None:
                hwm = max(hwm, s[1])
            if t_streaming is None:  # sluice's "[PostgresSource] streaming" line: it reads the slot from here on
                logfile.seek(log_offset)
                chunk = logfile.read()
                cut = chunk.rfind(b"\n") + 1  # whole lines only
                if b"] streaming" in chunk[:cut]:
                    t_streaming = now
                log_offset += cut
            if proc.poll() is not None:
                failure = f"sluice exited with status {proc.returncode} after {now:.1f} s"
                break
            if confirmed_flush(conn, slot) >= end_lsn:
                t_done = time.monotonic() - t0
                cpu_done = s[2] if s else None
                break
            if now > timeout:
                failure = (f"timed out after {timeout:.0f} s: confirmed_flush_lsn "
                           f"{lsn_text(confirmed_flush(conn, slot))} < end {lsn_text(end_lsn)}")
                break
            time.sleep(0.1)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        parked = parked_in_store(conn, store, slot, config_path)
    except Exception as e:  # noqa: BLE001 - a store that cannot be read is a failed run, not a crash of the bench
        parked = None
        failure = failure or f"could not count the parked messages: {type(e).__name__}: {e}"
    if failure is None and parked != expected:
        failure = f"the store holds {parked} parked messages, expected {expected}"
    seconds = t_done - t_streaming if t_done is not None and t_streaming is not None else None
    if failure is None and seconds is None:
        failure = "no \"streaming\" line in sluice's log"
    result = {
        "label": label, "slot": slot, "store": store, "log": logpath, "expected": expected, "parked": parked,
        "seconds_to_streaming": t_streaming, "seconds_total": t_done, "seconds": None if failure else seconds,
        "rate": None if failure else expected / seconds, "cpu_seconds": cpu_done, "peak_rss_kb": hwm,
        # With store: postgres, each "leading the slot" is a term; more than one means the instance lost its
        # lease (its own renewals starved) and took the slot again, starting over from the slot's position.
        "terms": count_lines(logpath, "leading the slot"), "lease_lost": count_lines(logpath, "lost the lease"),
        "failure": failure,
    }
    if failure:
        result["log_tail"] = [line[:300] for line in tail(logpath)]
        log(f"{label}: FAILED: {failure}")
    return result


def parking(env, conn, args):
    n, runs = args.park_changes, args.runs
    names = {store: [f"park_{store}_{i + 1}" for i in range(runs)] for store in STORES}
    log(f"parking: creating slots, then writing {n:,} changes")
    sql_one(conn, "SELECT pg_create_logical_replication_slot('bench_park_origin', 'pgoutput')")
    for store in STORES:
        for slot in names[store]:
            sql_one(conn, "SELECT pg_copy_logical_replication_slot('bench_park_origin', %s)", (slot,))
    start_lsn = confirmed_flush(conn, "bench_park_origin")
    distinct = sql_one(conn, "SELECT count(DISTINCT confirmed_flush_lsn) FROM pg_replication_slots "
                             "WHERE slot_name LIKE 'park\\_%%' OR slot_name = 'bench_park_origin'")
    assert distinct == 1, "the slots do not start at the same LSN"
    sql_one(conn, "SELECT pg_drop_replication_slot('bench_park_origin')")

    writer = env.connect(autocommit=False)
    counts, transactions = workload.write(writer, n)
    writer.close()
    end_lsn = current_lsn(conn)
    log(f"parking: {counts} in {transactions:,} transactions, {(end_lsn - start_lsn) / 1e6:.0f} MB of WAL; "
        f"slots at {lsn_text(start_lsn)}, end {lsn_text(end_lsn)}")
    results = {"changes": n, "counts": counts, "transactions": transactions, "wal_bytes": end_lsn - start_lsn,
               "park_after": args.park_after, "max_ack_pending": args.park_max_ack_pending,
               "start_lsn": lsn_text(start_lsn), "end_lsn": lsn_text(end_lsn), "order": [],
               **{store: [] for store in STORES}}
    timeout = max(120.0, 60 + n / 500)
    for i in range(runs):
        order = list(STORES[i % 2:] + STORES[:i % 2])  # alternate which store goes first
        results["order"].append(order)
        for store in order:
            slot = names[store][i]
            r = run_parking(env, conn, slot, store, end_lsn, n, timeout, f"parking_{store}_{i + 1}", args)
            drop_slot(conn, slot)
            if store == "postgres":
                drop_schema(conn, state_schema(slot))
            else:
                for suffix in ("", "-wal", "-shm"):
                    path = state_file(os.path.join(env.workdir, f"{r['label']}.yml")) + suffix
                    if os.path.exists(path):
                        os.remove(path)
            results[store].append(r)
            if r["rate"]:
                log(f"run {i + 1}/{runs} parking ({store}): {r['seconds']:.2f} s from streaming until all "
                    f"{n:,} were parked (+{r['seconds_to_streaming']:.1f} s start-up) = {r['rate']:,.0f} parks/s, "
                    f"CPU {r['cpu_seconds'] or 0:.1f} s, {r['terms']} term(s)")
    return results
