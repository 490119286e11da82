//! The per-customer simulation: attributes, a drifting latent engagement, and what it
//! produces week by week (logins, usage events, support tickets, payments) until churn.
//!
//! Every customer draws from its own RNG seeded from `(seed, customer index)`, so a
//! customer's rows do not depend on how customers are split across threads.
//!
//! # The model, in one place
//!
//! - Signups: a day in `[start, end)` with a rate growing 3x over the window, fewer on
//!   weekends. The paid-acquisition share of signups grows over time.
//! - Engagement `e` (log scale, weekly): `mu + trend + x + shock` where `mu` is the
//!   customer's baseline (plan, channel, noise), `x` an AR(1) (phi 0.85, sd 0.25),
//!   `trend` a slow decline that starts at a random week for about a quarter of the
//!   customers, `shock` a decaying dip after a personal incident (0.8 %/week) or a
//!   platform-wide incident (about 5 a year, each reaching 10-50 % of the base).
//! - Logins: Poisson per week with mean `rate(plan) * exp(e) * season`, weekday-weighted
//!   local days, business-hours local times (countries have UTC offsets). Each login
//!   starts a session with Poisson(~0.75) product events; integrated customers also get
//!   automated `integration_sync` events.
//! - Tickets: Poisson per week, more when `e` is below the baseline, in the first weeks
//!   and for enterprise; incidents add high/urgent tickets. Resolution time is lognormal
//!   by priority with a slow tail; csat (on ~55 % of closed tickets) falls with it.
//! - Orders: a payment at signup, then a renewal on each monthly anniversary, sometimes
//!   late (probability and delay grow as engagement falls), occasional add-ons, rare
//!   refunds (and some refunds right before a churn).
//! - Churn: a weekly logistic hazard on low engagement, an open severe ticket, a recent
//!   low csat, recent tickets, overdue or late payments, short tenure, plan, channel,
//!   feature adoption, integration, renewal week and a per-customer frailty, plus a
//!   small unexplained floor. About 10 % of churners come back 20+ days later with a new
//!   order (a second segment, at most one).

use super::SynthConfig;
use crate::time::{civil_from_days, days_from_civil, Ts, DAY};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

const HOUR: i64 = 3_600;
const WEEK: i64 = 7 * DAY;
/// Marks a missing timestamp (an open ticket) in the flat columns.
pub(super) const NULL_TS: i64 = i64::MIN;

pub(super) const PLANS: [&str; 3] = ["basic", "pro", "enterprise"];
const PLAN_FEE: [f64; 3] = [29.0, 99.0, 499.0];
/// Plan mix by channel (organic, paid, referral, partner).
const PLAN_MIX: [[f64; 3]; 4] = [
    [0.60, 0.32, 0.08],
    [0.72, 0.25, 0.03],
    [0.50, 0.40, 0.10],
    [0.30, 0.42, 0.28],
];
const PLAN_ENGAGEMENT: [f64; 3] = [-0.15, 0.05, 0.25];
/// Logins per week at engagement 0.
const LOGIN_RATE: [f64; 3] = [1.6, 1.9, 2.3];
const PLAN_HAZARD: [f64; 3] = [0.15, 0.0, -0.7];
const PLAN_TICKETS: [f64; 3] = [0.0, 0.15, 0.45];
const PLAN_LATE: [f64; 3] = [0.3, 0.0, 0.2];
const PLAN_ADDON: [f64; 3] = [0.006, 0.012, 0.02];
const PLAN_INTEGRATED: [f64; 3] = [0.08, 0.35, 0.70];

pub(super) const CHANNELS: [&str; 4] = ["organic", "paid", "referral", "partner"];
const CHANNEL_ENGAGEMENT: [f64; 4] = [0.0, -0.2, 0.15, 0.1];
const CHANNEL_HAZARD: [f64; 4] = [0.0, 0.3, -0.25, -0.2];
const CHANNEL_DECLINE: [f64; 4] = [0.24, 0.36, 0.18, 0.2];

