# shellcheck shell=bash
#
# scripts/lib/services.sh — throwaway PostgreSQL + Kafka-compatible broker
# for Sluice's tests and quickstart.
#
# Source it from a bash script:
#
#   source "$(dirname "$0")/lib/services.sh"
#   sluice_install_deps
#   trap 'rc=$?; sluice_stop_services; exit $rc' EXIT
#   sluice_start_postgres
#   sluice_start_broker
#
# Functions:
#   sluice_install_deps    apt packages (libpq, librdkafka, kcat, socat, iproute2,
#                          postgresql-15, pkg-config, libsqlite3-dev, liblua5.4-dev,
#                          chromium) + .venv with noida-db and playwright
#   sluice_free_port       print a free TCP port on 127.0.0.1
#   sluice_start_postgres  exports SLUICE_PG_PORT SLUICE_PG_DIR SLUICE_PG_PID
#                          SLUICE_TEST_PG_URL
#   sluice_start_broker    exports SLUICE_KAFKA_PORT SLUICE_KAFKA_PID
#                          SLUICE_KAFKA_DIR SLUICE_TEST_KAFKA_HOSTS
#   sluice_stop_services   stop both (by PID only), remove temp dirs;
#                          idempotent, never fails
#
# The library does not change the caller's shell options; it works both
# under `set -euo pipefail` (as the scripts use it) and without it.

# Repo root, computed from this file's location (scripts/lib/services.sh).
SLUICE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export SLUICE_ROOT

# PostgreSQL 15 server binaries (Debian layout); overridable.
: "${SLUICE_PG_BIN:=/usr/lib/postgresql/15/bin}"

_sluice_log() { echo "[services] $*" >&2; }

# Run a command as root: directly if we are root, else via sudo.
_sluice_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# Run a command as the `postgres` OS user (initdb/postgres refuse root).
# If we are not root, run it as ourselves. Always from the temp dir so the
# postgres user never has to access the caller's working directory.
_sluice_as_pg() {
    local dir="$1"; shift
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$dir" && runuser -u postgres -- "$@")
    else
        (cd "$dir" && "$@")
    fi
}

