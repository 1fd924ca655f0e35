"""What every part of the benchmark shares: the environment scripts/bench sets up, SQL and LSN helpers,
the broker (a fresh one per measurement, bench/broker.sh) and its Kafka admin client, sampling of a
process's RSS and CPU from /proc, a sluice log's warning/error lines, and the median and millisecond
formatting that both the parts' log lines and the report use.
"""
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psycopg2
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PUBLICATION = "bench"


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------

class Env:
    def __init__(self):
        self.pg_url = os.environ["SLUICE_TEST_PG_URL"]
        self.pg_port = os.environ["SLUICE_PG_PORT"]
        self.kafka = None  # a fresh broker per measurement, see Broker
        self.sluice = os.environ["SLUICE_BIN"]
        self.pg_bin = os.environ.get("SLUICE_PG_BIN", "/usr/lib/postgresql/15/bin")
        self.workdir = os.environ["BENCH_WORKDIR"]
        self.recvlogical = os.path.join(self.pg_bin, "pg_recvlogical")
        self.recv_dsn = f"dbname=postgres host=127.0.0.1 port={self.pg_port} user=postgres"
        self.run_id = time.strftime("%H%M%S")
        self.heartbeat = "1s"

    def connect(self, autocommit=True):
        conn = psycopg2.connect(self.pg_url, application_name="sluice-bench")
        conn.autocommit = autocommit
        return conn


def sql_one(conn, query, args=None):
    with conn.cursor() as cur:
        cur.execute(query, args)
        row = cur.fetchone()
        return row[0] if row and len(row) == 1 else row


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_text(value):
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def current_lsn(conn):
    return lsn_int(sql_one(conn, "SELECT pg_current_wal_insert_lsn()::text"))


def drop_slot(conn, slot):
    """Drops a slot, waiting up to 15 s for its last user's walsender to go away."""
    for attempt in range(150):
        try:
            sql_one(conn, "SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        except psycopg2.errors.ObjectInUse:
            time.sleep(0.1)
    sql_one(conn, "SELECT pg_drop_replication_slot(%s)", (slot,))


def drop_schema(conn, schema):
    """Drops a schema (a `store: postgres` run's state tables) and everything in it, if it exists."""
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def confirmed_flush(conn, slot):
    value = sql_one(conn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    return lsn_int(value) if value else 0


def allow_wal2json(conn):
    """Some PostgreSQL builds only load output plugins named in output_plugin_libraries."""
    exists = sql_one(conn, "SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'")
    if exists is None or "wal2json" in exists:
        return
    config_file = sql_one(conn, "SHOW config_file")
    libraries = ", ".join([x.strip() for x in exists.split(",") if x.strip()] + ["wal2json"])
    with open(config_file, "a") as f:
        f.write(f"\n# sluice bench: the naive pipe uses wal2json\noutput_plugin_libraries = '{libraries}'\n")
    sql_one(conn, "SELECT pg_reload_conf()")
    for _ in range(50):
        probe = psycopg2.connect(conn.dsn)
        ok = "wal2json" in sql_one(probe, "SHOW output_plugin_libraries")
        probe.close()
        if ok:
            return
        time.sleep(0.1)
    raise RuntimeError("could not allow wal2json in output_plugin_libraries")


class Kafka:
    def __init__(self, hosts):
        self.hosts = hosts
        self.admin = AdminClient({"bootstrap.servers": hosts})
        self.consumer = Consumer({"bootstrap.servers": hosts, "group.id": "sluice-bench-offsets",
                                  "enable.auto.commit": False})
        self.partitions = {}

    def create_topic(self, name, partitions):
        futures = self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(timeout=30)
        for _ in range(100):
            md = self.admin.list_topics(topic=name, timeout=10)
            topic = md.topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) == partitions:
                self.partitions[name] = partitions
                return
            time.sleep(0.1)
        raise RuntimeError(f"topic {name} did not appear with {partitions} partitions")

    def end_offsets(self, name):
        """Sum of the partitions' high watermarks: how many messages the broker stored."""
        total = 0
        for p in range(self.partitions[name]):
            low, high = self.consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10, cached=False)
            total += high - low
        return total

    def close(self):
        self.consumer.close()
        self.admin = self.consumer = None


BROKER_SH = os.path.join(ROOT, "bench", "broker.sh")


class Broker:
    """A fresh broker for one measurement (bench/broker.sh, i.e. scripts/lib/services.sh). The noida-db
    broker keeps every message in memory and keeps re-serialising all of it to disk, so a broker still
    holding earlier runs' millions of messages would take CPU and memory from the next measurement."""

    def __init__(self, env):
        out = subprocess.run(["bash", BROKER_SH, "start"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"could not start a broker: {out.stderr.strip()[-2000:]}")
        pid, port, self.dir = out.stdout.split()
        self.pid = int(pid)
        self.hosts = f"127.0.0.1:{port}"
        self.state_file = os.path.join(env.workdir, "broker.current")
        with open(self.state_file, "w") as f:  # scripts/bench stops it if we die
            f.write(f"{self.pid} {self.dir}\n")
        env.kafka = self.hosts
        self.kafka = Kafka(self.hosts)

    def cpu_seconds(self):
        s = proc_sample(self.pid)
        return s[2] if s else None

    def stop(self):
        if self.kafka:
            self.kafka.close()
            self.kafka = None
        subprocess.run(["bash", BROKER_SH, "stop", str(self.pid), self.dir], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=120)
        try:
            os.remove(self.state_file)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# Process sampling
# ---------------------------------------------------------------------------------------------

def proc_sample(pid):
    """(rss_kb, hwm_kb, cpu_seconds) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    rss = re.search(r"VmRSS:\s+(\d+)", status)
    hwm = re.search(r"VmHWM:\s+(\d+)", status)
    if rss is None or hwm is None:  # exiting, or still in exec
        return None
    rss, hwm = int(rss.group(1)), int(hwm.group(1))
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return rss, hwm, cpu


def machine_cpu():
    """(busy, steal, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    total = sum(fields)
    return total - idle - iowait, steal, total


def cpu_share(before, after):
    total = after[2] - before[2]
    if total <= 0:
        return None, None
    return (after[0] - before[0]) / total, (after[1] - before[1]) / total


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stop_process(proc, timeout=40):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def log_problems(path, limit=12):
    """warning/error/critical lines of a sluice log (its lines look like `... warning sluice: ...`)."""
    lines = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if re.search(r"\b(warning|error|critical)\b", line):
                    lines.append(line.rstrip())
    except OSError:
        pass
    return lines[:limit], len(lines)


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip() for line in f.readlines()[-n:]]
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------

def fmt_ms(x):
    return "-" if x is None else (f"{x:.1f}" if x < 100 else f"{x:,.0f}")


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def console_request(port, token, method, path, body=None, timeout=10):
    """One request to sluice's console on 127.0.0.1:port with its bearer token (`body` sent as JSON):
    (HTTP status, response bytes), or (None, None) when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout):
        return None, None


def padded_message(n, size, metadata):
    """A Sequin-shaped insert of about `size` bytes (a `note` of x's fills it up), record id `n`, with
    `metadata` (the object's inner JSON): what the Kafka floors send instead of sluice's messages."""
    head = '{"record":{"id":%d,"note":"' % n
    tail = '"},"changes":null,"action":"insert","metadata":{%s}}' % metadata
    return head + "x" * max(0, size - len(head) - len(tail)) + tail
