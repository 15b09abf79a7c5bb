#!/usr/bin/env bash
# CI: the README's quick start as a newcomer meets it. The distribution's own
# /usr/bin/python3 (externally managed, PEP 668; possibly without pip or venv), a fresh
# HOME (no uv cache, no tools), PATH=/usr/bin:/bin, a fresh copy of the checkout: run
# `python3 dev.py up`, wait for the banner, run the README's "A first upload" block
# verbatim, then stop Cairn with one SIGINT to its process group, as a script would.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

if [ ! -x /usr/bin/python3 ]; then
    apt-get install -y --no-install-recommends python3 >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends python3 >/dev/null; }
fi
command -v curl >/dev/null || apt-get install -y --no-install-recommends curl >/dev/null

work="$(mktemp -d)"
pgid=""
cleanup() {
    if [ -n "$pgid" ] && kill -0 -- "-$pgid" 2>/dev/null; then
        kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The checkout as a fresh clone would have it (tracked and new files, nothing ignored).
mkdir -p "$work/cairn" "$work/home"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/cairn"

free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The machine's network settings (proxy, a TLS-intercepting CA) pass through: they are
# the network's, not a Python or tool installation.
net=()
for v in SSL_CERT_FILE SSL_CERT_DIR HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
    if [ -n "${!v:-}" ]; then net+=("$v=${!v}"); fi
done
run_env=(env -i HOME="$work/home" PATH=/usr/bin:/bin LANG=C.UTF-8 TERM=dumb "${net[@]}"
         CAIRN_PORT="$(free_port)" CAIRN_EMBEDDED_PG_PORT="$(free_port)"
         CAIRN_EMBEDDED_KAFKA_PORT="$(free_port)")
echo "quickstart: $(/usr/bin/python3 --version) from /usr/bin/python3, HOME=$work/home"
/usr/bin/python3 -c 'import sys; print("quickstart: pip", "present" if __import__("importlib.util").util.find_spec("pip") else "absent")'

start=$(date +%s)
cd "$work/cairn"
# setsid: Cairn leads its own process group, which gets the SIGINT below.
setsid "${run_env[@]}" python3 dev.py up >"$work/up.log" 2>&1 < /dev/null &
up_pid=$!
pgid=$up_pid
for _ in $(seq 1 340); do
    grep -q "Cairn is up." "$work/up.log" && break
    kill -0 "$up_pid" 2>/dev/null || break
    sleep 0.5
done
if ! grep -q "Cairn is up." "$work/up.log"; then
    echo "quickstart: FAILED: no banner" >&2
    tail -50 "$work/up.log" >&2
    exit 1
fi
up_at=$(date +%s)
echo "quickstart: banner after $((up_at - start)) s"
sed -n '/^Cairn is up./,/Ctrl-C/p' "$work/up.log"

# The README's walkthrough, verbatim, from the checkout as the README says.
awk '/^### A first upload/{f=1} f&&/^```sh$/{b=1; next} b&&/^```$/{exit} b' README.md >"$work/walkthrough.sh"
test -s "$work/walkthrough.sh"
if ! "${run_env[@]}" bash -euo pipefail "$work/walkthrough.sh" >"$work/walk.log" 2>&1; then
    echo "quickstart: FAILED: the README walkthrough" >&2
    cat "$work/walk.log" >&2
    tail -50 "$work/up.log" >&2
    exit 1
fi
grep -q "same bytes" "$work/walk.log"
sed 's/^/  walkthrough: /' "$work/walk.log" | cut -c1-160
done_at=$(date +%s)
echo "quickstart: first upload done $((done_at - start)) s after the first command"

# One SIGINT to the whole process group, as a script or service manager sends it.
kill -INT -- "-$pgid"
code=0
for _ in $(seq 1 120); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$up_pid" 2>/dev/null; then
    echo "quickstart: FAILED: still running 60 s after SIGINT" >&2
    exit 1
fi
wait "$up_pid" || code=$?
sleep 1
if pgrep -g "$pgid" >/dev/null; then
    echo "quickstart: FAILED: processes left in the group after stopping:" >&2
    pgrep -a -g "$pgid" >&2
    exit 1
fi
if [ "$code" -ne 0 ]; then
    # One signal, however delivered, is a clean stop: anything but 0 is a failure.
    echo "quickstart: FAILED: exit $code after one SIGINT (expected 0)" >&2
    exit 1
fi
echo "quickstart: stopped (exit $code) after $(($(date +%s) - done_at)) s; total $(($(date +%s) - start)) s"
