//! RFM quintile scores and the segment names retention teams use.

use serde::{Deserialize, Serialize};

/// Quintile cut points (4 each) learned on the training population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmCuts {
    pub recency: [f64; 4],
    pub frequency: [f64; 4],
    pub monetary: [f64; 4],
}

/// Every segment name [`rfm_segment`] can return.
pub const RFM_SEGMENTS: [&str; 8] = [
    "champions",
    "loyal",
    "potential",
    "new",
    "needs attention",
    "at risk",
    "hibernating",
    "lost",
];

fn quintiles(mut xs: Vec<f64>) -> [f64; 4] {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return [0.0; 4];
    }
    xs.sort_by(f64::total_cmp);
    let q = |p: f64| xs[((xs.len() - 1) as f64 * p).round() as usize];
    [q(0.2), q(0.4), q(0.6), q(0.8)]
}

/// 1..=5 from cut points: how many cuts `x` is above, plus one.
fn score(cuts: &[f64; 4], x: f64) -> u8 {
    1 + cuts.iter().filter(|&&c| x > c).count() as u8
}

impl RfmCuts {
    /// Learns the cut points from `(recency, frequency, monetary)` of the training population.
    pub fn learn(rows: &[(f64, f64, f64)]) -> Self {
        RfmCuts {
            recency: quintiles(rows.iter().map(|r| r.0).collect()),
            frequency: quintiles(rows.iter().map(|r| r.1).collect()),
            monetary: quintiles(rows.iter().map(|r| r.2).collect()),
        }
    }

    /// Scores 1-5; recency is reversed (more recent is better).
    pub fn scores(&self, recency: f64, frequency: f64, monetary: f64) -> (u8, u8, u8) {
        (
            6 - score(&self.recency, recency),
            score(&self.frequency, frequency),
            score(&self.monetary, monetary),
        )
    }
}

/// The segment of recency and frequency scores (the classic R x F grid).
pub fn rfm_segment(r: u8, f: u8) -> &'static str {
    match (r, f) {
        (5, 4..=5) | (4, 5) => "champions",
        (3..=5, 3..=5) => "loyal",
        (4..=5, 2) => "potential",
        (5, 1) | (4, 1) => "new",
        (3, 1..=2) => "needs attention",
        (1..=2, 3..=5) => "at risk",
        (2, 1..=2) => "hibernating",
        _ => "lost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_quintiles_and_recency_is_reversed() {
        let rows: Vec<(f64, f64, f64)> =
            (0..=100).map(|i| (i as f64, i as f64, i as f64)).collect();
        let cuts = RfmCuts::learn(&rows);
        assert_eq!(cuts.frequency, [20.0, 40.0, 60.0, 80.0]);
        assert_eq!(cuts.scores(0.0, 100.0, 50.0), (5, 5, 3));
        assert_eq!(cuts.scores(100.0, 0.0, 20.0), (1, 1, 1));
    }

    #[test]
    fn every_score_pair_has_a_named_segment() {
        for r in 1..=5 {
            for f in 1..=5 {
                assert!(RFM_SEGMENTS.contains(&rfm_segment(r, f)));
            }
        }
        assert_eq!(rfm_segment(5, 5), "champions");
        assert_eq!(rfm_segment(1, 5), "at risk");
        assert_eq!(rfm_segment(1, 1), "lost");
    }
}