# True while the process with this PID exists.
_sluice_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Wait up to $2 seconds (default 15) for PID $1 to disappear.
_sluice_wait_gone() {
    local pid="$1" timeout="${2:-15}" i
    for ((i = 0; i < timeout * 4; i++)); do
        _sluice_alive "$pid" || return 0
        sleep 0.25
    done
    ! _sluice_alive "$pid"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
_sluice_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------

sluice_install_deps() {
    local missing=()
    command -v pg_config  >/dev/null 2>&1 || missing+=("pg_config (libpq-dev)")
    [ -f /usr/include/librdkafka/rdkafka.h ] || missing+=("rdkafka.h (librdkafka-dev)")
    command -v kcat       >/dev/null 2>&1 || missing+=("kcat")
    command -v socat      >/dev/null 2>&1 || missing+=("socat")
    [ -x /usr/sbin/ip ]                    || missing+=("ip (iproute2: the HA partition test's network namespaces)")
    command -v curl       >/dev/null 2>&1 || missing+=("curl")
    command -v openssl    >/dev/null 2>&1 || missing+=("openssl")
    [ -x "$SLUICE_PG_BIN/initdb" ]         || missing+=("initdb (postgresql-15)")
    command -v pkg-config >/dev/null 2>&1 || missing+=("pkg-config")
    command -v chromium   >/dev/null 2>&1 || missing+=("chromium (console browser test)")
    [ -f /usr/include/sqlite3.h ]          || missing+=("sqlite3.h (libsqlite3-dev)")
    [ -f /usr/include/lua5.4/lua.h ]       || missing+=("lua.h (liblua5.4-dev)")

    if [ "${#missing[@]}" -gt 0 ]; then
        _sluice_log "missing: ${missing[*]} — installing apt packages"
        _sluice_as_root apt-get update -q || return 1
        _sluice_as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q libpq-dev librdkafka-dev kcat socat iproute2 \
            postgresql-15 pkg-config libsqlite3-dev curl openssl liblua5.4-dev chromium || return 1
    fi

    # Project-local venv with the noida-db broker, and Playwright (driving Debian's chromium) for the console test.
    local venv="$SLUICE_ROOT/.venv"
    if [ ! -x "$venv/bin/noida-db" ] || ! "$venv/bin/python" -c 'import playwright' 2>/dev/null; then
        if [ ! -x "$venv/bin/pip" ]; then
            _sluice_log "creating $venv"
            rm -rf "$venv"
            if ! python3 -m venv "$venv"; then
                # Debian's system python needs python3-venv for ensurepip.
                rm -rf "$venv"
                _sluice_as_root env DEBIAN_FRONTEND=noninteractive \
                    apt-get install -y -q python3-venv || return 1
                python3 -m venv "$venv" || return 1
            fi
        fi
        _sluice_log "installing noida-db and playwright into $venv"
        "$venv/bin/pip" install -q noida-db playwright || return 1
    fi
}

# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------

sluice_free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

# One attempt at initdb + start on a fresh port. Sets the SLUICE_PG_* vars.
_sluice_start_postgres_once() {
    local dir port
    dir="$(mktemp -d "${TMPDIR:-/tmp}/sluice-pg.XXXXXX")" || return 1
    SLUICE_PG_DIR="$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$dir"
        # The postgres user must be able to reach the dir (TMPDIR could be
        # under a private home directory); fall back to /tmp.
        if ! runuser -u postgres -- test -w "$dir"; then
            rm -rf "$dir"
            dir="$(mktemp -d /tmp/sluice-pg.XXXXXX)" || return 1
            SLUICE_PG_DIR="$dir"
            chown postgres:postgres "$dir"
        fi
    fi

    # Cluster: trust auth, no fsync during initdb only (server keeps defaults).
    if ! _sluice_as_pg "$dir" "$SLUICE_PG_BIN/initdb" -D "$dir/data" \
            --auth=trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1; then
        rm -rf "$dir/data"
        if ! _sluice_as_pg "$dir" "$SLUICE_PG_BIN/initdb" -D "$dir/data" \
                --auth=trust -U postgres --no-sync -E UTF8 --locale=C \
                >>"$dir/initdb.log" 2>&1; then
            _sluice_log "initdb failed:"; cat "$dir/initdb.log" >&2
            return 2  # not a port problem: don't retry
        fi
    fi

    port="$(sluice_free_port)" || return 1
    SLUICE_PG_PORT="$port"
    cat >>"$dir/data/postgresql.conf" <<EOF

# --- sluice test settings ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_connections = 200
wal_sender_timeout = 60s
EOF

    # pg_ctl daemonizes the postmaster; -w waits until it accepts connections.
    if ! _sluice_as_pg "$dir" "$SLUICE_PG_BIN/pg_ctl" -D "$dir/data" \
            -l "$dir/postgres.log" -w -t 30 start >/dev/null; then
        _sluice_log "postgres failed to start on port $port"
        return 1
    fi
    SLUICE_PG_PID="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"

    local i
    for ((i = 0; i < 60; i++)); do
        if "$SLUICE_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
            return 0
        fi
        sleep 0.5
    done
    _sluice_log "postgres not ready after 30s on port $port"
    return 1
}

sluice_start_postgres() {
    local attempt rc=1
    # Retry a couple of times in case the free port got taken meanwhile.
    for attempt in 1 2 3; do
        if _sluice_start_postgres_once; then rc=0; break; else rc=$?; fi
        if [ -n "${SLUICE_PG_DIR:-}" ] && [ -f "$SLUICE_PG_DIR/postgres.log" ]; then
            _sluice_log "postgres log (attempt $attempt):"
            cat "$SLUICE_PG_DIR/postgres.log" >&2
        fi
        _sluice_stop_postgres
        [ "$rc" -eq 2 ] && break
    done
    [ "$rc" -eq 0 ] || return 1

    SLUICE_TEST_PG_URL="postgres://postgres@127.0.0.1:$SLUICE_PG_PORT/postgres"
    export SLUICE_PG_PORT SLUICE_PG_DIR SLUICE_PG_PID SLUICE_TEST_PG_URL
    _sluice_log "postgres up: port $SLUICE_PG_PORT, pid $SLUICE_PG_PID, dir $SLUICE_PG_DIR"
}

_sluice_stop_postgres() {
    local dir="${SLUICE_PG_DIR:-}" pid="${SLUICE_PG_PID:-}"
    if [ -n "$dir" ] && [ -z "$pid" ] && [ -f "$dir/data/postmaster.pid" ]; then
        pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
    fi
    if _sluice_alive "$pid"; then
        _sluice_as_pg "$dir" "$SLUICE_PG_BIN/pg_ctl" -D "$dir/data" \
            -m fast -w -t 30 stop >/dev/null 2>&1 || true
        if ! _sluice_wait_gone "$pid" 5; then
            kill -TERM "$pid" 2>/dev/null || true
            _sluice_wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
            _sluice_wait_gone "$pid" 5 || true
        fi
    fi
    [ -n "$dir" ] && rm -rf "$dir"
    unset SLUICE_PG_DIR SLUICE_PG_PID SLUICE_PG_PORT SLUICE_TEST_PG_URL
    return 0
}

# ---------------------------------------------------------------------------
# Kafka-compatible broker (noida-db)
# ---------------------------------------------------------------------------

# The venv's `noida-db` is a Python wrapper that runs the real binary as a
# child process, so killing the wrapper's PID would orphan the server. Run
# the bundled binary directly so the PID we record is the broker itself.
_sluice_noida_bin() {
    local venv="$SLUICE_ROOT/.venv" bin
    bin="$("$venv/bin/python" -c \
        'from importlib.resources import files; print(files("noida_db").joinpath("noida-db"))' \
        2>/dev/null || true)"
    if [ -n "$bin" ] && [ -f "$bin" ]; then
        [ -x "$bin" ] || chmod +x "$bin"
        echo "$bin"
    else
        echo "$venv/bin/noida-db"  # fallback: the wrapper
    fi
}

# One attempt on a fresh port. Sets the SLUICE_KAFKA_* vars.
_sluice_start_broker_once() {
    local dir port bin i
    bin="$(_sluice_noida_bin)"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/sluice-kafka.XXXXXX")" || return 1
    SLUICE_KAFKA_DIR="$dir"
    port="$(sluice_free_port)" || return 1
    SLUICE_KAFKA_PORT="$port"
    # Someone else grabbed the port meanwhile: our readiness check below
    # would talk to them, so try another port instead.
    if _sluice_port_open "$port"; then
        _sluice_log "port $port already in use"
        return 1
    fi

    "$bin" start --only kafka --host 127.0.0.1 --kafka-port "$port" \
        --data-dir "$dir/data" </dev/null >"$dir/broker.log" 2>&1 &
    SLUICE_KAFKA_PID=$!

    for ((i = 0; i < 120; i++)); do
        if ! _sluice_alive "$SLUICE_KAFKA_PID"; then
            _sluice_log "broker exited early (port $port)"
            return 1
        fi
        _sluice_port_open "$port" && break
        sleep 0.25
    done
    if ! _sluice_port_open "$port"; then
        _sluice_log "broker not listening after 30s on port $port"
        return 1
    fi

    # Make sure it actually answers Kafka metadata requests.
    for ((i = 0; i < 10; i++)); do
        if kcat -L -b "127.0.0.1:$port" -m 5 >/dev/null 2>&1; then
            # Still alive, so the listener is ours (noida-db exits at once
            # when the port is taken).
            _sluice_alive "$SLUICE_KAFKA_PID" && return 0
            _sluice_log "broker exited (port $port)"
            return 1
        fi
        sleep 0.5
    done
    _sluice_log "broker on port $port does not answer metadata requests"
    return 1
}

sluice_start_broker() {
    local attempt ok=0
    for attempt in 1 2 3; do
        if _sluice_start_broker_once; then ok=1; break; fi
        if [ -n "${SLUICE_KAFKA_DIR:-}" ] && [ -f "$SLUICE_KAFKA_DIR/broker.log" ]; then
            _sluice_log "broker log (attempt $attempt):"
            cat "$SLUICE_KAFKA_DIR/broker.log" >&2
        fi
        _sluice_stop_broker
    done
    [ "$ok" -eq 1 ] || return 1

    SLUICE_TEST_KAFKA_HOSTS="127.0.0.1:$SLUICE_KAFKA_PORT"
    export SLUICE_KAFKA_PORT SLUICE_KAFKA_PID SLUICE_KAFKA_DIR SLUICE_TEST_KAFKA_HOSTS
    _sluice_log "broker up: $SLUICE_TEST_KAFKA_HOSTS, pid $SLUICE_KAFKA_PID, dir $SLUICE_KAFKA_DIR"
}

_sluice_stop_broker() {
    local pid="${SLUICE_KAFKA_PID:-}" dir="${SLUICE_KAFKA_DIR:-}"
    if _sluice_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! _sluice_wait_gone "$pid" 10; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # Reap it if it is our child (no-op otherwise).
    [ -n "$pid" ] && { wait "$pid" 2>/dev/null || true; }
    [ -n "$dir" ] && rm -rf "$dir"
    unset SLUICE_KAFKA_PID SLUICE_KAFKA_DIR SLUICE_KAFKA_PORT SLUICE_TEST_KAFKA_HOSTS
    return 0
}

# ---------------------------------------------------------------------------
# Teardown
# ---------------------------------------------------------------------------

sluice_stop_services() {
    _sluice_stop_broker || true
    _sluice_stop_postgres || true
    return 0
}
