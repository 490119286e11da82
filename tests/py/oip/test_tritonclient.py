"""churnguard's /v2 routes driven by tritonclient, the Open Inference Protocol's reference client.

Run by tests/oip.sh against a live `churnguard serve` whose registry has v1 (base features)
and v2 (with customer attributes, production). Every number is checked against another
path through churnguard: `/v1/score` for the same features, and the nightly score file
`score --version v1` wrote for the same customers.
"""

import argparse
import csv
import json
import math
import sys
import traceback
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from tritonclient.http import _utils as triton_utils
from tritonclient.utils import InferenceServerException

MODEL = "churn"
OUTPUTS = ["churn_probability", "risk_tier", "reasons"]
ROWS = 40
TIERS = {"low", "medium", "high"}
# The key columns of a `churnguard features` table; every other column is a model input.
KEYS = ("customer_id", "as_of")


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True, help="host:port of churnguard serve")
    p.add_argument("--key", required=True, help="an API key of the server")
    p.add_argument("--features-v1", required=True, help="`features --models` CSV, v1 schema")
    p.add_argument("--features-v2", required=True, help="`features --models` CSV, v2 schema")
    p.add_argument("--scores-v1", required=True, help="`score --version v1` CSV, same as_of")
    return p.parse_args()


ARGS = parse_args()
AUTH = {"Authorization": f"Bearer {ARGS.key}"}


def headers():
    """A fresh headers dict per call: tritonclient's `infer` writes
    Inference-Header-Content-Length into the dict it is given, so a dict reused across
    calls would send a binary request's header length with the next JSON request."""
    return dict(AUTH)


CLIENT = httpclient.InferenceServerClient(url=ARGS.addr)


def number(cell):
    """A feature cell of churnguard's CSV: empty (or NaN) is an undefined value."""
    return math.nan if cell in ("", "NaN", "nan", "null") else float(cell)


