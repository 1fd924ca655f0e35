"""The pipelines of the backlog runs: sluice (its config, its process, and a run on a slot until every
change of the backlog is acked, sampling its RSS and CPU), the ceiling (pg_recvlogical → /dev/null) and
the naive pipe (pg_recvlogical wal2json | kcat). The throughput, big-transaction, hot-row and profile
parts call these; the latency and backfill parts start sluice with start_sluice.
"""
import os
import statistics
import subprocess
import time

from common import (PUBLICATION, children_cpu, confirmed_flush, log, log_problems, lsn_text, proc_sample,
                    stop_process, tail)


# ---------------------------------------------------------------------------------------------
# Sluice
# ---------------------------------------------------------------------------------------------

# The trivial user functions of the function runs (issue: a routing function costs at most 10 % of
# end-to-end throughput, a filter that keeps everything at most 5 %). public.bench's primary key is `id`.
FUNCTIONS = {
    "route": {"name": "by-id", "type": "routing", "sink_key": "routing", "code": """\
function route(action, record, changes, metadata)
  return { message_key = tostring(record.id) }
end
"""},
    "filter": {"name": "keep-all", "type": "filter", "sink_key": "filter", "code": """\
function filter(action, record, changes, metadata)
  return true
end
"""},
}


def state_file(config_path):
    """The state.path of a bench config: the SQLite state file (spill files go next to it with either store)."""
    return os.path.splitext(config_path)[0] + "-state.sqlite"


def state_schema(slot):
    """The schema of a `store: postgres` run on `slot`: one of its own per run, in the bench database."""
    return f"bench_state_{slot}"


def sluice_config(env, slot, topic, path, function=None, publication=PUBLICATION, tables=("public.bench",),
                  console=None, delivery=None, store=None, hosts=None, park_after=None, max_ack_pending=10000):
    """sluice.yml for the bench; `function` = a key of FUNCTIONS to attach to the sink, or None;
    `console` = (port, token) to serve the console API on 127.0.0.1:port, or None; `delivery` =
    "exactly_once" for a transactional sink (its own transactional id and offsets topic per slot);
    `store` = "postgres" for `state.store: postgres` in the bench database, schema state_schema(slot)
    (None or "sqlite": the state file); `hosts` = the sink's brokers instead of the current broker's;
    `park_after` = the sink's park_after (e.g. "1s"), None for sluice's default."""
    heartbeat = env.heartbeat
    state = state_file(path)
    state_yml = f"path: {state}"
    if store == "postgres":
        state_yml += f", store: postgres, schema: {state_schema(slot)}"
    elif store not in (None, "sqlite"):
        raise ValueError(f"unknown state store {store!r}")
    functions = sink_ref = ""
    if function:
        fn = FUNCTIONS[function]
        code = "".join(f"      {line}\n" for line in fn["code"].splitlines())
        functions = f"functions:\n  - name: {fn['name']}\n    type: {fn['type']}\n    code: |\n{code}"
        sink_ref = f"    {fn['sink_key']}: {fn['name']}\n"
    console_yml = f"console: {{ listen: 127.0.0.1:{console[0]}, token: {console[1]} }}\n" if console else ""
    transactions = delivery_yml = ""
    if delivery == "exactly_once":
        transactions = f", transactional_id: bench-{slot}-{env.run_id}, offsets_topic: bench_offsets_{slot}_{env.run_id}"
        delivery_yml = "    delivery: exactly_once\n"
    park_yml = f"    park_after: {park_after}\n" if park_after else ""
    with open(path, "w") as f:
        f.write(f"""state: {{ {state_yml} }}
{console_yml}database:
  url: {env.pg_url}
  slot: {{ name: {slot}, create_if_not_exists: true }}
  publication: {{ name: {publication}, create_if_not_exists: true, tables: [{", ".join(tables)}] }}
  heartbeat_interval: {heartbeat}
{functions}sinks:
  - name: bench
{sink_ref}{delivery_yml}{park_yml}    destination: {{ type: kafka, hosts: {hosts or env.kafka}, topic: {topic}, max_ack_pending: {max_ack_pending}, batch_size: 1000{transactions} }}
""")


def start_sluice(env, slot, topic, label, wrapper=(), function=None, **config_options):
    config = os.path.join(env.workdir, f"{label}.yml")
    logpath = os.path.join(env.workdir, f"{label}.log")
    sluice_config(env, slot, topic, config, function, **config_options)
    logfile = open(logpath, "w")
    proc = subprocess.Popen([*wrapper, env.sluice, "run", "--config", config], stdin=subprocess.DEVNULL,
                            stdout=logfile, stderr=subprocess.STDOUT)
    logfile.close()
    return proc, logpath


