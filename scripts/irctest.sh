#!/usr/bin/env bash
# Runs the IRC conformance suite (github progval/irctest) against osps, and
# against Debian's ngircd for comparison, on the basic RFC 1459/2812 modules.
#
#   scripts/irctest.sh IRCTEST_DIR [osps|ngircd|both]
#
# IRCTEST_DIR is a checkout of irctest (not vendored here; it is fetched by hand,
# it is not on a registry). Needs Debian's python3-pytest (and ngircd for the
# comparison): apt-get install python3-pytest ngircd. Prints the pytest summary
# of each run.
set -uo pipefail
irctest=${1:?usage: scripts/irctest.sh IRCTEST_DIR [osps|ngircd|both]}
which=${2:-both}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-/usr/bin/python3}
modules=(connection_registration messages join part names topic quit list)
files=()
for m in "${modules[@]}"; do files+=("irctest/server_tests/$m.py"); done
markers='(RFC1459 or RFC2812) and not strict and not deprecated'

run() { # controller module, extra PYTHONPATH
  (cd "$irctest" && PYTHONPATH="$2${2:+:}$irctest" "$python" -m pytest -q -p no:cacheprovider \
    --controller "$1" -m "$markers" "${files[@]}" 2>&1 | tail -n "${TAIL:-3}")
}

# Debian 12's pytest 7 predates new-style hook wrappers (pluggy >= 1.2), which irctest's conftest uses:
# fall back to an old-style wrapper there (it only turns some skips into errors for servers that promise a
# behaviour; nothing in the modules run here).
if ! "$python" -c 'import pluggy, sys; v = tuple(int(x) for x in pluggy.__version__.split(".")[:2]); sys.exit(v < (1, 2))'; then
  sed -i 's/@pytest.hookimpl(wrapper=True)/@pytest.hookimpl(hookwrapper=True)/; s/return (yield)/yield/' "$irctest/conftest.py"
fi

status=0
if [ "$which" = osps ] || [ "$which" = both ]; then
  echo "== osps"
  run osps_controller "$root/tests/irctest" || status=1
fi
if [ "$which" = ngircd ] || [ "$which" = both ]; then
  echo "== ngircd $(ngircd --version 2>/dev/null | head -1 | awk '{print $2}')"
  run irctest.controllers.ngircd "" || status=1
fi
exit $status
