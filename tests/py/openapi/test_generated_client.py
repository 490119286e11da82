"""Drives churnguard through a client generated from its own /openapi.json.

Run by tests/openapi_client.sh, which generates the client (package `churnguard_client`),
starts the service and sets CG_URL, CG_KEY (an API key), CG_FEATURES (a CSV of real
customers' features from `churnguard features`) and CG_MODEL (the model name).

Every call goes through the generated client's typed functions: the answer is parsed into
the generated models, so an answer that breaks the document (tensor data typed as
objects, an undocumented status, a timestamp that is not a date-time) fails here.
"""

import csv
import datetime
import math
import os
import sys

from churnguard_client import AuthenticatedClient
from churnguard_client.api.models import model_detail
from churnguard_client.api.scoring import score, score_batch
from churnguard_client.api.v2 import infer, model_metadata
from churnguard_client.models import (
    BatchRequest,
    BatchResponse,
    ErrorBody,
    InferenceRequest,
    InferenceResponse,
    ModelDetail,
    ModelMetadata,
    RequestInput,
    ScoreRequest,
    ScoreResponse,
    V2ErrorBody,
)
from churnguard_client.models.score_request_features_type_0 import ScoreRequestFeaturesType0
from churnguard_client.types import UNSET

URL = os.environ["CG_URL"]
KEY = os.environ["CG_KEY"]
MODEL = os.environ["CG_MODEL"]
FEATURES = os.environ["CG_FEATURES"]

checks = 0


def check(condition, message):
    global checks
    if not condition:
        sys.exit(f"FAIL: {message}")
    checks += 1


def value(cell):
    """A feature cell of the CSV: undefined (empty or NaN) is None."""
    if cell in ("", "NaN", "nan", "null"):
        return None
    x = float(cell)
    return None if math.isnan(x) else x


def probability(p, what):
    check(isinstance(p, float) and 0.0 <= p <= 1.0, f"{what}: {p!r} is not a probability")
    return p


client = AuthenticatedClient(base_url=URL, token=KEY, raise_on_unexpected_status=True)
anonymous = AuthenticatedClient(base_url=URL, token="not-a-key", raise_on_unexpected_status=True)

# The feature schema, typed: FeatureDef objects and a date-time.
detail = model_detail.sync(name=MODEL, client=client)
check(isinstance(detail, ModelDetail), f"GET /v1/models/{MODEL}: {detail!r}")
check(isinstance(detail.created_at, datetime.datetime), f"created_at: {detail.created_at!r}")
names = [f.name for f in detail.features]
check(len(names) > 0 and all(isinstance(f.may_be_missing, bool) for f in detail.features),
      "ModelDetail.features: FeatureDef objects")
check(all(isinstance(v.created_at, datetime.datetime) for v in detail.versions), "versions[].created_at")
meta = model_metadata.sync(name=MODEL, client=client)
check(isinstance(meta, ModelMetadata) and [i.name for i in meta.inputs] == names,
      "GET /v2/models/{name}: one input per feature, in the model's order")

with open(FEATURES, newline="") as f:
    rows = list(csv.DictReader(f))[:5]
check(len(rows) == 5, f"{FEATURES}: 5 customers")
undefined = sum(value(r[n]) is None for r in rows for n in names)

# POST /v1/score, one real customer at a time.
v1 = []
for r in rows:
    features = ScoreRequestFeaturesType0.from_dict({n: value(r[n]) for n in names})
    answer = score.sync(client=client, body=ScoreRequest(customer_id=r["customer_id"], features=features))
    check(isinstance(answer, ScoreResponse), f"POST /v1/score: {answer!r}")
    check(answer.customer_id == r["customer_id"], "customer_id echoed")
    check(isinstance(answer.as_of, datetime.datetime), f"as_of: {answer.as_of!r}")
    check(0.0 <= answer.health_score <= 100.0, f"health_score {answer.health_score}")
    v1.append(probability(answer.churn_probability, "POST /v1/score"))

# POST /v1/score/batch, the same customers at once.
batch = score_batch.sync(
    client=client,
    body=BatchRequest(instances=[
        ScoreRequest(customer_id=r["customer_id"],
                     features=ScoreRequestFeaturesType0.from_dict({n: value(r[n]) for n in names}))
        for r in rows
    ]),
)
check(isinstance(batch, BatchResponse), f"POST /v1/score/batch: {batch!r}")
check([round(x.churn_probability, 12) for x in batch.results] == [round(p, 12) for p in v1],
      "the batch agrees with the single scores")

# POST /v2/models/{name}/infer: one FP64 column per feature, undefined values as null.
request = InferenceRequest(
    id="openapi-client",
    inputs=[
        RequestInput(name=n, datatype="FP64", shape=[len(rows)], data=[value(r[n]) for r in rows])
        for n in names
    ] + [RequestInput(name="customer_id", datatype="BYTES", shape=[len(rows)],
                      data=[r["customer_id"] for r in rows])],
)
answer = infer.sync(name=MODEL, client=client, body=request)
check(isinstance(answer, InferenceResponse), f"POST /v2/models/{MODEL}/infer: {answer!r}")
check(answer.model_name == MODEL and answer.id == "openapi-client", "model_name and id echoed")
outputs = {o.name: o for o in answer.outputs}
check(set(outputs) == {"churn_probability", "risk_tier", "reasons"}, f"outputs {sorted(outputs)}")
v2 = [probability(p, "POST /v2 infer") for p in outputs["churn_probability"].data]
check(outputs["churn_probability"].shape == [len(rows)], "churn_probability shape [N]")
check(all(abs(a - b) < 1e-12 for a, b in zip(v1, v2)) and len(v2) == len(v1),
      f"/v1 and /v2 agree: {v1} vs {v2}")
check(all(t in ("low", "medium", "high") for t in outputs["risk_tier"].data), "risk_tier")

# Errors are typed too: documented statuses parse into the error bodies.
# (Neither `features` nor `activity`: the document's oneOf says so too.)
bad = score.sync_detailed(client=client, body=ScoreRequest(customer_id="c1"))
check(bad.status_code == 422 and isinstance(bad.parsed, ErrorBody)
      and bad.parsed.error.field not in (None, UNSET), f"422: {bad.parsed!r}")
denied = infer.sync_detailed(name=MODEL, client=anonymous, body=request)
check(denied.status_code == 401 and isinstance(denied.parsed, V2ErrorBody), f"401 on /v2: {denied.parsed!r}")
denied = score.sync_detailed(client=anonymous, body=ScoreRequest(customer_id="c1"))
check(denied.status_code == 401 and isinstance(denied.parsed, ErrorBody), f"401 on /v1: {denied.parsed!r}")
missing = infer.sync_detailed(name="no-such-model", client=client, body=request)
check(missing.status_code == 404 and isinstance(missing.parsed, V2ErrorBody), f"404 on /v2: {missing.parsed!r}")

print(f"ok: {checks} checks; {len(rows)} real customers ({undefined} undefined feature values) "
      f"scored through the generated client on /v1 and /v2: {[round(p, 4) for p in v1]}")