pub(super) const COUNTRIES: [&str; 8] = ["US", "GB", "DE", "FR", "CA", "BR", "IN", "AU"];
const COUNTRY_MIX: [f64; 8] = [0.38, 0.14, 0.11, 0.07, 0.08, 0.08, 0.08, 0.06];
const COUNTRY_UTC_OFFSET: [i64; 8] = [
    -5 * HOUR,
    0,
    HOUR,
    HOUR,
    -5 * HOUR,
    -3 * HOUR,
    19_800,
    10 * HOUR,
];

pub(super) const EVENT_TYPES: [&str; 8] = [
    "post",
    "search",
    "report_view",
    "add_contact",
    "feature_x_used",
    "export",
    "invite_user",
    "integration_sync",
];
const EV_FEATURE_X: u8 = 4;
const EV_EXPORT: u8 = 5;
const EV_INVITE: u8 = 6;
const EV_SYNC: u8 = 7;
/// Session event mix (all but `integration_sync`, which is automated).
const SESSION_MIX: [f64; 7] = [0.30, 0.24, 0.14, 0.12, 0.10, 0.06, 0.04];

pub(super) const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
const PRIORITY_MIX: [f64; 4] = [0.25, 0.50, 0.18, 0.07];
const INCIDENT_PRIORITY_MIX: [f64; 4] = [0.0, 0.15, 0.50, 0.35];
const MEDIAN_RESOLUTION_HOURS: [f64; 4] = [40.0, 20.0, 8.0, 3.0];

/// Relative login/ticket intensity by weekday, Monday first.
const WEEKDAY_WEIGHT: [f64; 7] = [1.0, 1.05, 1.05, 1.0, 0.9, 0.3, 0.25];

const HAZARD_BASE: f64 = -5.95;
/// Weekly churn probability that no observable explains.
const HAZARD_FLOOR: f64 = 0.0012;
const RETURN_PROBABILITY: f64 = 0.10;

/// Flat columns for a run of consecutive customers (one row per entry, grouped by
/// customer in index order, each customer's rows in time order).
#[derive(Default)]
pub(super) struct Block {
    pub first: usize,
    pub len: usize,
    pub signup_day: Vec<i32>,
    pub plan: Vec<u8>,
    pub channel: Vec<u8>,
    pub country: Vec<u8>,
    pub fee: Vec<f64>,
    pub login_c: Vec<u32>,
    pub login_at: Vec<i64>,
    pub ticket_c: Vec<u32>,
    pub ticket_opened: Vec<i64>,
    /// `NULL_TS` while open at the end of the window.
    pub ticket_closed: Vec<i64>,
    pub ticket_priority: Vec<u8>,
    /// 0 when not given.
    pub ticket_csat: Vec<u8>,
    pub order_c: Vec<u32>,
    pub order_at: Vec<i64>,
    pub order_amount: Vec<f64>,
    pub event_c: Vec<u32>,
    pub event_at: Vec<i64>,
    pub event_type: Vec<u8>,
    /// NaN when absent.
    pub event_value: Vec<f64>,
    pub churn_c: Vec<u32>,
    pub churn_at: Vec<i64>,
    /// Per full calendar month of the window: customers active at its start.
    pub month_active: Vec<u64>,
    /// Per full calendar month: churn rows inside it.
    pub month_churned: Vec<u64>,
}

impl Block {
    /// Appends the next run of customers.
    pub fn append(&mut self, mut o: Block) {
        debug_assert_eq!(self.first + self.len, o.first);
        self.len += o.len;
        self.signup_day.append(&mut o.signup_day);
        self.plan.append(&mut o.plan);
        self.channel.append(&mut o.channel);
        self.country.append(&mut o.country);
        self.fee.append(&mut o.fee);
        self.login_c.append(&mut o.login_c);
        self.login_at.append(&mut o.login_at);
        self.ticket_c.append(&mut o.ticket_c);
        self.ticket_opened.append(&mut o.ticket_opened);
        self.ticket_closed.append(&mut o.ticket_closed);
        self.ticket_priority.append(&mut o.ticket_priority);
        self.ticket_csat.append(&mut o.ticket_csat);
        self.order_c.append(&mut o.order_c);
        self.order_at.append(&mut o.order_at);
        self.order_amount.append(&mut o.order_amount);
        self.event_c.append(&mut o.event_c);
        self.event_at.append(&mut o.event_at);
        self.event_type.append(&mut o.event_type);
        self.event_value.append(&mut o.event_value);
        self.churn_c.append(&mut o.churn_c);
        self.churn_at.append(&mut o.churn_at);
        for (a, b) in self.month_active.iter_mut().zip(&o.month_active) {
            *a += b;
        }
        for (a, b) in self.month_churned.iter_mut().zip(&o.month_churned) {
            *a += b;
        }
    }

