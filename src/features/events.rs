//! Usage events: the total of the last 30 days, then per top event type its count and
//! its change against the 30 days before (table `events`).

use super::explain::{Dimension, Text, Unit};
use super::family::{push_all, write, At, Def};
use super::spec::{slug, FeatureDef, Transform};
use crate::data::{before, between};

/// The table the family reads.
pub(super) const TABLE: &str = "events";

/// What the model lacks when the table is absent.
pub(super) const SUMMARY: &str = "usage event counts and their change";

/// The features of every customer base with events, before the per-type ones.
pub(super) const FEATURES: [Def; 1] = [Def::new(
    "events_30d",
    Transform::Log1p,
    false,
    "usage events in the last 30 days",
)
.says(Text::Count {
    one: "usage event",
    many: "usage events",
    rest: " in the last 30 days",
})];

/// Event types beyond this many get no counts (their columns stay 0).
const MAX_TYPES: usize = 64;

/// Features per event type.
const PER_TYPE: usize = 2;

/// The features of event type `ty`, in schema order.
fn type_defs(ty: &str) -> [FeatureDef; PER_TYPE] {
    let s = slug(ty);
    let def = |name: String, description: String, text: Text| FeatureDef {
        name,
        description,
        table: TABLE.into(),
        transform: Transform::Log1p,
        may_be_missing: false,
        by_construction: false,
        dimension: Dimension::Engagement,
        text,
    };
    [
        def(
            format!("events_{s}_30d"),
            format!("`{ty}` events in the last 30 days"),
            Text::Count {
                one: "event",
                many: "events",
                rest: " of this type in the last 30 days",
            },
        ),
        def(
            format!("events_{s}_change"),
            format!("(`{ty}` events in the last 30 days + 1) / (in the 30 days before + 1)"),
            Text::Value {
                pattern: "events of this type at {v} their earlier rate",
                unit: Unit::Times,
                missing: "no change measured",
            },
        ),
    ]
}

/// The values of [`type_defs`] from the type's counts in the last 30 days and the 30 before.
fn type_values(current: f64, prior: f64) -> [f64; PER_TYPE] {
    [current, (current + 1.0) / (prior + 1.0)]
}

/// The family's features: [`FEATURES`], then [`type_defs`] of each type.
pub(super) fn defs(event_types: &[String], out: &mut Vec<FeatureDef>) {
    push_all(&FEATURES, TABLE, out);
    for ty in event_types {
        out.extend(type_defs(ty));
    }
}

/// Writes the values of [`defs`] at the start of `out`; returns how many. `types` is the
/// number of the spec's event types; `event_slot` maps the view's event kinds to them.
pub(super) fn compute(
    at: &At,
    types: usize,
    event_slot: &[Option<usize>],
    out: &mut [f64],
) -> usize {
    let t = at.t;
    let e = before(at.view.events, t);
    let w30 = between(e, at.days_ago(30), t);
    let prior = between(e, at.days_ago(60), at.days_ago(30));
    // Both windows are counted in one pass each, not once per type.
    let mut cur = [0u32; MAX_TYPES];
    let mut pre = [0u32; MAX_TYPES];
    let slot = |kind: u32| event_slot.get(kind as usize).copied().flatten();
    for x in w30 {
        if let Some(s) = slot(x.kind).filter(|&s| s < MAX_TYPES) {
            cur[s] += 1;
        }
    }
    for x in prior {
        if let Some(s) = slot(x.kind).filter(|&s| s < MAX_TYPES) {
            pre[s] += 1;
        }
    }
    let totals: [f64; FEATURES.len()] = [w30.len() as f64];
    let mut k = write(totals, out);
    for s in 0..types {
        let (c, b) = if s < MAX_TYPES {
            (cur[s] as f64, pre[s] as f64)
        } else {
            (0.0, 0.0)
        };
        k += write(type_values(c, b), &mut out[k..]);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{CustomerView, Event};
    use crate::features::family::check::{signed_up, ts, written};

    fn event(at: &str, kind: u32) -> Event {
        Event {
            at: ts(at),
            kind,
            value: 1.0,
        }
    }

    #[test]
    fn every_event_feature_of_a_hand_built_customer() {
        // Kinds of the view: 0 = post, 1 = search, 2 = a type the spec does not count.
        let events = [
            event("2024-02-20", 1),
            event("2024-02-25", 0),
            event("2024-02-26", 2),
            event("2024-03-20", 1),
            event("2024-03-21", 1),
            event("2024-03-22", 2),
            event("2024-04-01", 0),
        ];
        let view = CustomerView {
            events: &events,
            ..signed_up("2024-01-01")
        };
        let types = [
            "search".to_string(),
            "page view".to_string(),
            "post".to_string(),
        ];
        let event_slot = [Some(2), Some(0), None];
        let mut defs = Vec::new();
        super::defs(&types, &mut defs);
        let at = At::new(&view, ts("2024-04-01"));
        written(
            &defs,
            |out| compute(&at, types.len(), &event_slot, out),
            &[
                // [03-02, 04-01): two searches and the uncounted type; 04-01 is at T.
                ("events_30d", 3.0),
                ("events_search_30d", 2.0),
                // [01-31, 03-02): one search, one post.
                ("events_search_change", 1.5),
                ("events_page_view_30d", 0.0),
                ("events_page_view_change", 1.0),
                ("events_post_30d", 0.0),
                ("events_post_change", 0.5),
            ],
        );
    }
}
