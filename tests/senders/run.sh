#!/usr/bin/env bash
# The senders against outside code (CI runs this after the suite):
#  1. requests signed by the providers' own libraries (providers.py: Twilio's RequestValidator,
#     the standardwebhooks package) are accepted, and `hookbox sign --standard` verifies there;
#  2. schemathesis checks docs/openapi.json against the running server with bounded examples,
#     its requests signed by schemathesis_hooks.py: no 5xx, no answer outside the document.
# One debug server on an SQLite file in a temporary directory, every sender configured.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/senders-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/senders/requirements.txt

cargo build --locked -q
work=$(mktemp -d)
export WEBHOOK_SECRET=ci-webhook-secret
export HOOKBOX_WHATSAPP_APP_SECRET=ci-whatsapp-app-secret
export HOOKBOX_WHATSAPP_VERIFY_TOKEN=ci-verify-token
export HOOKBOX_TWILIO_AUTH_TOKEN=ci-twilio-token
export HOOKBOX_STANDARD_WEBHOOKS_SECRET=whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD
DATABASE_URL="$work/senders.db" HOST=127.0.0.1 PORT=0 HOOKBOX_PUBLIC_URL=http://placeholder \
  target/debug/hookbox >"$work/port-probe.log" 2>&1 &
# The port is only known once bound, and Twilio's signature covers it: bind once to learn a free
# port, then start the server for real on it with the matching HOOKBOX_PUBLIC_URL.
probe=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(grep -o '"addr":"[^"]*"' "$work/port-probe.log" | head -n 1 | cut -d'"' -f4 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
kill "$probe"; wait "$probe" || true
[ -n "$addr" ] || { cat "$work/port-probe.log"; echo "senders: the server did not start" >&2; exit 1; }
export HOOKBOX_PUBLIC_URL="http://$addr"
DATABASE_URL="$work/senders.db" HOST=127.0.0.1 PORT="${addr##*:}" target/debug/hookbox >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; [ -n "${SENDERS_KEEP:-}" ] || rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://$addr/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

"$venv/bin/python" tests/senders/providers.py "http://$addr" target/debug/hookbox

# Bounded: 25 examples per operation, a fixed seed; the stateful phase is left out (no links).
# Run from the temporary directory: schemathesis keeps a cache of failures in its working
# directory, which must neither land in the repository nor replay an old failure next time.
root=$PWD
(cd "$work" && SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$root/tests/senders" \
  "$root/$venv/bin/st" run "$root/docs/openapi.json" --url "http://$addr" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance,response_headers_conformance \
  --phases examples,coverage,fuzzing --max-examples 25 --seed 12 \
  --generation-database none --no-color --report-dir "$work/report")
echo "senders: providers' libraries accepted, schemathesis clean ($work/server.log: SENDERS_KEEP=1 keeps it)"
