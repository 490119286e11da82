//! Heatmaps: a grid of cells coloured on a sequential scale.

use super::ticks::{format_pct, format_value};
use super::*;

/// Sequential scale for heatmaps (ColorBrewer YlGnBu without its near-white first step, so
/// the lowest value still differs from an empty cell).
const SEQUENTIAL: [[u8; 3]; 8] = [
    [237, 248, 177],
    [199, 233, 180],
    [127, 205, 187],
    [65, 182, 196],
    [29, 145, 192],
    [34, 94, 168],
    [37, 52, 148],
    [8, 29, 88],
];

/// A grid of coloured cells, e.g. cohort retention (rows: signup cohorts, columns: months
/// since signup). `None` and non-finite cells stay empty. Colours run from light (lowest
/// value) to dark blue (highest) over the data's own range; values are printed in the
/// cells when they fit. With `fmt_pct` values are fractions shown as percentages
/// (`0.853` → `85.3%`).
pub fn heatmap(
    title: &str,
    row_labels: &[String],
    col_labels: &[String],
    cells: &[Vec<Option<f64>>],
    fmt_pct: bool,
) -> String {
    let nrows = row_labels.len().max(cells.len());
    let ncols = col_labels
        .len()
        .max(cells.iter().map(Vec::len).max().unwrap_or(0));
    let value = |r: usize, c: usize| -> Option<f64> {
        cells
            .get(r)
            .and_then(|row| row.get(c).copied().flatten())
            .filter(|v| usable(*v))
    };
    let Some((vmin, vmax)) = extent(cells.iter().flatten().filter_map(|v| *v)) else {
        return placeholder(title, "No data");
    };
    let fmt = |v: f64, decimals: usize| {
        if fmt_pct {
            format_pct(v, decimals)
        } else {
            format_value(v)
        }
    };
    let t_of = |v: f64| {
        if vmax > vmin {
            (v - vmin) / (vmax - vmin)
        } else {
            0.5
        }
    };

    let widest_row = row_labels
        .iter()
        .map(|l| text_px(l, TICK_SIZE))
        .fold(0.0, f64::max);
    let row_label_px = widest_row.min(150.0);
    let left = 12.0 + row_label_px + 8.0;
    let top = 36.0 + 20.0;
    let bottom = 40.0;
    let avail_w = WIDTH - left - 16.0;
    let cell_w = (avail_w / ncols as f64).min(110.0);
    let cell_h = ((HEIGHT - top - bottom) / nrows as f64).clamp(14.0, 34.0);
    let f = Frame {
        x: left,
        y: top,
        w: cell_w * ncols as f64,
        h: cell_h * nrows as f64,
    };
    let height = (f.bottom() + bottom).min(MAX_HEIGHT.max(f.bottom() + bottom));

    let mut out = open(WIDTH, height, title);
    // Column labels above the grid, thinned when they would overlap.
    let widest_col = col_labels
        .iter()
        .map(|l| text_px(l, TICK_SIZE))
        .fold(0.0, f64::max);
    let col_every = ((widest_col.min(90.0) + 6.0) / cell_w).ceil().max(1.0) as usize;
    for c in (0..ncols).step_by(col_every) {
        let text = col_labels.get(c).map(String::as_str).unwrap_or("");
        Label::new(text, f.x + (c as f64 + 0.5) * cell_w, f.y - 7.0)
            .anchor(Anchor::Middle)
            .max_px((cell_w * col_every as f64 - 4.0).max(cell_w))
            .draw(&mut out);
    }
    let row_every = (13.0 / cell_h).ceil().max(1.0) as usize;
    let value_size = 10.0;
    for r in 0..nrows {
        let row_label = row_labels.get(r).map(String::as_str).unwrap_or("");
        let y = f.y + r as f64 * cell_h;
        if r % row_every == 0 {
            Label::new(row_label, f.x - 8.0, y + cell_h / 2.0 + TICK_SIZE * 0.35)
                .anchor(Anchor::End)
                .fill(INK)
                .max_px(row_label_px)
                .draw(&mut out);
        }
        for c in 0..ncols {
            let Some(v) = value(r, c) else { continue };
            let x = f.x + c as f64 * cell_w;
            let t = t_of(v);
            let col_label = col_labels.get(c).map(String::as_str).unwrap_or("");
            put!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#ffffff\" \
                 stroke-width=\"1\"><title>{}</title></rect>",
                P(x),
                P(y),
                P(cell_w),
                P(cell_h),
                sequential(t),
                escape(&format!("{row_label} \u{b7} {col_label}: {}", fmt(v, 1)))
            );
            if cell_h >= 13.0 {
                let mut text = fmt(v, 1);
                if text_px(&text, value_size) > cell_w - 4.0 {
                    text = fmt(v, 0);
                }
                if text_px(&text, value_size) <= cell_w - 4.0 {
                    Label::new(
                        &text,
                        x + cell_w / 2.0,
                        y + cell_h / 2.0 + value_size * 0.35,
                    )
                    .size(value_size)
                    .anchor(Anchor::Middle)
                    .fill(if t > 0.5 { "#ffffff" } else { INK })
                    .draw(&mut out);
                }
            }
        }
    }
    // Colour key under the grid: ten steps from the lowest to the highest value.
    let key_y = f.bottom() + 14.0;
    let steps = 10;
    let key_x = f.x + 8.0 + text_px(&fmt(vmin, 1), TICK_SIZE);
    Label::new(&fmt(vmin, 1), key_x - 6.0, key_y + 9.0)
        .anchor(Anchor::End)
        .draw(&mut out);
    for s in 0..steps {
        let t = s as f64 / (steps - 1) as f64;
        let v = vmin + t * (vmax - vmin);
        put!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"22\" height=\"12\" fill=\"{}\"><title>{}</title></rect>",
            P(key_x + s as f64 * 22.0),
            P(key_y),
            sequential(t),
            escape(&fmt(v, 1))
        );
    }
    Label::new(
        &fmt(vmax, 1),
        key_x + steps as f64 * 22.0 + 6.0,
        key_y + 9.0,
    )
    .draw(&mut out);
    close(out)
}

