"""The optional profile (--profile): sluice under `perf record` on a backlog, and the inclusive and
self cost tables of `perf report`, demangled.
"""
import os
import re
import subprocess

import workload
from common import Broker, current_lsn, drop_slot, log, sql_one
from runners import run_sluice_backlog


PLUMBING = re.compile(r"^(start_thread|clone3?|__clone|NSThreadStart\(_:\)|Thread\.main\(\)|0x[0-9a-f]+|0+|"
                      r"entry_SYSCALL_64_after_hwframe|do_syscall_64)$")


def perf_table(data, children):
    """(percent, symbol) rows of `perf report`, demangled; children=True gives inclusive cost."""
    cmd = ["perf", "report", "-i", data, "--stdio", "-g", "none", "--sort", "sym", "--percent-limit", "0.5",
           "--children" if children else "--no-children"]
    report = subprocess.run(cmd, capture_output=True, text=True).stdout
    report = subprocess.run(["swift", "demangle", "--simplified"], input=report, capture_output=True,
                            text=True).stdout or report
    rows = []
    for line in report.splitlines():
        if children:
            m = re.match(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(.*?)\s*$", line)
            if m:
                rows.append((float(m.group(1)), float(m.group(2)), m.group(3), m.group(4)))
        else:
            m = re.match(r"^\s*([\d.]+)%\s+\[(.)\]\s+(.*?)\s*$", line)
            if m:
                rows.append((float(m.group(1)), float(m.group(1)), m.group(2), m.group(3)))
    return rows


def profile(env, conn, args):
    """sluice under `perf record` (cpu-clock, frame-pointer call graphs) on a backlog. (valgrind 3.19,
    the callgrind Debian 12 ships, cannot run this Swift 6.3 binary: it fails on its DWARF 5 debug
    info, and without debug info it crashes when the first thread starts.)"""
    slot = "sluice_profile"
    sql_one(conn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    # A fresh id range above everything earlier parts wrote, so the workload's id bookkeeping holds.
    start_id = (sql_one(conn, "SELECT coalesce(max(id), 0) FROM public.bench") or 0) + 10_000_000
    writer = env.connect(autocommit=False)
    workload.write(writer, args.profile_changes, seed=7, start_id=start_id)
    writer.close()
    end_lsn = current_lsn(conn)
    topic = f"bench_profile_{env.run_id}"
    data = os.path.join(env.workdir, "perf.data")
    log(f"profile: sluice under perf record on {args.profile_changes:,} changes")
    with Broker(env) as broker:
        broker.kafka.create_topic(topic, args.partitions)
        # perf stops on SIGTERM and then stops sluice with SIGTERM.
        result = run_sluice_backlog(env, broker.kafka, conn, slot, topic, end_lsn, args.profile_changes, 600,
                                    "profile", function=args.profile_function, wrapper=("perf", "record", "-q", "-o", data, "-e", "cpu-clock",
                                                        "-F", "1999", "-g", "--"))
    drop_slot(conn, slot)
    inclusive = perf_table(data, children=True)
    exclusive = perf_table(data, children=False)
    result["inclusive"] = [r for r in inclusive if not PLUMBING.match(r[3])][:args.profile_top]
    result["exclusive"] = exclusive[:args.profile_top]
    result["perf_data"] = data
    return result