    /// Concatenates blocks given in customer order.
    pub fn concat(blocks: Vec<Block>) -> Block {
        let mut it = blocks.into_iter();
        let Some(mut out) = it.next() else {
            return Block::default();
        };
        for b in it {
            out.append(b);
        }
        out
    }
}

/// A platform-wide incident (outage, bad release).
struct Incident {
    at: Ts,
    severity: f64,
    reach: f64,
}

/// What is shared by all customers: the window, its months and the incidents.
pub(super) struct World {
    seed: u64,
    end: Ts,
    first_day: i64,
    n_days: i64,
    /// Boundaries of the full calendar months inside the window (`n + 1` for `n` months).
    months: Vec<Ts>,
    incidents: Vec<Incident>,
}

impl World {
    pub fn new(cfg: &SynthConfig) -> Result<World> {
        if cfg.start >= cfg.end {
            return Err(Error::Config(format!(
                "synthetic data window is empty: start {} is not before end {}",
                crate::time::fmt_ts(cfg.start),
                crate::time::fmt_ts(cfg.end)
            )));
        }
        if cfg.customers > u32::MAX as usize {
            return Err(Error::Config(format!(
                "at most {} synthetic customers, not {}",
                u32::MAX,
                cfg.customers
            )));
        }
        let first_day = ceil_div(cfg.start, DAY);
        let last_day = (cfg.end - 1).div_euclid(DAY);
        if last_day < first_day {
            return Err(Error::Config(
                "synthetic data window must contain the start of at least one day".into(),
            ));
        }
        let mut months = Vec::new();
        let (y, m, d) = civil_from_days(first_day);
        let mut month = days_from_civil(y, m, 1);
        if d != 1 {
            month = add_months(month, 1);
        }
        while month * DAY <= cfg.end {
            months.push(month * DAY);
            month = add_months(month, 1);
        }
        if months.len() < 2 {
            months.clear();
        }

        let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, u64::MAX));
        let years = (cfg.end - cfg.start) as f64 / (365.25 * DAY as f64);
        let n = poisson(&mut rng, 5.0 * years);
        let mut incidents: Vec<Incident> = (0..n)
            .map(|_| Incident {
                at: rng.gen_range(cfg.start..cfg.end),
                severity: rng.gen_range(0.3..1.0),
                reach: rng.gen_range(0.1..0.5),
            })
            .collect();
        incidents.sort_by_key(|i| i.at);

        Ok(World {
            seed: cfg.seed,
            end: cfg.end,
            first_day,
            n_days: last_day - first_day + 1,
            months,
            incidents,
        })
    }

    /// Number of full calendar months the churn rate is measured on.
    pub fn n_months(&self) -> usize {
        self.months.len().saturating_sub(1)
    }

    /// Simulates customers `first .. first + len`.
    pub fn simulate_block(&self, first: usize, len: usize) -> Block {
        let mut b = Block {
            first,
            len,
            month_active: vec![0; self.n_months()],
            month_churned: vec![0; self.n_months()],
            ..Block::default()
        };
        let mut s = Scratch::default();
        for i in first..first + len {
            self.customer(i, &mut b, &mut s);
        }
        b
    }

    fn signup_day(&self, rng: &mut ChaCha8Rng) -> i64 {
        // Density proportional to exp(g * x) on [0, 1): the rate triples over the window.
        let g = 3f64.ln();
        let draw = |rng: &mut ChaCha8Rng| {
            let x = (1.0 + rng.gen::<f64>() * (g.exp() - 1.0)).ln() / g;
            self.first_day + ((x * self.n_days as f64) as i64).min(self.n_days - 1)
        };
        let day = draw(rng);
        if weekday(day) >= 5 && rng.gen::<f64>() < 0.5 {
            return draw(rng);
        }
        day
    }

    fn customer(&self, idx: usize, b: &mut Block, s: &mut Scratch) {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, idx as u64));
        let rng = &mut rng;
        let day = self.signup_day(rng);
        let frac = (day - self.first_day) as f64 / self.n_days as f64;
        let channel = pick(
            rng,
            &[
                0.42 - 0.10 * frac,
                0.22 + 0.16 * frac,
                0.20 - 0.04 * frac,
                0.16 - 0.02 * frac,
            ],
        );
        let plan = pick(rng, &PLAN_MIX[channel]);
        let country = pick(rng, &COUNTRY_MIX);
        let fee = if plan == 2 && rng.gen::<f64>() < 0.4 {
            // Negotiated enterprise contracts.
            let f = PLAN_FEE[2] * (0.3 * normal(rng)).exp();
            ((f / 50.0).round() * 50.0 - 1.0).clamp(299.0, 1499.0)
        } else {
            PLAN_FEE[plan]
        };
        let mu = 0.45 * normal(rng) + PLAN_ENGAGEMENT[plan] + CHANNEL_ENGAGEMENT[channel];
        let t = Traits {
            plan,
            channel,
            fee,
            mu,
            frailty: 0.35 * normal(rng),
            adopter: rng.gen::<f64>() < sigmoid(-0.7 + mu + 0.4 * plan as f64),
            integrated: rng.gen::<f64>() < PLAN_INTEGRATED[plan],
            offset: COUNTRY_UTC_OFFSET[country],
        };

        s.clear();
        let signup = day * DAY;
        let mut seg_start = signup;
        let mut intervals = [(0, 0); 2];
        let mut n_intervals = 0;
        loop {
            let returned = n_intervals > 0;
            let churn = self.segment(rng, &t, seg_start, returned, s);
            intervals[n_intervals] = (seg_start, churn.unwrap_or(Ts::MAX));
            n_intervals += 1;
            let Some(c) = churn else { break };
            s.churns.push(c);
            if !returned && rng.gen::<f64>() < RETURN_PROBABILITY {
                let gap = (20.0 + 90.0 * exp1(rng)) * DAY as f64;
                let r = c + gap as i64;
                if r < self.end {
                    seg_start = r;
                    continue;
                }
            }
            break;
        }

        // Monthly churn statistics.
        for (j, &m) in self.months.iter().take(self.n_months()).enumerate() {
            if intervals[..n_intervals]
                .iter()
                .any(|&(a, z)| a < m && m < z)
            {
                b.month_active[j] += 1;
            }
        }
        for &c in &s.churns {
            let j = self.months.partition_point(|&m| m <= c);
            if j >= 1 && j < self.months.len() {
                b.month_churned[j - 1] += 1;
            }
        }

        // Flush the customer's rows, each table in time order.
        let c = idx as u32;
        b.signup_day.push(day as i32);
        b.plan.push(plan as u8);
        b.channel.push(channel as u8);
        b.country.push(country as u8);
        b.fee.push(fee);
        s.logins.sort_unstable();
        b.login_c.extend(std::iter::repeat_n(c, s.logins.len()));
        b.login_at.extend_from_slice(&s.logins);
        s.events.sort_unstable_by_key(|e| e.0);
        b.event_c.extend(std::iter::repeat_n(c, s.events.len()));
        for &(at, ty, v) in &s.events {
            b.event_at.push(at);
            b.event_type.push(ty);
            b.event_value.push(v);
        }
        s.tickets.sort_unstable_by_key(|t| t.opened);
        b.ticket_c.extend(std::iter::repeat_n(c, s.tickets.len()));
        for t in &s.tickets {
            b.ticket_opened.push(t.opened);
            b.ticket_closed.push(t.closed);
            b.ticket_priority.push(t.priority);
            b.ticket_csat.push(t.csat);
        }
        s.orders.sort_unstable_by_key(|o| o.0);
        b.order_c.extend(std::iter::repeat_n(c, s.orders.len()));
        for &(at, amount) in &s.orders {
            b.order_at.push(at);
            b.order_amount.push(amount);
        }
        b.churn_c.extend(std::iter::repeat_n(c, s.churns.len()));
        b.churn_at.extend_from_slice(&s.churns);
    }

    /// One stretch of a customer's relationship, from signup (or a return) to churn
    /// (returned) or the end of the window (`None`). Rows go into `s`.
    fn segment(
        &self,
        rng: &mut ChaCha8Rng,
        t: &Traits,
        seg_start: Ts,
        returned: bool,
        s: &mut Scratch,
    ) -> Option<Ts> {
        let seg_day = seg_start.div_euclid(DAY);
        let mut day_cum = [0.0; 7];
        let wd0 = weekday(seg_day);
        let mut acc = 0.0;
        for (d, c) in day_cum.iter_mut().enumerate() {
            acc += WEEKDAY_WEIGHT[(wd0 + d) % 7];
            *c = acc;
        }
        let mu = if returned { t.mu + 0.3 } else { t.mu };
        let onset = if rng.gen::<f64>() < CHANNEL_DECLINE[t.channel] {
            (35.0 * exp1(rng)) as i64
        } else {
            i64::MAX
        };
        let decline = rng.gen_range(0.03..0.10);
        let mut trend: f64 = 0.0;
        let mut x = 0.3 * normal(rng);
        let mut shock: f64 = 0.0;
        s.mem.clear();
        s.pending.clear();
        let mut last_late = NULL_TS;
        let mut last_renewal: Option<(Ts, f64)> = None;

        // Billing: the first payment at signup (or the return), then monthly anniversaries.
        let first_payment = if returned {
            seg_start
        } else {
            seg_start + rng.gen_range(6 * HOUR..20 * HOUR)
        };
        s.pending.push(Pending {
            at: first_payment,
            amount: t.fee,
            due: first_payment,
        });
        let mut billed = 1;
        let mut next_due_day = add_months(seg_day, billed);
        let mut next_due = next_due_day * DAY + rng.gen_range(2 * HOUR..5 * HOUR);

        let mut k: i64 = 0;
        loop {
            let ws = (seg_day + 7 * k) * DAY;
            if ws >= self.end {
                return None;
            }
            let we = ws + WEEK;
            let lo = ws.max(seg_start);

            // Engagement.
            x = 0.85 * x + 0.25 * normal(rng);
            shock *= 0.55;
            if k >= onset {
                trend = (trend - decline).max(-2.6);
            }
            let personal_incident = rng.gen::<f64>() < 0.008;
            if personal_incident {
                shock -= 0.9;
            }
            s.hits.clear();
            let from = self.incidents.partition_point(|i| i.at < lo);
            for inc in self.incidents[from..].iter().take_while(|i| i.at < we) {
                if rng.gen::<f64>() < inc.reach {
                    shock -= 0.6 * inc.severity;
                    s.hits.push((inc.at, inc.severity));
                }
            }
            let e = mu + trend + x + shock;

            // Churn hazard from what is known at the start of the week.
            let (mut open_severe, mut low_csat, mut n_recent) = (false, false, 0u32);
            for m in &s.mem {
                open_severe |= m.severe && m.opened < ws - 3 * DAY && m.closed > ws;
                low_csat |= (1..=2).contains(&m.csat) && m.closed < ws && m.closed >= ws - 8 * WEEK;
                n_recent += u32::from(m.opened >= ws - 4 * WEEK && m.opened < ws);
            }
            let overdue = s
                .pending
                .iter()
                .any(|p| p.due != NULL_TS && p.due < ws - 3 * DAY);
            let late_recent = last_late != NULL_TS && last_late >= ws - 8 * WEEK;
            let tenure = if k < 8 {
                0.8
            } else if k < 26 {
                0.35
            } else {
                0.0
            };
            let z = HAZARD_BASE
                + 0.9 * (-e).clamp(-1.0, 3.0)
                + if open_severe { 0.8 } else { 0.0 }
                + if low_csat { 0.7 } else { 0.0 }
                + 0.25 * f64::from(n_recent.min(3))
                + if overdue { 0.9 } else { 0.0 }
                + if late_recent { 0.5 } else { 0.0 }
                + tenure
                + PLAN_HAZARD[t.plan]
                + CHANNEL_HAZARD[t.channel]
                + if t.adopter { -0.35 } else { 0.0 }
                + if t.integrated { -0.45 } else { 0.0 }
                + if next_due < we { 0.5 } else { 0.0 }
                + t.frailty;
            let h = sigmoid(z) + HAZARD_FLOOR;
            let churn_at = if rng.gen::<f64>() < h {
                let c = lo + rng.gen_range(HOUR..(we - lo).max(HOUR + 1));
                (c < self.end).then_some(c)
            } else {
                None
            };
            let limit = churn_at.unwrap_or(Ts::MAX).min(self.end).min(we);

            // Logins and the product events of each session.
            let lambda = LOGIN_RATE[t.plan] * e.exp() * season(ws);
            let per_session = 0.65 * (0.25 * e).exp();
            for _ in 0..poisson(rng, lambda) {
                let at = ws + day_in_week(rng, &day_cum) + local_time_of_day(rng) - t.offset;
                if at <= seg_start || at >= limit {
                    continue;
                }
                s.logins.push(at);
                for _ in 0..poisson(rng, per_session) {
                    let et = at + 1 + (600.0 * exp1(rng)) as i64;
                    let ty = session_event(rng, t.adopter, k < 4);
                    let value = if ty == EV_EXPORT {
                        (4.5 + 1.3 * normal(rng)).exp().round().max(1.0)
                    } else {
                        f64::NAN
                    };
                    if et < limit {
                        s.events.push((et, ty, value));
                    }
                }
            }
            if t.integrated {
                for _ in 0..poisson(rng, 1.2) {
                    let at = ws + rng.gen_range(0..WEEK);
                    let value = (5.0 + 1.2 * normal(rng)).exp().round().max(1.0);
                    if at > seg_start && at < limit {
                        s.events.push((at, EV_SYNC, value));
                    }
                }
            }

            // Support tickets.
            let below = (mu - e).max(0.0);
            let onboarding = if k < 4 { 0.5 } else { 0.0 };
            let rate = (-3.5 + 0.8 * below + PLAN_TICKETS[t.plan] + onboarding).exp();
            for _ in 0..poisson(rng, rate) {
                let opened = ws + day_in_week(rng, &day_cum) + local_time_of_day(rng) - t.offset;
                let priority = pick(rng, &PRIORITY_MIX) as u8;
                self.ticket(rng, s, opened, priority, 1.0, seg_start, limit);
            }
            if personal_incident && rng.gen::<f64>() < 0.7 {
                let opened = ws + rng.gen_range(0..WEEK);
                let priority = if rng.gen::<f64>() < 0.4 { 3 } else { 2 };
                self.ticket(rng, s, opened, priority, 1.0, seg_start, limit);
            }
            for hi in 0..s.hits.len() {
                let (at, severity) = s.hits[hi];
                if rng.gen::<f64>() < 0.5 * severity {
                    let opened = at + (4.0 * HOUR as f64 * exp1(rng)) as i64;
                    let priority = pick(rng, &INCIDENT_PRIORITY_MIX) as u8;
                    self.ticket(rng, s, opened, priority, 1.5, seg_start, limit);
                }
            }

            // Payments: renewals falling due this week, add-ons, then whatever is paid.
            while next_due < we {
                let low = (-e).max(0.0);
                let at = if rng.gen::<f64>() < sigmoid(-2.7 + 0.9 * low + PLAN_LATE[t.plan]) {
                    let days_late = 1 + (exp1(rng) * (2.0 + 5.0 * low)) as i64;
                    let paid = (next_due_day + days_late) * DAY + local_time_of_day(rng) - t.offset;
                    paid.max(next_due + HOUR)
                } else {
                    next_due
                };
                s.pending.push(Pending {
                    at,
                    amount: t.fee,
                    due: next_due,
                });
                billed += 1;
                next_due_day = add_months(seg_day, billed);
                next_due = next_due_day * DAY + rng.gen_range(2 * HOUR..5 * HOUR);
            }
            if rng.gen::<f64>() < PLAN_ADDON[t.plan] * (0.5 * e).exp() {
                let at = ws + day_in_week(rng, &day_cum) + local_time_of_day(rng) - t.offset;
                s.pending.push(Pending {
                    at,
                    amount: addon_price(rng, t.plan),
                    due: NULL_TS,
                });
            }
            let mut i = 0;
            while i < s.pending.len() {
                let p = s.pending[i];
                if p.at >= limit {
                    i += 1;
                    continue;
                }
                s.pending.swap_remove(i);
                if p.at < seg_start {
                    continue;
                }
                s.orders.push((p.at, p.amount));
                if p.due != NULL_TS {
                    last_renewal = Some((p.at, p.amount));
                    if p.at - p.due > 5 * DAY {
                        last_late = p.at;
                    }
                    if rng.gen::<f64>() < 0.004 {
                        s.pending.push(Pending {
                            at: p.at + rng.gen_range(2 * DAY..14 * DAY),
                            amount: -p.amount,
                            due: NULL_TS,
                        });
                    }
                }
            }

            s.mem
                .retain(|m| m.opened >= ws - 8 * WEEK || m.closed >= ws - 8 * WEEK);

            if let Some(c) = churn_at {
                // Some cancellations come with a refund of the payment just taken.
                if let Some((paid, amount)) = last_renewal {
                    if paid > c - 10 * DAY && c - 60 > paid && rng.gen::<f64>() < 0.25 {
                        s.orders.push((c - 60, -amount));
                    }
                }
                return Some(c);
            }
            k += 1;
        }
    }

    /// Records a ticket opened at `opened` if the customer is active then.
    #[allow(clippy::too_many_arguments)]
    fn ticket(
        &self,
        rng: &mut ChaCha8Rng,
        s: &mut Scratch,
        opened: Ts,
        priority: u8,
        slow: f64,
        seg_start: Ts,
        limit: Ts,
    ) {
        if opened <= seg_start || opened >= limit {
            return;
        }
        let mut hours =
            MEDIAN_RESOLUTION_HOURS[priority as usize] * slow * (0.9 * normal(rng)).exp();
        let tail = rng.gen::<f64>();
        if tail < 0.02 {
            hours *= 40.0; // forgotten in the backlog
        } else if tail < 0.14 {
            hours *= 5.0; // complex
        }
        let closed = opened + 60 + (hours * HOUR as f64) as i64;
        let (closed_col, csat) = if closed < self.end {
            let csat = if rng.gen::<f64>() < 0.55 {
                let urgent = if priority == 3 { 0.2 } else { 0.0 };
                let score = 4.75 - 0.6 * (1.0 + hours / 12.0).ln() - urgent + 0.7 * normal(rng);
                score.round().clamp(1.0, 5.0) as u8
            } else {
                0
            };
            (closed, csat)
        } else {
            (NULL_TS, 0)
        };
        s.tickets.push(TicketRow {
            opened,
            closed: closed_col,
            priority,
            csat,
        });
        s.mem.push(TicketMemory {
            opened,
            closed: if closed_col == NULL_TS {
                Ts::MAX
            } else {
                closed
            },
            severe: priority >= 2,
            csat,
        });
    }
}

