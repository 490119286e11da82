//! Overlaid histograms of several groups of values over one range.

use super::ticks::format_value;
use super::*;

/// Overlaid, semi-transparent histograms over `range` with `bins` equal bins: e.g. the
/// score distribution of churners and non-churners. Values outside `range` (and
/// non-finite ones) are left out; the last bin includes its upper edge. With `density`
/// each series is scaled to area 1, so classes of very different sizes compare.
/// An unusable `range` falls back to the data's extent; `bins` is clamped to 1..=500.
pub fn histogram(
    title: &str,
    series: &[(String, Vec<f64>)],
    bins: usize,
    range: (f64, f64),
    density: bool,
) -> String {
    let (lo, hi) = if usable(range.0) && usable(range.1) && range.0 != range.1 {
        normalise_range(range.0, range.1)
    } else {
        match extent(series.iter().flat_map(|(_, v)| v.iter().copied())) {
            Some((a, b)) => normalise_range(a, b),
            None => return placeholder(title, "No data"),
        }
    };
    let bins = bins.clamp(1, 500);
    let width = (hi - lo) / bins as f64;
    let mut heights: Vec<(Vec<f64>, usize)> = Vec::with_capacity(series.len());
    for (_, values) in series {
        let mut counts = vec![0usize; bins];
        let mut n = 0usize;
        for v in values.iter().copied().filter(|v| usable(*v)) {
            if v < lo || v > hi {
                continue;
            }
            let b = (((v - lo) / width).floor() as usize).min(bins - 1);
            counts[b] += 1;
            n += 1;
        }
        let scale = if density && n > 0 {
            1.0 / (n as f64 * width)
        } else {
            1.0
        };
        heights.push((counts.iter().map(|c| *c as f64 * scale).collect(), n));
    }
    if heights.iter().all(|(_, n)| *n == 0) {
        return placeholder(title, "No data in range");
    }
    let ymax = heights
        .iter()
        .flat_map(|(h, _)| h.iter().copied())
        .fold(0.0, f64::max);
    let ya = Axis::fit(0.0, if ymax > 0.0 { ymax } else { 1.0 }, 6);
    let xa = Axis::exact(lo, hi, 8);
    let y_title = if density { "density" } else { "count" };

    let items: Vec<LegendItem> = if series.len() > 1 {
        series
            .iter()
            .zip(&heights)
            .enumerate()
            .map(|(i, ((name, _), (_, n)))| LegendItem {
                name: format!(
                    "{} (n = {})",
                    series_name(name, i),
                    group_thousands(*n as f64)
                ),
                colour: colour(i),
                swatch: Swatch::Box,
            })
            .collect()
    } else {
        Vec::new()
    };
    let left = left_margin(&ya, y_title);
    let (legend_svg, legend_h) = legend(&items, left, 42.0, WIDTH - left - 20.0);
    let top = 36.0 + legend_h + if legend_h > 0.0 { 6.0 } else { 8.0 };
    let f = Frame {
        x: left,
        y: top,
        w: WIDTH - left - 20.0,
        h: HEIGHT - top - 28.0,
    };

    let mut out = open(WIDTH, HEIGHT, title);
    draw_y_axis(&mut out, &f, &ya, y_title);
    draw_x_axis(&mut out, &f, &xa, "");
    let bin_px = f.w / bins as f64;
    for (i, ((name, _), (h, n))) in series.iter().zip(&heights).enumerate() {
        if *n == 0 {
            continue;
        }
        let c = colour(i);
        let name = series_name(name, i);
        put!(
            out,
            "<g fill=\"{c}\" fill-opacity=\"0.45\" stroke=\"{c}\" stroke-opacity=\"0.9\" stroke-width=\"1\">"
        );
        for (b, value) in h.iter().enumerate() {
            if *value <= 0.0 {
                continue;
            }
            let y = y_px(&f, &ya, *value);
            let (a, z) = (lo + b as f64 * width, lo + (b + 1) as f64 * width);
            let closing = if b + 1 == bins { ']' } else { ')' };
            let what = if density {
                format!("density {}", format_value(*value))
            } else {
                format!("{} values", group_thousands(*value))
            };
            put!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
                P(f.x + b as f64 * bin_px),
                P(y),
                P(bin_px),
                P(f.bottom() - y),
                escape(&format!(
                    "{name}: [{}, {}{closing}: {what}",
                    format_value(a),
                    format_value(z)
                ))
            );
        }
        out.push_str("</g>");
    }
    draw_axis_lines(&mut out, &f);
    out.push_str(&legend_svg);
    close(out)
}
#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn every_histogram_is_well_formed_xml_for_normal_empty_single_and_nan_inputs() {
        let stay: Vec<f64> = (0..500).map(|i| (i as f64 / 500.0).powi(3)).collect();
        let churn: Vec<f64> = (0..40).map(|i| 1.0 - (i as f64 / 40.0).powi(2)).collect();
        let cases: Vec<(Groups, usize, (f64, f64))> = vec![
            (
                vec![("stayed".into(), stay), ("churned".into(), churn)],
                20,
                (0.0, 1.0),
            ),
            (vec![], 20, (0.0, 1.0)),
            (vec![("empty".into(), vec![])], 20, (0.0, 1.0)),
            (vec![("one".into(), vec![0.5])], 20, (0.0, 1.0)),
            (
                vec![("same".into(), vec![0.3; 10])],
                10,
                (f64::NAN, f64::NAN),
            ),
            (
                vec![("nan".into(), vec![f64::NAN, 0.2, f64::INFINITY, 0.4])],
                0,
                (0.0, 1.0),
            ),
            (vec![("outside".into(), vec![5.0, 6.0])], 10, (0.0, 1.0)),
            (
                vec![("degenerate range".into(), vec![1.0, 2.0])],
                10,
                (1.0, 1.0),
            ),
        ];
        for (s, bins, range) in &cases {
            for density in [false, true] {
                assert_well_formed(&histogram("Scores", s, *bins, *range, density));
            }
        }
    }

    #[test]
    fn histogram_density_integrates_to_one_and_the_top_edge_is_included() {
        let svg = histogram(
            "h",
            &[("s".into(), vec![0.0, 0.5, 1.0, 1.0])],
            2,
            (0.0, 1.0),
            true,
        );
        // Bin width 0.5: [0, 0.5) holds 1 of 4 values, [0.5, 1] holds 3 -> densities 0.5 and 1.5.
        assert!(svg.contains("s: [0, 0.5): density 0.5</title>"), "{svg}");
        assert!(svg.contains("s: [0.5, 1]: density 1.5</title>"), "{svg}");
    }
}
