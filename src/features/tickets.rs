//! Support tickets: volume, open tickets, resolution time and csat (table `tickets`).
//! A ticket closed at or after `T` is open at `T`: its resolution and csat are not known yet.

use super::explain::{Text, Unit::*};
use super::family::{mean_std, At, Def};
use super::spec::Transform::*;
use crate::data::{before, between, Priority, Ticket};

/// The table the family reads.
pub(super) const TABLE: &str = "tickets";

/// What the model lacks when the table is absent.
pub(super) const SUMMARY: &str = "ticket volume, open tickets, resolution, csat";

/// The family's features, in schema order.
pub(super) const FEATURES: [Def; 8] = [
    Def::new(
        "tickets_30d",
        Log1p,
        false,
        "tickets opened in the last 30 days",
    )
    .says(tickets(" in the last 30 days")),
    Def::new(
        "tickets_90d",
        Log1p,
        false,
        "tickets opened in the last 90 days",
    )
    .says(tickets(" in the last 90 days")),
    Def::new(
        "tickets_open",
        Log1p,
        false,
        "tickets open at T (closed at or after T counts as open)",
    )
    .says(Text::Count {
        one: "ticket",
        many: "tickets",
        rest: " open",
    }),
    Def::new(
        "tickets_open_urgent",
        Log1p,
        false,
        "high or urgent tickets open at T",
    )
    .says(Text::Count {
        one: "urgent ticket",
        many: "urgent tickets",
        rest: " open",
    }),
    Def::new(
        "resolution_hours_90d",
        Log1p,
        true,
        "mean resolution hours of tickets closed in the last 90 days",
    )
    .says(Text::Value {
        pattern: "tickets took {v} to resolve",
        unit: Hours,
        missing: "no ticket closed in the last 90 days",
    }),
    Def::new(
        "urgent_share_90d",
        Identity,
        false,
        "share of tickets opened in the last 90 days that are high or urgent (0 if none)",
    )
    .says(Text::Value {
        pattern: "{v} of tickets in the last 90 days high or urgent",
        unit: Percent,
        missing: "no ticket in the last 90 days",
    }),
    Def::new(
        "csat_mean_90d",
        Identity,
        true,
        "mean csat of tickets closed in the last 90 days",
    )
    .says(Text::Value {
        pattern: "mean satisfaction {v} of 5",
        unit: Number,
        missing: "no rated ticket in the last 90 days",
    }),
    Def::new(
        "days_since_last_ticket",
        Log1p,
        false,
        "days since the last ticket was opened (days since signup if none)",
    )
    .says(Text::Since {
        pattern: "last ticket {v} ago",
        recent: "a ticket opened within the last day",
        never: "no ticket since signing up {v} ago",
    }),
];

/// A ticket count's text: `3 tickets in the last 30 days`.
const fn tickets(rest: &'static str) -> Text {
    Text::Count {
        one: "ticket",
        many: "tickets",
        rest,
    }
}

/// The values of [`FEATURES`], in their order.
pub(super) fn compute(at: &At) -> [f64; FEATURES.len()] {
    let t = at.t;
    let tk = before(at.view.tickets, t);
    let w30 = between(tk, at.days_ago(30), t);
    let w90 = between(tk, at.days_ago(90), t);
    // Closure at or after T is not known at T.
    let open = |x: &&Ticket| x.closed.is_none_or(|c| c >= t);
    let urgent = |x: &&Ticket| x.priority >= Priority::High;
    let from_90 = at.days_ago(90);
    let closed_90 = |x: &&Ticket| x.closed.is_some_and(|c| c < t && c >= from_90);
    let (resolution, _, _) = mean_std(
        tk.iter()
            .filter(closed_90)
            .map(|x| (x.closed.unwrap_or(x.opened) - x.opened) as f64 / 3600.0),
    );
    let urgent_share = if w90.is_empty() {
        0.0
    } else {
        w90.iter().filter(urgent).count() as f64 / w90.len() as f64
    };
    let (csat, _, _) = mean_std(
        tk.iter()
            .filter(closed_90)
            .map(|x| x.csat)
            .filter(|c| c.is_finite()),
    );
    [
        w30.len() as f64,
        w90.len() as f64,
        tk.iter().filter(open).count() as f64,
        tk.iter().filter(open).filter(urgent).count() as f64,
        resolution,
        urgent_share,
        csat,
        at.since(tk.last().map(|x| x.opened)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::CustomerView;
    use crate::features::family::check::{fixed, signed_up, ts};

    fn ticket(opened: &str, closed: Option<&str>, priority: Priority, csat: f64) -> Ticket {
        Ticket {
            opened: ts(opened),
            closed: closed.map(ts),
            priority,
            csat,
        }
    }

    #[test]
    fn every_ticket_feature_of_a_hand_built_customer() {
        let tickets = [
            // Closed 91 days before T: outside the resolution window.
            ticket("2023-12-30", Some("2024-01-01"), Priority::Low, 5.0),
            ticket(
                "2024-02-10 08:00:00",
                Some("2024-02-11 08:00:00"),
                Priority::High,
                4.0,
            ),
            ticket(
                "2024-03-20",
                Some("2024-03-20 12:00:00"),
                Priority::Normal,
                f64::NAN,
            ),
            // Closed after T: open at T, resolution and csat unknown.
            ticket("2024-03-30", Some("2024-04-02"), Priority::Urgent, 1.0),
            ticket("2024-04-01", None, Priority::Urgent, f64::NAN),
        ];
        let view = CustomerView {
            tickets: &tickets,
            ..signed_up("2023-06-01")
        };
        fixed(
            &FEATURES,
            compute,
            &view,
            "2024-04-01",
            &[
                ("tickets_30d", 2.0),
                ("tickets_90d", 3.0),
                ("tickets_open", 1.0),
                ("tickets_open_urgent", 1.0),
                ("resolution_hours_90d", 18.0),
                ("urgent_share_90d", 2.0 / 3.0),
                ("csat_mean_90d", 4.0),
                ("days_since_last_ticket", 2.0),
            ],
        );
    }

    #[test]
    fn without_tickets_the_means_are_undefined_and_the_share_is_zero() {
        let view = signed_up("2024-03-22");
        fixed(
            &FEATURES,
            compute,
            &view,
            "2024-04-01",
            &[
                ("tickets_30d", 0.0),
                ("tickets_90d", 0.0),
                ("tickets_open", 0.0),
                ("tickets_open_urgent", 0.0),
                ("resolution_hours_90d", f64::NAN),
                ("urgent_share_90d", 0.0),
                ("csat_mean_90d", f64::NAN),
                ("days_since_last_ticket", 10.0),
            ],
        );
    }
}
