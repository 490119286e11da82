//! Axis ticks by the "nice numbers" algorithm, and how numbers are printed on charts.

use super::usable;

/// Tick values covering `[lo, hi]`: at most `max_ticks` of them (at least 2), spaced by
/// the smallest step of the form 1, 2 or 5 times a power of ten that keeps within that
/// count, the first tick at or below `lo` and the last at or above `hi` (the "nice numbers"
/// of Heckbert's graph labels, fitted tightly). Ticks are exact decimals (`0.3`, not
/// `0.30000000000000004`). A reversed range is swapped; an empty one (`lo == hi`) is widened
/// around the value; non-finite bounds give the ticks of `[0, 1]`.
pub fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
    nice_scale(lo, hi, max_ticks).0
}

/// [`nice_ticks`] and the step between them.
pub(super) fn nice_scale(lo: f64, hi: f64, max_ticks: usize) -> (Vec<f64>, f64) {
    let (lo, hi) = normalise_range(lo, hi);
    let max_ticks = max_ticks.clamp(2, 50);
    // Start a decade below the rough step and walk up 1, 2, 5, 10, 20, 50, ...
    let rough = (hi - lo) / (max_ticks - 1) as f64;
    let first = rough.log10().floor() as i32 - 1;
    let mut found = None;
    'search: for e in first..first + 8 {
        for m in [1.0, 2.0, 5.0] {
            let step = from_decimal(m, e);
            let k0 = (lo / step + 1e-9).floor();
            let k1 = (hi / step - 1e-9).ceil();
            if k1 - k0 < max_ticks as f64 {
                found = Some((m, e, step, k0, k1));
                break 'search;
            }
        }
    }
    let Some((m, e, step, k0, k1)) = found else {
        return (vec![lo, hi], hi - lo);
    };
    let mut ticks = Vec::with_capacity(max_ticks);
    let mut k = k0;
    while k <= k1 {
        // k·m is an integer, so this is the decimal k·m·10^e rounded once; +0.0 turns -0 into 0.
        ticks.push(from_decimal(k * m, e) + 0.0);
        k += 1.0;
    }
    if ticks.len() < 2 {
        ticks = vec![lo, hi];
    }
    (ticks, step)
}

/// A finite range with `lo < hi` that is wide enough to divide by.
pub(super) fn normalise_range(lo: f64, hi: f64) -> (f64, f64) {
    if !usable(lo) || !usable(hi) {
        return (0.0, 1.0);
    }
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let scale = lo.abs().max(hi.abs());
    if hi - lo <= scale * 1e-9 {
        let pad = if scale > 0.0 { scale * 0.1 } else { 1.0 };
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    }
}

/// `m · 10^e`, computed so that an integer `m` gives the closest double to the decimal.
fn from_decimal(m: f64, e: i32) -> f64 {
    if e < 0 {
        m / 10f64.powi(-e)
    } else {
        m * 10f64.powi(e)
    }
}

/// A tick label: as many decimals as the step needs; `k`/`M`/`B` when the axis reaches
/// `magnitude` (its largest absolute value) of ten thousand or more.
pub(super) fn format_tick(v: f64, step: f64, magnitude: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_string();
    }
    let (div, suffix) = if magnitude >= 1e9 {
        (1e9, "B")
    } else if magnitude >= 1e6 {
        (1e6, "M")
    } else if magnitude >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let s = step.abs() / div;
    let decimals = if s > 0.0 && s.is_finite() {
        (-(s.log10() + 1e-9)).ceil().clamp(0.0, 12.0) as usize
    } else {
        0
    };
    format!("{:.*}{suffix}", decimals, v / div)
}

/// A value for tooltips and labels: four significant digits, thousands grouped.
pub(super) fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-4..1e15).contains(&a) {
        return format!("{v:.3e}");
    }
    if a >= 1e3 {
        return group_thousands(v.round());
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A whole number with thousands separated by commas (`-1,234,568`).
pub fn group_thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0.0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) fn format_pct(v: f64, decimals: usize) -> String {
    format!("{:.*}%", decimals, v * 100.0)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_for_the_unit_interval_step_by_a_fifth() {
        assert_eq!(nice_ticks(0.0, 1.0, 6), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    }

    #[test]
    fn nice_ticks_round_an_awkward_maximum_up_to_a_round_one() {
        assert_eq!(
            nice_ticks(0.0, 97.0, 6),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(nice_ticks(0.0, 1234.0, 6), vec![0.0, 500.0, 1000.0, 1500.0]);
    }

    #[test]
    fn nice_ticks_straddle_zero_and_handle_small_decimals_exactly() {
        assert_eq!(nice_ticks(-3.2, 7.9, 6), vec![-5.0, 0.0, 5.0, 10.0]);
        assert_eq!(
            nice_ticks(0.0123, 0.0456, 6),
            vec![0.01, 0.02, 0.03, 0.04, 0.05]
        );
        assert_eq!(
            nice_ticks(0.0, 1.0, 11),
            vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
        );
    }

    #[test]
    fn nice_ticks_fit_the_data_tightly_instead_of_rounding_the_range_first() {
        assert_eq!(
            nice_ticks(0.0, 23.0, 8),
            vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
        );
        assert_eq!(
            nice_ticks(0.04, 0.06, 6),
            vec![0.04, 0.045, 0.05, 0.055, 0.06]
        );
        assert_eq!(nice_ticks(-1.0, 1.0, 3), vec![-1.0, 0.0, 1.0]);
    }

    #[test]
    fn nice_ticks_widen_an_empty_range_and_survive_bad_input() {
        assert_eq!(nice_ticks(0.0, 0.0, 6), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        let around_five = nice_ticks(5.0, 5.0, 6);
        assert!(around_five.len() >= 2 && around_five.contains(&5.0));
        assert!(around_five.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(nice_ticks(1.0, 0.0, 6), nice_ticks(0.0, 1.0, 6));
        assert_eq!(nice_ticks(f64::NAN, 3.0, 6), nice_ticks(0.0, 1.0, 6));
        let huge = nice_ticks(-1e300, 1e300, 6);
        assert!(huge.len() >= 2 && huge.iter().all(|t| t.is_finite()));
    }

    #[test]
    fn tick_labels_use_as_many_decimals_as_the_step_needs() {
        assert_eq!(format_tick(0.2, 0.2, 1.0), "0.2");
        assert_eq!(format_tick(1.0, 0.2, 1.0), "1.0");
        assert_eq!(format_tick(0.05, 0.05, 0.1), "0.05");
        assert_eq!(format_tick(1500.0, 500.0, 1500.0), "1500");
        assert_eq!(format_tick(40000.0, 20000.0, 100000.0), "40k");
        assert_eq!(format_tick(2_500_000.0, 500_000.0, 3e6), "2.5M");
        assert_eq!(format_tick(1_000_000.0, 500_000.0, 3e6), "1.0M");
        assert_eq!(format_tick(-0.0, 1.0, 1.0), "0");
    }

    #[test]
    fn values_are_formatted_with_four_significant_digits() {
        assert_eq!(format_value(0.81234), "0.8123");
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(format_value(48210.0), "48,210");
        assert_eq!(format_value(4120.0), "4,120");
        assert_eq!(format_value(-1234567.0), "-1,234,567");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(f64::NAN), "n/a");
    }
}