/// A customer's fixed attributes and latent traits.
struct Traits {
    plan: usize,
    channel: usize,
    fee: f64,
    mu: f64,
    frailty: f64,
    adopter: bool,
    integrated: bool,
    offset: i64,
}

struct TicketRow {
    opened: Ts,
    closed: Ts,
    priority: u8,
    csat: u8,
}

/// What the churn hazard remembers of a ticket.
struct TicketMemory {
    opened: Ts,
    /// `Ts::MAX` when still open at the end.
    closed: Ts,
    severe: bool,
    csat: u8,
}

/// A payment that will happen at `at` unless the customer churns first.
#[derive(Clone, Copy)]
struct Pending {
    at: Ts,
    amount: f64,
    /// When the renewal was due; `NULL_TS` for add-ons and refunds.
    due: Ts,
}

/// Per-thread buffers reused from customer to customer.
#[derive(Default)]
struct Scratch {
    logins: Vec<Ts>,
    events: Vec<(Ts, u8, f64)>,
    tickets: Vec<TicketRow>,
    orders: Vec<(Ts, f64)>,
    churns: Vec<Ts>,
    mem: Vec<TicketMemory>,
    pending: Vec<Pending>,
    hits: Vec<(Ts, f64)>,
}

impl Scratch {
    fn clear(&mut self) {
        self.logins.clear();
        self.events.clear();
        self.tickets.clear();
        self.orders.clear();
        self.churns.clear();
        self.mem.clear();
        self.pending.clear();
        self.hits.clear();
    }
}

