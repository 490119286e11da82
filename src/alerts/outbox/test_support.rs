//! Fixtures shared by the outbox's unit tests.

use super::{Observation, Outbox, Transition};
use crate::alerts::Alert;
use crate::scoring::{ModelRef, Tier};
use crate::time::{parse_ts, Ts};

pub(super) fn model() -> ModelRef {
    ModelRef {
        name: "churn".into(),
        version: "v1".into(),
    }
}

pub(super) fn night(d: &str) -> Ts {
    parse_ts(d).unwrap()
}

pub(super) fn build(t: &Transition<'_>) -> Alert {
    t.alert(model(), 0.91, Alert::SOURCE_BATCH)
}

/// An empty outbox in its own temporary directory (kept alive by the first value).
pub(super) fn fresh() -> (tempfile::TempDir, Outbox) {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path().join("a.db")).unwrap();
    (dir, outbox)
}

pub(super) fn obs(customer_id: &str, tier: Tier, as_of: Ts) -> Observation<'_> {
    Observation {
        customer_id,
        tier,
        as_of,
    }
}
