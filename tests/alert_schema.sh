#!/usr/bin/env bash
# The alert payload against its JSON Schema (schemas/alert.schema.json, draft 2020-12):
# real alerts from a nightly `score` run (the JSON-lines sink; the webhook sends the same
# JSON) and from the service, validated with Python's `jsonschema`. Also prints a
# customer's series with `churnguard history`.
#
#   bash tests/alert_schema.sh
#
# Idempotent: the Python environment (tests/py/alerts/.venv, git-ignored) is reused while
# tests/py/alerts/requirements.txt is unchanged. Environment: CHURNGUARD_BIN (default: build
# target/release/churnguard), ALERT_SCHEMA_WORK (default: a new temporary directory, removed
# when the run passes), PYTHON.
set -euo pipefail

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
SUITE="$ROOT/tests/py/alerts"
VENV="$SUITE/.venv"
cg_work ALERT_SCHEMA_WORK alert-schema

step "python environment ($VENV)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$VENV" "$SUITE/requirements.txt"

step "churnguard binary"
cg_bin

step "a sample, a model and its nightly run ($WORK)"
DATA="$WORK/data"
MODELS="$WORK/models"
"$BIN" generate --customers 2000 --seed 15 --out "$DATA" > "$WORK/generate.log"
"$BIN" train --data "$DATA" --models "$MODELS" --algorithms logistic > "$WORK/train.log"
END="$(cg_end_date "$MODELS/churn/v1/manifest.json")"
AS_OF="$("${PYTHON:-python3}" -c 'import datetime, sys; print(datetime.date.fromisoformat(sys.argv[1]) + datetime.timedelta(days=1))' "$END")"
# Alerts from the medium tier, so both sources raise some; the owner and a profile
# attribute come from the sample's customer columns.
cat > "$WORK/churnguard.toml" <<TOML
[alerts]
tier = "medium"
owner_attribute = "channel"
profile_attributes = ["country"]
due_days = 2
log = "$WORK/service.jsonl"
TOML
"$BIN" score --config "$WORK/churnguard.toml" --data "$DATA" --models "$MODELS" \
    --as-of "$AS_OF" --out "$WORK/scores.parquet" --alerts "$WORK/batch.jsonl" \
    --outbox "$WORK/batch.db" > "$WORK/score.log"
ls "$WORK/history"
ID="$(head -n 1 "$WORK/batch.jsonl" | "${PYTHON:-python3}" -c 'import json, sys; print(json.load(sys.stdin)["customer_id"])')"
"$BIN" history --customer "$ID" --scores "$WORK/scores.parquet"
"$BIN" history --customer "$ID" --scores "$WORK/scores.parquet" --json > "$WORK/history.json"

step "churnguard serve: fresh customers at risk scored from features, and one from its activity"
KEY="alert-schema-key"
CHURNGUARD_API_KEYS="$KEY" cg_serve "$WORK/serve" --config "$WORK/churnguard.toml" \
    --models "$MODELS" --outbox "$WORK/service.db" --scores "$WORK/scores.parquet"
"${PYTHON:-python3}" - "$CG_URL" "$KEY" "$WORK/service.jsonl" "$ID" "$AS_OF" <<'PY'
import datetime, json, os, sys, time, urllib.request
url, key, log, known, as_of = sys.argv[1:6]
def call(path, body=None):
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
example = call("/openapi.json")["components"]["schemas"]["ScoreRequest"]["example"]
# The example customer, made to look like one leaving: no logins, many tickets.
at_risk = dict(example["features"])
for name in at_risk:
    if name.startswith("logins") or name.startswith("orders") or name.startswith("revenue"):
        at_risk[name] = 0.0
    elif name.startswith("days_since") or name.startswith("order_recency"):
        at_risk[name] = 120.0
    elif name.startswith("tickets"):
        at_risk[name] = 8.0
alerts = 0
for i in range(3):
    answer = call("/v1/score", {"customer_id": f"svc-{i}", "features": at_risk})
    alerts += answer["alert"]
assert alerts == 3, answer
# A customer sent as raw activity: gone quiet after a busy start, urgent tickets piling
# up. Its alert carries the task the batch would build: owner, attributes, trail.
night = datetime.date.fromisoformat(as_of)
day = lambda d: (night - datetime.timedelta(days=d)).isoformat()
activity = {
    "customer": {"signup_at": day(400), "channel": "partner", "country": "DE", "plan": "basic"},
    "logins": [day(d) for d in range(120, 400, 3)],
    "tickets": [{"opened_at": day(d), "priority": "urgent"} for d in (2, 4, 6, 9, 12, 15)],
    "orders": [{"at": day(d), "amount": 20.0} for d in range(150, 400, 30)],
}
answer = call("/v1/score", {"customer_id": "svc-activity", "as_of": as_of, "activity": activity})
assert answer["alert"], answer
alerts += 1
history = call(f"/v1/customers/{known}/history?days=30")
assert len(history["points"]) == 1, history
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    if os.path.exists(log) and len(open(log).read().splitlines()) >= alerts:
        break
    time.sleep(0.2)
else:
    sys.exit("the service wrote no alert to " + log)
sent = [a for a in map(json.loads, open(log)) if a["customer_id"] == "svc-activity"]
assert len(sent) == 1, sent
a = sent[0]
assert a["owner"] == "partner" and a["profile"]["attributes"] == {"country": "DE"}, a
assert a["profile"]["plan"] == "basic" and a["profile"]["revenue_365d"] == 160.0, a["profile"]
assert a["trail"]["tickets"][0]["opened_at"] == day(2) + "T00:00:00Z", a["trail"]
assert a["trail"]["logins"][0] == day(120) + "T00:00:00Z", a["trail"]["logins"][:3]
assert sum(w["tickets"] for w in a["trail"]["weekly"]) == 6, a["trail"]["weekly"]
PY

step "validate against schemas/alert.schema.json"
"$VENV/bin/python" "$SUITE/check_alerts.py" "$ROOT/schemas/alert.schema.json" \
    "$WORK/batch.jsonl" "$WORK/service.jsonl"
cg_done
echo "alert schema: ok"
