//! The retention report: [`RetentionKpis`] as a self-contained HTML page.

use super::kpis::{RateBand, RetentionKpis, RiskGroup};
use crate::report::{svg, Report};
use crate::time::parse_ts;

/// Months shown in the churn charts and cohorts shown in the heatmap.
const SHOWN_MONTHS: usize = 36;
const SHOWN_COHORTS: usize = 24;

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "\u{2014}".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// A percentage as a chart value (2 decimals), NaN when undefined (the bar stays empty).
fn pct_value(x: Option<f64>) -> f64 {
    x.map_or(f64::NAN, |v| (10_000.0 * v).round() / 100.0)
}

fn count(n: usize) -> String {
    crate::report::svg::group_thousands(n as f64)
}

/// Money in the data's one currency: whole units with thousands grouped, cents below 100.
fn money(x: f64) -> String {
    if !x.is_finite() {
        return "\u{2014}".into();
    }
    if x.abs() >= 100.0 {
        crate::report::svg::group_thousands(x)
    } else {
        format!("{x:.2}")
    }
}

fn money_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "\u{2014}".into(), money)
}

fn date(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

/// Writes [`report`] to `path` atomically (a temporary file, then a rename), so a failed
/// run never leaves a truncated report over a previous one.
pub fn save_report(k: &RetentionKpis, path: &std::path::Path) -> crate::Result<()> {
    crate::fsutil::write_atomic(path, report(k).as_bytes())
}

/// The retention report as one self-contained HTML document (inline SVG, no scripts).
pub fn report(k: &RetentionKpis) -> String {
    let mut r = Report::new("Retention report");
    r.subtitle(&format!(
        "as of {} \u{b7} {} customers \u{b7} {} active \u{b7} {}",
        date(&k.as_of),
        count(k.customers),
        count(k.active_now),
        if k.data.is_empty() {
            "customer base"
        } else {
            &k.data
        }
    ));
    overview(&mut r, k);
    monthly(&mut r, k);
    cohorts(&mut r, k);
    revenue(&mut r, k);
    segments(&mut r, k);
    tickets(&mut r, k);
    rules(&mut r, k);
    revenue_at_risk(&mut r, k);
    method(&mut r, k);
    r.to_html()
}

fn overview(r: &mut Report, k: &RetentionKpis) {
    let last = k.monthly.last();
    let mut kv: Vec<(&str, String)> = vec![
        ("as of", k.as_of.clone()),
        ("customers (signed up before)", count(k.customers)),
        ("active now", count(k.active_now)),
        ("churn definition", k.churn_definition.kind().into()),
        (
            "last complete month",
            last.map_or_else(|| "\u{2014}".into(), |m| m.month.clone()),
        ),
        (
            "churn rate, last month",
            pct(last.and_then(|m| m.churn_rate)),
        ),
        (
            "churn rate, last 12 months (monthly, pooled)",
            pct(k.churn_rate_last_12_months),
        ),
    ];
    if let Some(rp) = &k.repeat_purchase {
        kv.push(("repeat purchase rate", pct(rp.rate)));
    }
    if let Some(f) = &k.forward {
        kv.push((
            "churn within the horizon after a snapshot",
            format!("{} ({}-day horizon)", pct(f.churn_rate), f.horizon_days),
        ));
    }
    if let Some(rar) = &k.revenue_at_risk {
        kv.push(("revenue at risk (scores)", money(rar.revenue_at_risk)));
    }
    let s = r.section("Overview");
    s.paragraph(&k.churn_definition_text).key_values(&kv);
    for n in &k.notes {
        s.paragraph(&format!("Note: {n}."));
    }
}

fn monthly(r: &mut Report, k: &RetentionKpis) {
    let s = r.section("Monthly churn and retention");
    s.paragraph(&format!("Monthly churn rate: {}.", k.monthly_churn_rule));
    if k.monthly.is_empty() {
        s.warning("No complete calendar month with active customers before the as-of date.");
        return;
    }
    let shown = &k.monthly[k.monthly.len().saturating_sub(SHOWN_MONTHS)..];
    let labels: Vec<String> = shown.iter().map(|m| m.month.clone()).collect();
    s.chart(svg::bar_chart(
        "Monthly churn rate",
        &labels,
        &shown
            .iter()
            .map(|m| pct_value(m.churn_rate))
            .collect::<Vec<_>>(),
        "churn rate (%)",
        false,
    ))
    .reading("Share of the customers active on the 1st of each month who churned during that month; lower is better.");
    let points: Vec<(f64, f64)> = shown
        .iter()
        .filter_map(|m| {
            let t = parse_ts(&format!("{}-01", m.month))?;
            let year = crate::time::fmt_date(t);
            let y: f64 = year.get(..4)?.parse().ok()?;
            let mo: f64 = year.get(5..7)?.parse().ok()?;
            Some((y + (mo - 1.0) / 12.0, pct_value(m.retention_rate)))
        })
        .collect();
    s.chart(svg::line_chart(
        &svg::Axes::new("Monthly retention rate", "year (2024.5 = July 2024)", "retained (%)"),
        &[svg::Series::new("retention rate", points)],
        false,
    ))
    .reading("Share of each month's starting customers still customers at its end (100% minus the churn rate); a falling line means retention is getting worse.");
    let rows: Vec<Vec<String>> = shown
        .iter()
        .rev()
        .map(|m| {
            vec![
                m.month.clone(),
                count(m.active_at_start),
                count(m.churned),
                pct(m.churn_rate),
                pct(m.retention_rate),
                count(m.new_customers),
            ]
        })
        .collect();
    s.table(
        &[
            "month",
            "active on the 1st",
            "churned",
            "churn rate",
            "retention rate",
            "new customers",
        ],
        &rows,
    );
}

fn cohorts(r: &mut Report, k: &RetentionKpis) {
    let s = r.section("Signup cohorts");
    let shown: Vec<_> = k.cohorts[k.cohorts.len().saturating_sub(SHOWN_COHORTS)..]
        .iter()
        .filter(|c| !c.retention.is_empty())
        .collect();
    if shown.is_empty() {
        s.warning("No signup cohort has a complete month before the as-of date.");
        return;
    }
    let width = shown.iter().map(|c| c.retention.len()).max().unwrap_or(0);
    let rows: Vec<String> = shown
        .iter()
        .map(|c| format!("{} (n = {})", c.cohort, count(c.customers)))
        .collect();
    let cols: Vec<String> = (0..width).map(|m| m.to_string()).collect();
    let cells: Vec<Vec<Option<f64>>> = shown
        .iter()
        .map(|c| (0..width).map(|m| c.retention.get(m).copied()).collect())
        .collect();
    s.chart(svg::heatmap(
        "Cohort retention: share still active, by months since signup",
        &rows,
        &cols,
        &cells,
        true,
    ))
    .reading("Each row is a signup month, each column the end of the k-th month after signup (0 = end of the signup month); read across for how fast a cohort decays, down for whether newer cohorts keep customers better.");
}

fn revenue(r: &mut Report, k: &RetentionKpis) {
    let Some(rp) = &k.repeat_purchase else {
        return;
    };
    let s = r.section("Repeat purchases, revenue and lifetime value");
    s.key_values(&[
        ("customers with a purchase", count(rp.buyers)),
        ("of whom bought again", count(rp.repeat_buyers)),
        ("repeat purchase rate", pct(rp.rate)),
    ]);
    s.paragraph("A purchase is an order with a positive amount; refunds count against revenue but not as purchases.");
    let shown: Vec<_> = k.cohorts[k.cohorts.len().saturating_sub(SHOWN_COHORTS)..]
        .iter()
        .collect();
    if shown.is_empty() {
        return;
    }
    let labels: Vec<String> = shown.iter().map(|c| c.cohort.clone()).collect();
    s.chart(svg::bar_chart(
        "Average revenue per customer, by signup cohort",
        &labels,
        &shown
            .iter()
            .map(|c| c.revenue_per_customer.unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
        "revenue per customer to date",
        false,
    ))
    .reading("Money each cohort's customers have brought on average so far; older cohorts have had longer to buy, so compare neighbours.");
    s.chart(svg::bar_chart(
        "Simple customer lifetime value, by signup cohort",
        &labels,
        &shown
            .iter()
            .map(|c| c.clv.unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
        "lifetime value",
        false,
    ))
    .reading("Monthly revenue per active customer of each cohort times the expected lifetime (1 / monthly churn); higher bars are cohorts worth more per retained customer.");
    s.paragraph(&k.clv_formula);
    let rows: Vec<Vec<String>> = shown
        .iter()
        .rev()
        .map(|c| {
            vec![
                c.cohort.clone(),
                count(c.customers),
                money_opt(c.revenue_to_date),
                money_opt(c.revenue_per_customer),
                count(c.active_customer_months),
                money_opt(c.monthly_revenue_per_active_customer),
                money_opt(c.clv),
                pct(c.repeat_purchase_rate),
            ]
        })
        .collect();
    s.table(
        &[
            "cohort",
            "customers",
            "revenue to date",
            "per customer",
            "customer-months",
            "monthly per active",
            "CLV",
            "repeat rate",
        ],
        &rows,
    );
}

fn horizon_text(k: &RetentionKpis) -> String {
    match &k.forward {
        Some(f) => format!(
            "Churn rates are the share of customers active at a snapshot who churned within the {} days after it, pooled over {} snapshots ({}), each with its next {} days fully observed before the as-of date.",
            f.horizon_days,
            f.snapshots.len(),
            f.snapshots.join(", "),
            f.horizon_days
        ),
        None => String::new(),
    }
}

fn band_rows(bands: &[RateBand]) -> Vec<Vec<String>> {
    bands
        .iter()
        .map(|b| {
            vec![
                b.band.clone(),
                count(b.customer_snapshots),
                count(b.churned),
                pct(b.churn_rate),
            ]
        })
        .collect()
}

fn segments(r: &mut Report, k: &RetentionKpis) {
    if k.rfm_segments.is_empty() {
        return;
    }
    let s = r.section("RFM segments");
    s.paragraph(&format!(
        "Segments from recency and frequency quintile scores (the classic R x F grid). {}",
        k.rfm_definition
    ));
    let labels: Vec<String> = k.rfm_segments.iter().map(|g| g.segment.clone()).collect();
    s.chart(svg::bar_chart(
        "Active customers by RFM segment, now",
        &labels,
        &k.rfm_segments
            .iter()
            .map(|g| g.customers_now as f64)
            .collect::<Vec<_>>(),
        "customers",
        true,
    ))
    .reading("How many of today's active customers sit in each segment.");
    if k.forward.is_some() {
        s.chart(svg::bar_chart(
            "Churn rate by RFM segment",
            &labels,
            &k.rfm_segments
                .iter()
                .map(|g| pct_value(g.churn_rate))
                .collect::<Vec<_>>(),
            "churn rate (%)",
            false,
        ))
        .reading("Share of each segment's customers who churned within the horizon after past snapshots; the tallest bars are where retention effort pays most per customer.");
        s.paragraph(&horizon_text(k));
    }
    let rows: Vec<Vec<String>> = k
        .rfm_segments
        .iter()
        .map(|g| {
            vec![
                g.segment.clone(),
                count(g.customers_now),
                pct(g.share_now),
                money(g.trailing_revenue_now),
                count(g.customer_snapshots),
                count(g.churned),
                pct(g.churn_rate),
            ]
        })
        .collect();
    s.table(
        &[
            "segment",
            "customers now",
            "share",
            "revenue, last 365 days",
            "customer-snapshots",
            "churned",
            "churn rate",
        ],
        &rows,
    );
}

fn tickets(r: &mut Report, k: &RetentionKpis) {
    let Some(t) = &k.ticket_risk else {
        return;
    };
    let s = r.section("Ticket-driven risk");
    s.paragraph(&horizon_text(k));
    let labels = |b: &[RateBand]| b.iter().map(|x| x.band.clone()).collect::<Vec<_>>();
    let values = |b: &[RateBand]| {
        b.iter()
            .map(|x| pct_value(x.churn_rate))
            .collect::<Vec<_>>()
    };
    s.chart(svg::bar_chart(
        "Churn rate by open high or urgent tickets",
        &labels(&t.by_open_urgent),
        &values(&t.by_open_urgent),
        "churn rate (%)",
        false,
    ))
    .reading("Churn within the horizon by how many high or urgent tickets the customer had open at the snapshot; a rising staircase means unresolved escalations drive churn.");
    s.table(
        &[
            "open high/urgent tickets",
            "customer-snapshots",
            "churned",
            "churn rate",
        ],
        &band_rows(&t.by_open_urgent),
    );
    s.chart(svg::bar_chart(
        "Churn rate by satisfaction (mean csat, last 90 days)",
        &labels(&t.by_csat),
        &values(&t.by_csat),
        "churn rate (%)",
        false,
    ))
    .reading("Churn within the horizon by the mean csat of tickets closed in the 90 days before the snapshot (1 = worst, 5 = best); compare unhappy raters with the rest.");
    s.table(
        &[
            "mean csat, 90 days",
            "customer-snapshots",
            "churned",
            "churn rate",
        ],
        &band_rows(&t.by_csat),
    );
}

fn rules(r: &mut Report, k: &RetentionKpis) {
    if k.rules.is_empty() {
        return;
    }
    let s = r.section("Early-warning rules");
    s.paragraph("Plain rules that run beside the model on the same features; each hit is shown next to the model's probability in batch and service outputs. \"now\": active customers the rule fires for today; \"fired before\": customer-snapshots it fired for in the past snapshots, with the churn rate after them (\"churn if fired\") and among the rest (\"if not\"); lift = churn if fired / overall churn rate.");
    if k.forward.is_some() {
        let labels: Vec<String> = k.rules.iter().map(|x| x.rule.clone()).collect();
        s.chart(svg::grouped_bar_chart(
            "Churn rate when a rule fired and when it did not",
            &labels,
            &[
                (
                    "fired".to_string(),
                    k.rules
                        .iter()
                        .map(|x| pct_value(x.churn_rate_when_fired))
                        .collect(),
                ),
                (
                    "did not fire".to_string(),
                    k.rules
                        .iter()
                        .map(|x| pct_value(x.churn_rate_when_not_fired))
                        .collect(),
                ),
            ],
            "churn rate (%)",
        ))
        .reading("For each rule, churn within the horizon after past snapshots among customers it fired for and among the rest; the wider the gap, the more useful the warning.");
        s.paragraph(&horizon_text(k));
    }
    let rows: Vec<Vec<String>> = k
        .rules
        .iter()
        .map(|x| {
            vec![
                x.rule.clone(),
                if x.usable {
                    x.description.clone()
                } else {
                    format!(
                        "{} (feature `{}` not built: never fires)",
                        x.description, x.feature
                    )
                },
                count(x.firing_now),
                pct(x.share_now),
                count(x.fired),
                pct(x.churn_rate_when_fired),
                pct(x.churn_rate_when_not_fired),
                x.lift
                    .map_or_else(|| "\u{2014}".into(), |l| format!("{l:.2}x")),
            ]
        })
        .collect();
    s.table(
        &[
            "rule",
            "fires when",
            "now",
            "share now",
            "fired before",
            "churn if fired",
            "if not",
            "lift",
        ],
        &rows,
    );
}

fn group_rows(groups: &[RiskGroup]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| {
            vec![
                g.group.clone(),
                count(g.customers),
                format!("{:.1}", g.expected_churners),
                g.mean_health_score
                    .map_or_else(|| "\u{2014}".into(), |h| format!("{h:.0}")),
                money(g.trailing_revenue),
                money(g.revenue_at_risk),
                pct(g.share_of_revenue_at_risk),
            ]
        })
        .collect()
}

const GROUP_HEADER: [&str; 7] = [
    "",
    "customers",
    "expected churners",
    "mean health",
    "revenue 12m",
    "at risk",
    "share",
];

fn revenue_at_risk(r: &mut Report, k: &RetentionKpis) {
    let Some(rar) = &k.revenue_at_risk else {
        return;
    };
    let s = r.section("Revenue at risk");
    s.paragraph("Revenue at risk of a customer = churn probability (from the score file) x revenue of the 365 days before the score (\"revenue 12m\"; refunds subtract, floored at zero). Expected churners = the sum of probabilities. Health scores come from the score file (0-100, higher is healthier). \"share\" is the group's share of all revenue at risk.");
    s.key_values(&[
        ("scores as of", rar.scores_as_of.join(", ")),
        ("model", rar.models.join(", ")),
        ("customers scored", count(rar.customers_scored)),
        ("expected churners", format!("{:.1}", rar.expected_churners)),
        ("revenue, last 12 months", money(rar.trailing_revenue)),
        ("revenue at risk", money(rar.revenue_at_risk)),
    ]);
    if !rar.revenue_available {
        s.warning("No `orders` table: revenue is zero, only expected churners are meaningful.");
    }
    let labels: Vec<String> = rar.by_tier.iter().map(|g| g.group.clone()).collect();
    s.chart(svg::bar_chart(
        "Revenue at risk by risk tier",
        &labels,
        &rar.by_tier
            .iter()
            .map(|g| g.revenue_at_risk)
            .collect::<Vec<_>>(),
        "revenue at risk",
        false,
    ))
    .reading("Expected revenue lost to churn within the model's horizon, by the tier the model put each customer in.");
    let mut header = GROUP_HEADER;
    header[0] = "tier";
    s.table(&header, &group_rows(&rar.by_tier));
    let labels: Vec<String> = rar.by_segment.iter().map(|g| g.group.clone()).collect();
    s.chart(svg::bar_chart(
        "Revenue at risk by RFM segment",
        &labels,
        &rar.by_segment
            .iter()
            .map(|g| g.revenue_at_risk)
            .collect::<Vec<_>>(),
        "revenue at risk",
        true,
    ))
    .reading("Expected revenue lost to churn by the RFM segment in the score file, largest first: where a retention campaign protects the most money.");
    s.paragraph(&k.rfm_definition);
    header[0] = "segment";
    s.table(&header, &group_rows(&rar.by_segment));
    let rows: Vec<Vec<String>> = rar
        .top
        .iter()
        .map(|c| {
            vec![
                c.customer_id.clone(),
                money(c.revenue_at_risk),
                format!("{:.1}%", 100.0 * c.churn_probability),
                format!("{:.0}", c.health_score),
                c.risk_tier.as_str().to_string(),
                c.rfm_segment.clone().unwrap_or_default(),
                money(c.trailing_revenue),
                c.top_reason_text
                    .clone()
                    .or_else(|| c.top_reason.clone())
                    .unwrap_or_default(),
                c.primary_driver.clone().unwrap_or_default(),
            ]
        })
        .collect();
    s.paragraph(&format!(
        "The {} customers with the most revenue at risk:",
        rar.top.len()
    ))
    .table(
        &[
            "customer",
            "at risk",
            "probability",
            "health",
            "tier",
            "segment",
            "revenue 12m",
            "top reason",
            "primary driver",
        ],
        &rows,
    );
    if !rar.by_primary_driver.is_empty() {
        let labels: Vec<String> = rar
            .by_primary_driver
            .iter()
            .map(|g| driver_label(&g.risk.group))
            .collect();
        s.chart(svg::bar_chart(
            "Revenue at risk by primary driver",
            &labels,
            &rar.by_primary_driver
                .iter()
                .map(|g| g.risk.revenue_at_risk)
                .collect::<Vec<_>>(),
            "revenue at risk",
            false,
        ))
        .reading("The primary driver of a customer is the dimension (engagement, support, billing and purchases, relationship) whose features push its churn risk up the most: where to look first. \"none\": no dimension pushes the risk up; \"unknown\": a score file written before dimensions.");
        let rows: Vec<Vec<String>> = rar
            .by_primary_driver
            .iter()
            .zip(group_rows(
                &rar.by_primary_driver
                    .iter()
                    .map(|g| g.risk.clone())
                    .collect::<Vec<_>>(),
            ))
            .map(|(g, mut row)| {
                row[0] = driver_label(&g.risk.group);
                row.insert(2, count(g.at_risk_customers));
                row
            })
            .collect();
        let mut header: Vec<&str> = GROUP_HEADER.to_vec();
        header[0] = "primary driver";
        header.insert(2, "high or medium");
        s.table(&header, &rows);
    }
}

/// The report's name of a primary driver group (`billing` -> `billing and purchases`).
fn driver_label(group: &str) -> String {
    crate::features::Dimension::parse(group)
        .map_or(group, |d| d.label())
        .to_string()
}

fn method(r: &mut Report, k: &RetentionKpis) {
    let s = r.section("Definitions and method");
    s.paragraph(&k.churn_definition_text);
    s.paragraph(&format!("Monthly churn rate: {}.", k.monthly_churn_rule));
    s.paragraph("Cohort retention: the share of a signup month's customers who are active at the end of each month after signup, by the same definition of active.");
    s.paragraph(&k.clv_formula);
    s.paragraph("No leakage: every figure as of a date uses only rows strictly before it; a month, a cohort cell or a snapshot's churn window is counted only once it has ended by the as-of date, and features at a snapshot use only rows before that snapshot.");
}