fn session_event(rng: &mut ChaCha8Rng, adopter: bool, onboarding: bool) -> u8 {
    let mut w = SESSION_MIX;
    if !adopter {
        w[EV_FEATURE_X as usize] = 0.004;
    }
    if onboarding {
        w[EV_INVITE as usize] *= 4.0;
    }
    pick(rng, &w) as u8
}

fn addon_price(rng: &mut ChaCha8Rng, plan: usize) -> f64 {
    match rng.gen_range(0..3) {
        0 => 15.0 * f64::from(rng.gen_range(1..=5u8)), // extra seats
        1 => 19.0,                                     // storage pack
        _ => [49.0, 99.0, 199.0][plan],                // premium support
    }
}

/// Holidays and summer slow usage down.
fn season(ws: Ts) -> f64 {
    let (_, m, d) = civil_from_days(ws.div_euclid(DAY) + 3);
    match (m, d) {
        (12, 20..) | (1, ..=2) => 0.7,
        (8, _) => 0.9,
        _ => 1.0,
    }
}

/// Seconds from the week start to the start of a weekday-weighted day.
fn day_in_week(rng: &mut ChaCha8Rng, cum: &[f64; 7]) -> i64 {
    let u = rng.gen::<f64>() * cum[6];
    cum.iter().position(|&c| u < c).unwrap_or(6) as i64 * DAY
}

