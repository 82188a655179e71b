#!/usr/bin/env bash
# Runs the IRC conformance suite (github progval/irctest) against osps, and against Debian's ngircd for
# comparison, and prints passed / failed / skipped per module.
#
#   scripts/irctest.sh IRCTEST_DIR [TARGET…] [--set basic|ircv3|all] [-- PYTEST_ARGS…]
#
# TARGET (default: osps-shared ngircd-shared):
#   osps-shared    ONE long-running osps (watchdog, dispatcher, two workers), started here, and irctest's
#                  external_server controller (IRCTEST_SERVER_HOSTNAME/PORT; see below): every test class meets
#                  the same server, whatever the classes before it left there, as a network runs
#   osps           a fresh osps per test class (tests/irctest/osps_controller.py, with the built-in services)
#   ngircd-shared  ONE long-running ngircd, with irctest's ngircd configuration, and external_server
#   ngircd         a fresh ngircd per test class (irctest's controller)
# --set basic: the RFC 1459/2812 modules (connection_registration messages join part names topic quit list)
#   with the markers '(RFC1459 or RFC2812) and not strict and not deprecated'; --set ircv3: chathistory
#   message_tags echo_message labeled_responses sasl account_registration monitor who away bot_mode with
#   'not strict and not deprecated'; --set all: both (one pytest run each).
#
# IRCTEST_DIR is a checkout of irctest (not vendored here). Needs pytest for the python3 on PATH (or $PYTHON)
# and ngircd for the comparison: apt-get install python3-pytest ngircd. osps-shared runs external_server as
# tests/irctest/osps_shared_controller.py extends it, with only what the built-in services give: no services to
# wait for, and accounts irctest asks for made through NickServ (ngircd-shared has no services: those skip).
set -uo pipefail
irctest=${1:?usage: scripts/irctest.sh IRCTEST_DIR [osps|osps-shared|ngircd|ngircd-shared]… [--set basic|ircv3|all]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
irctest=$(cd "$irctest" && pwd)
python=${PYTHON:-python3}
targets=()
set_name=basic
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --set) set_name=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    both) targets+=(osps ngircd); shift ;; # the per-class pair, as before
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=(osps-shared ngircd-shared)

basic=(connection_registration messages join part names topic quit list)
ircv3=(chathistory message_tags echo_message labeled_responses sasl account_registration monitor who away bot_mode)
runs=()
case $set_name in
  basic) runs=(basic) ;;
  ircv3) runs=(ircv3) ;;
  all) runs=(basic ircv3) ;;
  *) echo "unknown --set $set_name" >&2; exit 2 ;;
esac

# Debian 12's pytest 7 predates new-style hook wrappers (pluggy >= 1.2), which irctest's conftest uses:
# fall back to an old-style wrapper there (it only turns some skips into errors for servers that promise a
# behaviour; nothing in the modules run here).
if ! "$python" -c 'import pluggy, sys; v = tuple(int(x) for x in pluggy.__version__.split(".")[:2]); sys.exit(v < (1, 2))'; then
  sed -i 's/@pytest.hookimpl(wrapper=True)/@pytest.hookimpl(hookwrapper=True)/; s/return (yield)/yield/' "$irctest/conftest.py"
fi