def read_features(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows, f"{path} has no rows"
    return rows


def get_json(path):
    req = urllib.request.Request(f"http://{ARGS.addr}{path}", headers=headers())
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def post_json(path, body):
    req = urllib.request.Request(
        f"http://{ARGS.addr}{path}",
        data=json.dumps(body).encode(),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


FEATURES_V1 = read_features(ARGS.features_v1)
FEATURES_V2 = read_features(ARGS.features_v2)
MODEL_V2 = get_json(f"/v1/models/{MODEL}")
MAY_BE_MISSING = {f["name"] for f in MODEL_V2["features"] if f["may_be_missing"]}
REQUIRED = [f["name"] for f in MODEL_V2["features"] if not f["may_be_missing"]]
COLUMNS_V2 = [f["name"] for f in MODEL_V2["features"]]


def matrix(rows, columns):
    """Rows of the features table as one float64 column per feature, in `columns` order."""
    return {c: np.array([number(r[c]) for r in rows], dtype=np.float64) for c in columns}


def sample_v2():
    """The first ROWS customers of the v2 table, with one value of `monthly_fee` (a
    may_be_missing attribute) forced undefined, so that NaN goes over the wire for certain."""
    rows = [dict(r) for r in FEATURES_V2[:ROWS]]
    assert "monthly_fee" in MAY_BE_MISSING, f"monthly_fee should be may_be_missing: {MAY_BE_MISSING}"
    defined = [i for i, r in enumerate(rows) if r["monthly_fee"] not in ("", "NaN", "nan")]
    assert defined, "no customer with a monthly_fee to blank"
    rows[defined[0]]["monthly_fee"] = ""
    return rows


def inputs_of(cols, binary, datatype="FP64"):
    inputs = []
    for name, values in cols.items():
        t = httpclient.InferInput(name, list(values.shape), datatype)
        t.set_data_from_numpy(values.astype(np.float16) if datatype == "FP16" else values, binary_data=binary)
        inputs.append(t)
    return inputs


def infer(cols, binary, version="", outputs=None):
    return CLIENT.infer(
        MODEL,
        inputs_of(cols, binary),
        model_version=version,
        outputs=outputs,
        headers=headers(),
    )


def check_outputs(result, n, version):
    answer = result.get_response()
    assert answer["model_name"] == MODEL, answer["model_name"]
    assert answer["model_version"] == version, answer["model_version"]
    p = result.as_numpy("churn_probability")
    assert p is not None and p.dtype == np.float64 and p.shape == (n,), (p, p.dtype)
    assert np.all((p >= 0.0) & (p <= 1.0)), p
    assert len(set(p.round(12))) > 1, f"every customer got the same probability: {p}"
    tiers = result.as_numpy("risk_tier")
    assert tiers.shape == (n,), tiers.shape
    tiers = {t.decode() if isinstance(t, bytes) else t for t in tiers}
    assert tiers <= TIERS, tiers
    reasons = result.as_numpy("reasons")
    first = json.loads(reasons[0].decode() if isinstance(reasons[0], bytes) else reasons[0])
    assert isinstance(first, list) and first and "feature" in first[0], first
    return p


def v1_score(row, columns):
    """`POST /v1/score` for one features row (undefined values as null)."""
    feats = {}
    for c in columns:
        x = number(row[c])
        feats[c] = None if math.isnan(x) else x
    return post_json("/v1/score", {"customer_id": row["customer_id"], "features": feats})


def refusal(call):
    """Runs `call`, which must fail with an InferenceServerException; returns it."""
    try:
        call()
    except InferenceServerException as e:
        return e
    raise AssertionError("the server accepted a request it should refuse")


# --- tests ---------------------------------------------------------------------------------


def test_server_health_and_metadata():
    assert CLIENT.is_server_live(headers=headers()) is True
    assert CLIENT.is_server_ready(headers=headers()) is True
    meta = CLIENT.get_server_metadata(headers=headers())
    assert meta["name"] == "churnguard", meta
    assert "binary_tensor_data" in meta["extensions"], meta


def test_model_metadata_and_readiness():
    assert CLIENT.is_model_ready(MODEL, headers=headers()) is True
    meta = CLIENT.get_model_metadata(MODEL, headers=headers())
    assert meta["name"] == MODEL, meta
    assert meta["versions"] == ["v1", "v2"], meta["versions"]
    assert [i["name"] for i in meta["inputs"]] == COLUMNS_V2, meta["inputs"]
    assert all(i["datatype"] == "FP64" and i["shape"] == [-1] for i in meta["inputs"])
    assert [o["name"] for o in meta["outputs"]] == OUTPUTS, meta["outputs"]
    # The features table `features --models` wrote is the served schema, column for column.
    assert [c for c in FEATURES_V2[0] if c not in KEYS] == COLUMNS_V2


def test_infer_json_with_nan_agrees_with_v1_score():
    rows = sample_v2()
    cols = matrix(rows, COLUMNS_V2)
    assert np.isnan(cols["monthly_fee"]).any()
    # What tritonclient puts on the wire: literal NaN tokens in the JSON, no binary part.
    inputs = inputs_of(cols, binary=False)
    body, json_size = triton_utils._get_inference_request(
        inputs=inputs, request_id="", outputs=None, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters=None,
    )
    assert json_size is None and b"NaN" in body, body[:200]
    outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in OUTPUTS]
    p = check_outputs(infer(cols, binary=False, outputs=outputs), len(rows), "v2")
    for j, row in enumerate(rows):
        want = v1_score(row, COLUMNS_V2)
        assert want["model"]["version"] == "v2", want["model"]
        assert math.isclose(p[j], want["churn_probability"], rel_tol=1e-12, abs_tol=1e-15), (
            row["customer_id"], p[j], want["churn_probability"])


def test_infer_binary_default_gives_the_same_numbers():
    rows = sample_v2()
    cols = matrix(rows, COLUMNS_V2)
    json_p = infer(cols, binary=False).as_numpy("churn_probability")
    # tritonclient's defaults: binary inputs, no outputs named (binary_data_output asked).
    inputs = inputs_of(cols, binary=True)
    body, json_size = triton_utils._get_inference_request(
        inputs=inputs, request_id="", outputs=None, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters=None,
    )
    assert json_size is not None and len(body) == json_size + 8 * len(rows) * len(cols)
    ids = httpclient.InferInput("customer_id", [len(rows)], "BYTES")
    ids.set_data_from_numpy(np.array([r["customer_id"].encode() for r in rows], dtype=np.object_))
    result = CLIENT.infer(MODEL, inputs + [ids], headers=headers())
    p = check_outputs(result, len(rows), "v2")
    assert np.allclose(p, json_p, rtol=1e-12, atol=0), (p, json_p)
    assert "ignored_inputs" not in (result.get_response().get("parameters") or {})


def test_pinned_v1_after_v2_is_production():
    assert CLIENT.is_model_ready(MODEL, "1", headers=headers()) is True
    assert CLIENT.is_model_ready(MODEL, "v1", headers=headers()) is True
    meta = CLIENT.get_model_metadata(MODEL, "1", headers=headers())
    columns = [i["name"] for i in meta["inputs"]]
    assert columns == [c for c in FEATURES_V1[0] if c not in KEYS], columns
    assert "monthly_fee" not in columns and "monthly_fee" in COLUMNS_V2
    with open(ARGS.scores_v1, newline="") as f:
        nightly = {r["customer_id"]: r for r in csv.DictReader(f)}
    rows = [r for r in FEATURES_V1 if r["customer_id"] in nightly][:ROWS]
    assert len(rows) == ROWS, len(rows)
    for version in ("1", "v1"):
        p = check_outputs(infer(matrix(rows, columns), binary=True, version=version), len(rows), "v1")
        for j, row in enumerate(rows):
            night = nightly[row["customer_id"]]
            assert night["model_version"] == "v1", night
            want = float(night["churn_probability"])
            assert math.isclose(p[j], want, rel_tol=1e-9, abs_tol=1e-12), (row["customer_id"], p[j], want)
    # The served version answers unpinned, as before.
    v2 = infer(matrix(FEATURES_V2[:ROWS], COLUMNS_V2), binary=True).get_response()
    assert v2["model_version"] == "v2", v2["model_version"]


def test_unknown_version_is_404():
    e = refusal(lambda: CLIENT.get_model_metadata(MODEL, "99", headers=headers()))
    assert e.status() == "404" and "99" in e.message(), (e.status(), e.message())


def test_nan_in_a_required_feature_is_a_400_naming_it():
    feature = REQUIRED[0]
    rows = sample_v2()
    for binary in (False, True):
        cols = matrix(rows, COLUMNS_V2)
        cols[feature][3] = np.nan
        e = refusal(lambda: infer(cols, binary=binary))
        assert e.status() == "400", (binary, e.status(), e.message())
        msg = e.message()
        assert f"`{feature}`" in msg and "element 3" in msg and "may_be_missing" in msg, msg


def test_fp16_binary_is_refused_with_a_message():
    cols = matrix(sample_v2(), COLUMNS_V2)
    e = refusal(lambda: CLIENT.infer(MODEL, inputs_of(cols, binary=True, datatype="FP16"), headers=headers()))
    assert e.status() == "400" and "FP16" in e.message(), (e.status(), e.message())


def main():
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, f in tests:
        try:
            f()
        except Exception:
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
