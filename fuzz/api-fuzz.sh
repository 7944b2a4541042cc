#!/usr/bin/env bash
# API fuzzing (`make api-fuzz`, part of `make test`): schemathesis with every check and none
# excluded against a real boifi-server's own /v1/openapi.json, every operation, all phases
# (examples, coverage, fuzzing, stateful), on each store the server has:
#   embedded  the redb file (`--storage embedded`), a token configured and sent;
#   etcd      Debian's etcd on loopback (`--storage etcd`), started here, no token;
#   no-token  the embedded store with a token configured and not sent (every mutation must be
#             the documented 401);
#   scoped    the memory store with named credentials (`--credentials`) and opted-in
#             namespaces (`--target-namespaces demo`), sending a token that may read and write
#             only in `demo` (most generated policies select elsewhere: the documented 403).
# Passes only if every run generated at least one case, schemathesis found no failure and no
# error, and the server is still alive with no `panicked` line in its log.
#
# Time budget: API_FUZZ_SECONDS (default 45) for each store run, API_FUZZ_AUTH_SECONDS
# (default 15) for the no-token run and API_FUZZ_SCOPED_SECONDS (default 15) for the scoped
# run, so about 135 s with start-up; API_FUZZ_SEED (default 4243)
# makes a run repeatable.
#
# fuzz/api/schemathesis.toml: 412 counts as an answer to valid data (a revision in `If-Match`
# the policy does not have), like schemathesis's own 404 and 409. fuzz/api/hooks.py: the
# relations the document states in words (JSON Schema cannot compare two values) applied to
# valid requests, and long-polls held at most 1 s. One worker: CPython 3.11's parser fails
# ("AST constructor recursion depth mismatch") on the deeply nested policy schema in a thread.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${API_FUZZ_SECONDS:-45}"
AUTH_SECONDS="${API_FUZZ_AUTH_SECONDS:-15}"
SCOPED_SECONDS="${API_FUZZ_SCOPED_SECONDS:-15}"
SEED="${API_FUZZ_SEED:-4243}"
PYTHON="${PYTHON:-python3}"

# schemathesis lives in the project's venv (scripts/deps.sh pins it).
st="$(bash scripts/venv-path.sh)/bin/st"
if [ ! -x "$st" ]; then
  echo "api-fuzz: schemathesis (\`$st\`) is missing: run \`make deps\`" >&2
  exit 1
fi
ETCD="${ETCD:-$(command -v etcd || true)}"
if [ -z "$ETCD" ]; then
  echo "api-fuzz: etcd is missing: install Debian's \`etcd-server\`" >&2
  exit 1
fi
cargo build --quiet -p boifi-server
SERVER="$PWD/target/debug/boifi-server"

work="$(mktemp -d)"
pid=""
etcd_pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$etcd_pid" ] && kill "$etcd_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
TOKEN="api-fuzz-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
printf '%s\n' "$TOKEN" >"$work/token"
SCOPED_TOKEN="api-fuzz-scoped-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
cat >"$work/credentials.yaml" <<YAML
tokens:
  - name: fuzz-ci
    token: "$SCOPED_TOKEN"
    may: [read, write]
    namespaces: [demo]
YAML

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until `url` answers 200 (20 s at most).
await_ok() {
  "$PYTHON" - "$1" <<'PY'
import sys, time, urllib.request
for _ in range(400):
    try:
        if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}

start_etcd() {
  local client peer
  client="$(free_port)"
  peer="$(free_port)"
  "$ETCD" --name api-fuzz --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "api-fuzz=http://127.0.0.1:$peer" --log-level error >"$work/etcd.log" 2>&1 &
  etcd_pid=$!
  ETCD_URL="http://127.0.0.1:$client"
  if ! await_ok "$ETCD_URL/health"; then
    echo "api-fuzz: etcd did not become healthy" >&2
    tail -20 "$work/etcd.log" >&2
    exit 1
  fi
}

failed=0
for setup in embedded etcd no-token scoped; do
  port="$(free_port)"
  # A Prometheus address where nothing listens: guarded policies are accepted (and their
  # guards, blind, trip them), as on a server configured for guards.
  args=(--listen "127.0.0.1:$port" --prometheus-url "http://127.0.0.1:9")
  st_args=()
  seconds="$SECONDS_PER_RUN"
  case "$setup" in
    embedded)
      args+=(--storage embedded --data-dir "$work/data-embedded" --auth-token-file "$work/token")
      st_args=(-H "Authorization: Bearer $TOKEN") ;;
    etcd)
      start_etcd
      args+=(--storage etcd --etcd-endpoints "$ETCD_URL") ;;
    no-token)
      args+=(--storage embedded --data-dir "$work/data-no-token" --auth-token-file "$work/token")
      seconds="$AUTH_SECONDS" ;;
    scoped)
      args+=(--storage memory --credentials "$work/credentials.yaml" --target-namespaces demo)
      st_args=(-H "Authorization: Bearer $SCOPED_TOKEN")
      seconds="$SCOPED_SECONDS" ;;
  esac
  log="$work/server-$setup.log"
  RUST_LOG=info "$SERVER" "${args[@]}" >"$log" 2>&1 &
  pid=$!
  status=ok
  await_ok "http://127.0.0.1:$port/v1/ready" || status="FAILED (server not ready)"
  out="$work/st-$setup.out"
  if [ "$status" = ok ]; then
    SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$PWD/fuzz/api" \
      "$st" --config-file fuzz/api/schemathesis.toml run "http://127.0.0.1:$port/v1/openapi.json" \
      --checks all --max-time "$seconds" --seed "$SEED" --workers 1 --request-timeout 10 \
      --generation-database none --no-color --suppress-health-check all --warnings off \
      "${st_args[@]}" >"$out" 2>&1 || status=FAILED
  fi
  if ! kill -0 "$pid" 2>/dev/null; then status="FAILED (server died)"; fi
  if grep -q "panicked" "$log"; then status="FAILED (server panicked)"; fi
  # No token may reach the server's log.
  if grep -qF -e "$TOKEN" -e "$SCOPED_TOKEN" "$log"; then status="FAILED (a token in the log)"; fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  if [ -n "$etcd_pid" ]; then
    kill "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
    etcd_pid=""
  fi
  cases="$(grep -oE '[0-9]+ generated' "$out" 2>/dev/null | tail -1 | grep -oE '^[0-9]+' || true)"
  # The summary lists each failed check with its count ("❌ ST108 Response violates schema: 1").
  found="$(sed -n '/^Failures:/,/^$/p' "$out" 2>/dev/null | awk -F': ' '/: [0-9]+$/ {n += $NF} END {print n + 0}')"
  if [ "${cases:-0}" -eq 0 ] && [ "$status" = ok ]; then status="FAILED (no test case ran)"; fi
  echo "api-fuzz: $setup: ${cases:-0} cases, ${found:-0} failures in ${seconds} s (seed $SEED): $status"
  if [ "$status" != ok ]; then
    failed=1
    # `|| true`: an output with nothing to show must not end the loop before the other set-ups.
    sed -n '/ERRORS\|FAILURES/,$p' "$out" | grep -v '^ *|' | head -80 || true
    tail -20 "$log" || true
  fi
done
exit "$failed"