work=$(mktemp -d /tmp/osps-irctest-XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
  server_pid=""
}
# KEEP=1 keeps the logs (pytest's, the server's) and says where.
trap 'cleanup; if [ -n "${KEEP:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi' EXIT

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_port() { # port: until something accepts there (60 s)
  for _ in $(seq 600); do
    if "$python" -c "import socket, sys; socket.create_connection(('127.0.0.1', $1), timeout=1).close()" 2>/dev/null; then
      return 0
    fi
    if [ -n "$server_pid" ] && ! kill -0 "$server_pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# irc port: one instance, as osps_controller.py starts one (same flags), but unregistered connections time out
# after 10 s, not 30: irctest waits for a registration that a failed SASL (an account an earlier class made with
# another password) never completes.
start_osps() {
  local deno dport
  deno=$(readlink -f "${DENO:-$(command -v deno)}")
  # The workers listen on the ports right after the dispatcher's: a free block, as osps_controller.py picks.
  dport=$(cd "$root/tests/irctest" && PYTHONPATH="$irctest" "$python" -c \
    'from osps_controller import _free_port_block; print(_free_port_block(2))')
  mkdir -p "$work/osps"
  "$deno" run --no-prompt --config="$root/deno.json" --allow-net --allow-ffi --allow-read=/tmp --allow-write=/tmp \
    --allow-run="$deno" "$root/main.ts" watchdog --host=127.0.0.1 --port="$dport" --workers=2 \
    --run-dir="$work/osps/run" --irc-port="$1" --data-dir="$work/osps/data" --irc-server-name=My.Little.Server \
    --log-level=warning --irc-auth-rate=0 --irc-password-min=1 --irc-register-timeout-ms=10000 \
    >"$work/osps-shared.log" 2>&1 &
  server_pid=$!
}

start_ngircd() { # irc port: irctest's ngircd configuration
  mkdir -p "$work/ngircd"
  PYTHONPATH="$irctest" "$python" - "$1" "$work/ngircd/server.conf" <<'EOF'
import sys
from irctest.controllers.ngircd import TEMPLATE_CONFIG
open(sys.argv[2], "w").write(TEMPLATE_CONFIG.format(hostname="127.0.0.1", port=sys.argv[1], password_field=""))
EOF
  ngircd --nodaemon --config "$work/ngircd/server.conf" >"$work/ngircd-shared.log" 2>&1 &
  server_pid=$!
}

# Counts per module from pytest's JUnit XML (testcase classname irctest.server_tests.<module>.<Class>).
summarize() {
  "$python" - "$1" <<'EOF'
import collections, sys, xml.etree.ElementTree as ET
counts = collections.defaultdict(collections.Counter)
for case in ET.parse(sys.argv[1]).iter("testcase"):
    module = case.get("classname", "").removeprefix("irctest.server_tests.").rsplit(".", 1)[0]
    kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
    counts[module][kinds[0] if kinds else "passed"] += 1
print(f"{'module':26} {'passed':>7} {'failed':>7} {'errors':>7} {'skipped':>7}")
for module in sorted(counts):
    c = counts[module]
    print(f"{module:26} {c['passed']:7} {c['failure']:7} {c['error']:7} {c['skipped']:7}")
EOF
}

pytest_run() { # controller, PYTHONPATH extra, the set, "shared" when one server serves every class
  local controller=$1 path=$2 set=$3 shared=${4:-}
  local files=() mods markers
  if [ "$set" = basic ]; then
    mods=("${basic[@]}"); markers='(RFC1459 or RFC2812) and not strict and not deprecated'
  else
    mods=("${ircv3[@]}"); markers='not strict and not deprecated'
  fi
  if [ -n "$shared" ] && [ "$set" = ircv3 ]; then
    # irctest's sasl classes reuse account names (foo, jilles) with other passwords, and some wait for 900
    # without a timeout: on one shared server the second class's login fails and the run hangs for ever.
    # They test a fresh server's accounts: run them on the per-class target (osps).
    echo "(sasl left out: it needs a fresh server per class; run it with the osps target)"
    mods=("${mods[@]/sasl/}")
  fi
  for m in "${mods[@]}"; do [ -n "$m" ] && files+=("irctest/server_tests/$m.py"); done
  rm -f "$work/pytest.xml"
  (cd "$irctest" && PYTHONPATH="$path${path:+:}$irctest" "$python" -m pytest -q -rfE -p no:cacheprovider \
    --junitxml="$work/pytest.xml" --controller "$controller" -m "$markers" "${files[@]}" "${extra[@]}" \
    >"$work/pytest.log" 2>&1)
  cp "$work/pytest.log" "$work/pytest-$target-$set.log"
  local status=$?
  [ -f "$work/pytest.xml" ] && summarize "$work/pytest.xml"
  grep -E '^(FAILED|ERROR) ' "$work/pytest.log" | cut -c1-160
  tail -n 1 "$work/pytest.log"
  return $status
}

status=0
for target in "${targets[@]}"; do
  for set in "${runs[@]}"; do
    case $target in
      osps)
        echo "== osps, a fresh instance per test class ($set)"
        pytest_run osps_controller "$root/tests/irctest" "$set" || status=1
        ;;
      ngircd)
        echo "== ngircd $(ngircd --version 2>/dev/null | head -1 | awk '{print $2}'), a fresh server per test class ($set)"
        pytest_run irctest.controllers.ngircd "" "$set" || status=1
        ;;
      osps-shared | ngircd-shared)
        port=$(free_port)
        if [ "$target" = osps-shared ]; then start_osps "$port"; else start_ngircd "$port"; fi
        if ! wait_port "$port"; then
          echo "$target did not start:" >&2
          cat "$work/$target.log" >&2
          exit 1
        fi
        echo "== $target, one long-running server on 127.0.0.1:$port ($set)"
        mechs=""
        [ "$target" = osps-shared ] && mechs="PLAIN SCRAM-SHA-256"
        controller=irctest.controllers.external_server path=""
        if [ "$target" = osps-shared ]; then controller=osps_shared_controller path="$root/tests/irctest"; fi
        IRCTEST_SERVER_HOSTNAME=127.0.0.1 IRCTEST_SERVER_PORT=$port IRCTEST_SERVER_SASL_MECHS="$mechs" \
          pytest_run "$controller" "$path" "$set" shared || status=1
        cleanup
        ;;
      *) echo "unknown target $target" >&2; exit 2 ;;
    esac
  done
done
exit $status