/// A local time of day in seconds: a morning and an afternoon peak, some at any hour.
fn local_time_of_day(rng: &mut ChaCha8Rng) -> i64 {
    let u = rng.gen::<f64>();
    let hours = if u < 0.5 {
        9.5 + 1.7 * normal(rng)
    } else if u < 0.88 {
        14.5 + 2.3 * normal(rng)
    } else {
        24.0 * rng.gen::<f64>()
    };
    ((hours * HOUR as f64) as i64).clamp(0, DAY - 1)
}

fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    if lambda <= 0.0 || !lambda.is_finite() {
        return 0;
    }
    if lambda < 30.0 {
        let l = (-lambda).exp();
        let mut k = 0;
        let mut p = rng.gen::<f64>();
        while p > l {
            k += 1;
            p *= rng.gen::<f64>();
        }
        k
    } else {
        (lambda + lambda.sqrt() * normal(rng)).round().max(0.0) as u32
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

fn exp1(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(Exp1)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// splitmix64 finaliser.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG seed of stream `i` of a run seeded with `seed`.
fn mix(seed: u64, i: u64) -> u64 {
    splitmix(seed ^ splitmix(i))
}

fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// Monday = 0 for a day number (days since 1970-01-01, a Thursday).
pub(super) fn weekday(day: i64) -> usize {
    (day + 3).rem_euclid(7) as usize
}

/// The same day of the month `k` months later (clamped to the month's last day).
pub(super) fn add_months(day: i64, k: u32) -> i64 {
    let (y, m, d) = civil_from_days(day);
    let total = y * 12 + i64::from(m - 1) + i64::from(k);
    let (y2, m2) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    let leap = (y2 % 4 == 0 && y2 % 100 != 0) || y2 % 400 == 0;
    let dim = [
        31,
        28 + u32::from(leap),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][(m2 - 1) as usize];
    days_from_civil(y2, m2, d.min(dim))
}