/// The sequential colour at `t` in `[0, 1]`.
fn sequential(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (SEQUENTIAL.len() - 1) as f64;
    let i = (pos.floor() as usize).min(SEQUENTIAL.len() - 2);
    let frac = pos - i as f64;
    let (a, b) = (SEQUENTIAL[i], SEQUENTIAL[i + 1]);
    let mix = |k: usize| (a[k] as f64 + (b[k] as f64 - a[k] as f64) * frac).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(0), mix(1), mix(2))
}
#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn every_heatmap_is_well_formed_xml_for_normal_empty_single_and_nan_inputs() {
        let cohorts: Vec<String> = (1..=12).map(|m| format!("2024-{m:02}")).collect();
        let months: Vec<String> = (0..12).map(|m| format!("M{m}")).collect();
        let triangle: Vec<Vec<Option<f64>>> = (0..12)
            .map(|r| {
                (0..12)
                    .map(|c| (c < 12 - r).then(|| 0.97f64.powi(c)))
                    .collect()
            })
            .collect();
        let tall: Vec<Vec<Option<f64>>> = (0..200).map(|r| vec![Some(r as f64), None]).collect();
        let cases: Vec<(Vec<String>, Vec<String>, Cells)> = vec![
            (cohorts.clone(), months.clone(), triangle),
            (vec![], vec![], vec![]),
            (cohorts.clone(), months.clone(), vec![]),
            (labels(&["only"]), labels(&["cell"]), vec![vec![Some(0.5)]]),
            (
                labels(&["a", "b"]),
                labels(&["x", "y"]),
                vec![vec![Some(1.0), Some(1.0)], vec![Some(1.0), None]],
            ),
            (
                labels(&["a"]),
                labels(&["x", "y"]),
                vec![vec![Some(f64::NAN), Some(0.2), Some(f64::INFINITY)]],
            ),
            (
                labels(&["a"]),
                labels(&["x"]),
                vec![vec![None, Some(f64::NAN)]],
            ),
            (vec![], vec![], tall),
        ];
        for (rows, cols, cells) in &cases {
            for pct in [false, true] {
                assert_well_formed(&heatmap("Retention", rows, cols, cells, pct));
            }
        }
    }

    #[test]
    fn heatmap_cells_print_percentages_and_keep_none_cells_empty() {
        let svg = heatmap(
            "Retention",
            &labels(&["Jan", "Feb"]),
            &labels(&["M0", "M1"]),
            &[vec![Some(1.0), Some(0.853)], vec![Some(1.0), None]],
            true,
        );
        assert!(svg.contains(">85.3%</text>"), "{svg}");
        assert!(svg.contains("<title>Jan \u{b7} M1: 85.3%</title>"));
        assert!(!svg.contains("Feb \u{b7} M1"));
        assert_eq!(sequential(0.0), "#edf8b1");
        assert_eq!(sequential(1.0), "#081d58");
    }
}