def run_sluice_backlog(env, kafka, conn, slot, topic, end_lsn, expected, timeout, label, wrapper=(), function=None,
                       **config_options):
    """Runs sluice on a slot until the slot's confirmed_flush_lsn reaches end_lsn (every change acked
    by the broker), sampling its RSS and CPU every 100 ms."""
    t0 = time.monotonic()
    proc, logpath = start_sluice(env, slot, topic, label, wrapper, function, **config_options)
    samples = []  # (t, rss_kb, cpu_s)
    hwm = 0
    t_broker = t_slot = None
    cpu_broker = cpu_slot = None
    failure = None
    last_offsets = 0
    while True:
        now = time.monotonic() - t0
        s = proc_sample(proc.pid)
        if s is not None:
            samples.append((now, s[0], s[2]))
            hwm = max(hwm, s[1])
        if proc.poll() is not None:
            failure = f"sluice exited with status {proc.returncode} after {now:.1f} s"
            break
        if t_broker is None:
            last_offsets = kafka.end_offsets(topic)
            if last_offsets >= expected:
                t_broker = time.monotonic() - t0
                cpu_broker = samples[-1][2] if samples else None
        if confirmed_flush(conn, slot) >= end_lsn:
            t_slot = time.monotonic() - t0
            cpu_slot = samples[-1][2] if samples else None
            if t_broker is None:
                last_offsets = kafka.end_offsets(topic)
                t_broker = t_slot
                cpu_broker = cpu_slot
            break
        if now > timeout:
            failure = (f"timed out after {timeout:.0f} s: confirmed_flush_lsn "
                       f"{lsn_text(confirmed_flush(conn, slot))} < end {lsn_text(end_lsn)}, "
                       f"{last_offsets} of {expected} messages on the broker")
            break
        time.sleep(0.1)
    s = proc_sample(proc.pid)
    if s is not None:
        hwm = max(hwm, s[1])
    rc = stop_process(proc)
    stored = kafka.end_offsets(topic)
    problems, problem_count = log_problems(logpath)
    result = {
        "label": label, "slot": slot, "topic": topic, "log": logpath, "function": function,
        "seconds_slot": t_slot, "seconds_broker": t_broker,
        "cpu_seconds": cpu_slot, "cpu_seconds_broker": cpu_broker,
        "messages_on_broker": stored, "expected": expected,
        "peak_rss_kb": hwm, "exit_status": rc, "failure": failure,
        "log_problems": problems, "log_problem_count": problem_count,
    }
    window = samples
    if t_slot:
        window = [x for x in samples if 0.2 * t_slot <= x[0] <= 0.8 * t_slot]
    result["steady_rss_kb"] = int(statistics.median([x[1] for x in window])) if window else None
    result["rss_samples"] = len(samples)
    if failure:
        result["log_tail"] = tail(logpath)
        log(f"{label}: FAILED: {failure}")
        for line in result["log_tail"]:
            log(f"    {line}")
    elif stored != expected and not (config_options.get("delivery") == "exactly_once" and stored > expected):
        # With exactly-once the end offsets also count each transaction's commit markers (one per partition);
        # that each change arrived once is what the exactly-once tests check, with a read_committed consumer.
        result["failure"] = f"{stored} messages on the broker, expected {expected}"
        log(f"{label}: {result['failure']}")
    return result


# ---------------------------------------------------------------------------------------------
# The ceiling and the naive pipe
# ---------------------------------------------------------------------------------------------

def run_ceiling(env, slot, end_lsn):
    cmd = [env.recvlogical, "-d", env.recv_dsn, "--slot", slot, "--start", "--no-loop",
           "-o", "proto_version=1", "-o", f"publication_names={PUBLICATION}",
           f"--endpos={lsn_text(end_lsn)}", "-F", "0", "-f", "/dev/null"]
    cpu0 = children_cpu()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"pg_recvlogical failed: {proc.stderr.strip()}")
    return {"seconds": seconds, "cpu_seconds": children_cpu() - cpu0}


def run_naive(env, kafka, slot, topic, end_lsn, expected):
    recv = (f"'{env.recvlogical}' -d '{env.recv_dsn}' --slot {slot} --start --no-loop "
            f"-o format-version=2 -o include-transaction=false "
            f"--endpos={lsn_text(end_lsn)} -F 0 -f -")
    pipeline = f"set -o pipefail; {recv} | kcat -P -b {env.kafka} -t {topic}"
    cpu0 = children_cpu()
    t0 = time.monotonic()
    proc = subprocess.run(["bash", "-c", pipeline], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=900)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"naive pipe failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    stored = kafka.end_offsets(topic)
    return {"seconds": seconds, "cpu_seconds": children_cpu() - cpu0, "messages_on_broker": stored,
            "failure": None if stored == expected else f"{stored} messages on the broker, expected {expected}"}
