#!/usr/bin/env bash
#
# bench/broker.sh — start or stop one throwaway broker for bench/bench.py, through the same
# scripts/lib/services.sh functions the tests use.
#
#   bench/broker.sh start           prints "PID PORT DIR" of a fresh broker on a free 127.0.0.1 port
#   bench/broker.sh stop PID DIR    stops it (by PID) and removes its directory
#
# bench.py starts a fresh broker for every measurement: the noida-db broker keeps every message in
# memory and re-serialises all of it to disk in the background, so a broker holding millions of
# messages from earlier runs would eat the CPU (and memory) of the next measurement.
set -euo pipefail

# shellcheck source=../scripts/lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/services.sh"

case "${1:-}" in
    start)
        sluice_start_broker >&2
        echo "$SLUICE_KAFKA_PID $SLUICE_KAFKA_PORT $SLUICE_KAFKA_DIR"
        ;;
    stop)
        SLUICE_KAFKA_PID="$2" SLUICE_KAFKA_DIR="$3" _sluice_stop_broker
        ;;
    *)
        echo "usage: $0 start | stop PID DIR" >&2
        exit 2
        ;;
esac
