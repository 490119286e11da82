//! The computation of every feature for one customer as of `T`.

use super::{Attrs, FeatureSpec};
use crate::data::{before, between, CustomerView, Priority};
use crate::time::{Ts, DAY};

fn days(d: i64) -> i64 {
    d * DAY
}

/// Mean and population standard deviation; NaN when empty.
fn mean_std(xs: impl Iterator<Item = f64>) -> (f64, f64, usize) {
    let (mut n, mut s, mut s2) = (0usize, 0.0, 0.0);
    for x in xs {
        n += 1;
        s += x;
        s2 += x * x;
    }
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let m = s / n as f64;
    (m, (s2 / n as f64 - m * m).max(0.0).sqrt(), n)
}

impl FeatureSpec {
    /// Writes the features of `view` as of `t` into `out` (exactly [`Self::len`] values,
    /// in schema order). `event_slot` maps the view's event kinds to the spec's event
    /// types. Reads only rows strictly before `t`.
    pub fn compute(
        &self,
        view: &CustomerView,
        attrs: &Attrs,
        event_slot: &[Option<usize>],
        t: Ts,
        out: &mut [f64],
    ) {
        debug_assert_eq!(out.len(), self.len());
        let mut k = 0;
        let mut push = |x: f64| {
            out[k] = x;
            k += 1;
        };
        let tenure = ((t - view.signup) as f64 / DAY as f64).max(0.0);
        push(tenure);
        for (i, (_, levels)) in self.categorical.iter().enumerate() {
            let v = attrs.categorical.get(i).copied().flatten();
            let hit = v.and_then(|v| levels.iter().position(|l| l == v));
            for j in 0..levels.len() {
                push(f64::from(hit == Some(j)));
            }
            push(f64::from(hit.is_none()));
        }
        for i in 0..self.numeric.len() {
            push(attrs.numeric.get(i).copied().unwrap_or(f64::NAN));
        }
        let since = |last: Option<Ts>| last.map_or(tenure, |l| (t - l) as f64 / DAY as f64);
        let p = self.present;
        if p.logins {
            let l = before(view.logins, t);
            let count = |d: i64| between(l, t - days(d), t).len() as f64;
            push(count(7));
            let c30 = count(30);
            push(c30);
            push(count(90));
            push(since(l.last().copied()));
            let prior = between(l, t - days(90), t - days(30)).len() as f64 / 2.0;
            push((c30 + 1.0) / (prior + 1.0));
            let mut active = 0;
            let mut last_day = i64::MIN;
            for &x in between(l, t - days(30), t) {
                let d = x.div_euclid(DAY);
                if d != last_day {
                    active += 1;
                    last_day = d;
                }
            }
            push(active as f64);
        }
        if p.tickets {
            let tk = before(view.tickets, t);
            let w30 = between(tk, t - days(30), t);
            let w90 = between(tk, t - days(90), t);
            push(w30.len() as f64);
            push(w90.len() as f64);
            // Closure at or after T is not known at T.
            let open = |x: &&crate::data::Ticket| x.closed.is_none_or(|c| c >= t);
            push(tk.iter().filter(open).count() as f64);
            push(
                tk.iter()
                    .filter(open)
                    .filter(|x| x.priority >= Priority::High)
                    .count() as f64,
            );
            let closed_90 =
                |x: &&crate::data::Ticket| x.closed.is_some_and(|c| c < t && c >= t - days(90));
            let (res, _, _) = mean_std(
                tk.iter()
                    .filter(closed_90)
                    .map(|x| (x.closed.unwrap_or(x.opened) - x.opened) as f64 / 3600.0),
            );
            push(res);
            push(if w90.is_empty() {
                0.0
            } else {
                w90.iter().filter(|x| x.priority >= Priority::High).count() as f64
                    / w90.len() as f64
            });
            let (csat, _, _) = mean_std(
                tk.iter()
                    .filter(closed_90)
                    .map(|x| x.csat)
                    .filter(|c| c.is_finite()),
            );
            push(csat);
            push(since(tk.last().map(|x| x.opened)));
        }
        if p.orders {
            let o = before(view.orders, t);
            let w90 = between(o, t - days(90), t);
            let w365 = between(o, t - days(365), t);
            let recency = since(o.last().map(|x| x.at));
            push(recency);
            push(w90.len() as f64);
            push(w365.len() as f64);
            push(w90.iter().map(|x| x.amount).sum());
            let rev365: f64 = w365.iter().map(|x| x.amount).sum();
            push(rev365);
            let (mean, std, n) = mean_std(
                o.windows(2)
                    .map(|w| (w[1].at - w[0].at) as f64 / DAY as f64),
            );
            push(mean);
            push(if n >= 2 { std } else { f64::NAN });
            push(if mean > 0.0 { recency / mean } else { f64::NAN });
            push(w365.iter().filter(|x| x.amount < 0.0).count() as f64);
            if let Some(cuts) = &self.rfm {
                let (r, f, m) = cuts.scores(recency, w365.len() as f64, rev365);
                push(r as f64);
                push(f as f64);
                push(m as f64);
            }
        }
        if p.events {
            let e = before(view.events, t);
            let w30 = between(e, t - days(30), t);
            let prior = between(e, t - days(60), t - days(30));
            push(w30.len() as f64);
            let n = self.event_types.len();
            let mut cur = [0u32; 64];
            let mut pre = [0u32; 64];
            let slot = |kind: u32| event_slot.get(kind as usize).copied().flatten();
            for x in w30 {
                if let Some(s) = slot(x.kind).filter(|&s| s < 64) {
                    cur[s] += 1;
                }
            }
            for x in prior {
                if let Some(s) = slot(x.kind).filter(|&s| s < 64) {
                    pre[s] += 1;
                }
            }
            for s in 0..n {
                let c = if s < 64 { cur[s] as f64 } else { 0.0 };
                let b = if s < 64 { pre[s] as f64 } else { 0.0 };
                push(c);
                push((c + 1.0) / (b + 1.0));
            }
        }
        debug_assert_eq!(k, out.len());
    }

    /// Recency (days), frequency (orders in 365 days) and monetary (revenue in 365 days)
    /// of a view as of `t`: the inputs of the RFM scores. `None` without orders.
    pub fn rfm_inputs(&self, view: &CustomerView, t: Ts) -> Option<(f64, f64, f64)> {
        if !self.present.orders {
            return None;
        }
        let o = before(view.orders, t);
        let tenure = ((t - view.signup) as f64 / DAY as f64).max(0.0);
        let recency = o.last().map_or(tenure, |x| (t - x.at) as f64 / DAY as f64);
        let w365 = between(o, t - days(365), t);
        Some((
            recency,
            w365.len() as f64,
            w365.iter().map(|x| x.amount).sum(),
        ))
    }
}
