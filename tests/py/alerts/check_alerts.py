"""Real alerts validated against schemas/alert.schema.json (JSON Schema draft 2020-12).

    python check_alerts.py SCHEMA BATCH.jsonl SERVICE.jsonl

Every line of both files must validate; each file must hold at least one alert, from its
own source. Exits non-zero naming the file, line and the first error.
"""
import json
import sys

from jsonschema import Draft202012Validator, FormatChecker

schema_path, batch, service = sys.argv[1:4]
schema = json.load(open(schema_path))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema, format_checker=FormatChecker())
failures = 0
for path, source in ((batch, "batch"), (service, "service")):
    lines = [l for l in open(path) if l.strip()]
    if not lines:
        print(f"FAIL {path}: no alert")
        failures += 1
    for n, line in enumerate(lines, 1):
        alert = json.loads(line)
        errors = sorted(validator.iter_errors(alert), key=lambda e: list(e.path))
        if alert.get("source") != source:
            print(f"FAIL {path}:{n}: source {alert.get('source')!r}, expected {source!r}")
            failures += 1
        # What makes an alert a task an account manager can act on, from either source.
        if "dimensions" not in alert or not all(r.get("text") for r in alert.get("reasons", [])):
            print(f"FAIL {path}:{n}: an alert without dimensions or without reason texts")
            failures += 1
        for e in errors[:3]:
            print(f"FAIL {path}:{n}: {'/'.join(map(str, e.path))}: {e.message}")
            failures += 1
    print(f"{path}: {len(lines)} {source} alerts checked")
sys.exit(1 if failures else 0)
