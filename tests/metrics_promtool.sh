#!/usr/bin/env bash
# Checks the service's `/metrics` with Prometheus' own parser and linter (`promtool check
# metrics`): a small generated base, one trained model, a nightly `score` run writing its
# `--metrics-textfile`, `churnguard serve --scores` over that night on a free loopback
# port, a few requests (a score among them, so every family has a series), then the
# scrape. The textfile passes the same check, its nightly lines are the scrape's, and
# the drift gauges hold the run summary's exact PSI values.
#
#   bash tests/metrics_promtool.sh
#
# promtool comes from Debian's `prometheus` package (installed here when missing and run
# as root). Environment: CHURNGUARD_BIN (a churnguard binary; default: build
# target/release/churnguard), PROMTOOL_WORK (default: $TMPDIR/churnguard-promtool),
# PYTHON (default python3; standard library only).
set -euo pipefail

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
WORK="${PROMTOOL_WORK:-${TMPDIR:-/tmp}/churnguard-promtool}"
PYTHON="${PYTHON:-python3}"

step "promtool"
if ! command -v promtool > /dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "promtool is missing: apt-get install prometheus (as root)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus > /dev/null
fi
promtool --version | head -1

step "churnguard binary"
cg_bin

step "a trained model ($WORK)"
rm -rf "$WORK"
mkdir -p "$WORK"
"$BIN" generate --customers 1500 --seed 5 --out "$WORK/data" > "$WORK/generate.log"
"$BIN" train --data "$WORK/data" --models "$WORK/models" --algorithms logistic > "$WORK/train.log"

step "a nightly run with --metrics-textfile"
END_DATE="$(cg_end_date "$WORK/models/churn/v1/manifest.json")"
"$BIN" score --data "$WORK/data" --models "$WORK/models" --as-of "$END_DATE" \
    --out "$WORK/scores.parquet" --metrics-textfile "$WORK/churnguard.prom" > "$WORK/score.log"
promtool check metrics < "$WORK/churnguard.prom"
echo "promtool check metrics (textfile): ok"

step "serve and scrape"
trap cg_stop_server EXIT
cg_serve "$WORK/serve" --models "$WORK/models" --scores "$WORK/scores.parquet"
"$PYTHON" - "$WORK" "$CG_URL" <<'PY'
import json, sys, urllib.error, urllib.request
work, base = sys.argv[1], sys.argv[2]

def call(path, body=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req)
    except urllib.error.HTTPError as e:
        return e

model = json.load(call("/v1/models/churn"))
features = {f["name"]: 0.0 for f in model["features"]}
assert call("/v1/score", {"customer_id": "c1", "features": features}).status == 200
assert call("/v1/score", {"customer_id": "c2"}).status == 422
assert call("/no/such/route").status == 404
text = call("/metrics").read().decode()
open(f"{work}/metrics.txt", "w").write(text)
for family in ["churnguard_http_requests_total", "churnguard_http_request_duration_seconds_bucket",
               "churnguard_score_bucket", "churnguard_model_info", "churnguard_model_reloads_total"]:
    assert f"\n{family}" in text, f"{family} missing from /metrics"
# What a dashboard relies on: sub-millisecond buckets, one label naming per model series,
# and the start-up load not counted as a reload.
for line in ['churnguard_http_request_duration_seconds_bucket{route="/v1/score",le="5e-05"}',
             'churnguard_model_info{model="churn",model_version="v1"} 1',
             'churnguard_score_count{model="churn",model_version="v1"} 1',
             'churnguard_model_reloads_total 0']:
    assert line in text, f"`{line}` missing from /metrics:\n{text}"
# The nightly series: the textfile's lines are the scrape's, and the drift gauges hold
# the summary's numbers exactly (the text's floats round-trip).
textfile = open(f"{work}/churnguard.prom").read()
assert textfile and textfile in text, f"the textfile's lines are not in /metrics:\n{textfile}"
summary = json.load(open(f"{work}/scores.parquet.summary.json"))
def value(series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split(" ")[-1])
    raise AssertionError(f"`{series}` missing from /metrics:\n{text}")
version = summary["model"].split(" ")[-1]
feature = next(f for f in summary["feature_psi"] if f["psi"] is not None)
assert value(f'churnguard_feature_psi{{model="churn",model_version="{version}",feature="{feature["feature"]}"}}') == feature["psi"]
assert value(f'churnguard_score_psi{{model="churn",model_version="{version}"}}') == summary["score_psi"]
assert value("churnguard_nightly_last_success_customers") == summary["customers_scored"]
assert value("churnguard_batch_alerts_raised") == summary["alerts_raised"]
assert abs(value("churnguard_batch_duration_seconds") - sum(summary["seconds"].values())) < 1e-9
assert value("churnguard_nightly_last_success_timestamp_seconds") > 1.7e9
print(f"{len(text.splitlines())} lines scraped from {base}/metrics; "
      f"{feature['feature']} PSI {feature['psi']} as in the summary")
PY
promtool check metrics < "$WORK/metrics.txt"
echo "promtool check metrics: ok"

step "the suggested alerting rules (deploy/prometheus)"
RULES="$(cd "$(dirname "${BASH_SOURCE[0]}")/../deploy/prometheus" && pwd)"
promtool check rules "$RULES/churnguard.rules.yml"
(cd "$RULES" && promtool test rules churnguard.rules.test.yml)
# Every series a rule reads is one the service or the textfile really exports, so a
# renamed series fails here instead of silencing an alert.
"$PYTHON" - "$RULES/churnguard.rules.yml" "$WORK/metrics.txt" "$WORK/churnguard.prom" <<'PY'
import re, sys
rules, scraped = open(sys.argv[1]).read(), open(sys.argv[2]).read() + open(sys.argv[3]).read()
exported = {re.sub(r"_(bucket|sum|count)$", "", l.split("{")[0].split(" ")[0])
            for l in scraped.splitlines() if l and not l.startswith("#")}
exported |= {l.split(" ")[2] for l in scraped.splitlines() if l.startswith("# TYPE ")}
used = {re.sub(r"_bucket$", "", n) for n in re.findall(r"\bchurnguard_[a-z0-9_]+", rules)}
missing = sorted(used - exported)
assert not missing, f"rules read series nobody exports: {missing}"
print(f"the rules read {len(used)} series, all exported")
PY
