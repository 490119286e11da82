//! Bar charts: vertical or horizontal, single or grouped.

use super::ticks::format_value;
use super::*;

/// One bar per label: feature importance (`horizontal`, largest first as given), tier
/// counts, churn rate by segment. Bars start at zero (negative values go the other way);
/// values are printed on the bars when there is room. A non-finite value leaves its
/// category empty.
pub fn bar_chart(
    title: &str,
    labels: &[String],
    values: &[f64],
    value_label: &str,
    horizontal: bool,
) -> String {
    if horizontal {
        horizontal_bars(title, labels, values, value_label)
    } else {
        vertical_bars(
            title,
            labels,
            &[(String::new(), values.to_vec())],
            value_label,
            true,
        )
    }
}

/// Bars side by side within each label, one colour per group (with a legend): e.g. churn
/// rate by segment for the training and the validation window.
pub fn grouped_bar_chart(
    title: &str,
    labels: &[String],
    groups: &[(String, Vec<f64>)],
    value_label: &str,
) -> String {
    vertical_bars(title, labels, groups, value_label, false)
}

fn vertical_bars(
    title: &str,
    labels: &[String],
    groups: &[(String, Vec<f64>)],
    value_label: &str,
    print_values: bool,
) -> String {
    let n = groups
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(0)
        .max(labels.len());
    let Some((lo, hi)) = extent(groups.iter().flat_map(|(_, v)| v.iter().copied())) else {
        return placeholder(title, "No data");
    };
    let ya = bar_value_axis(lo, hi, 6);
    let g = groups.len();

    let items: Vec<LegendItem> = if g > 1 {
        groups
            .iter()
            .enumerate()
            .map(|(i, (name, _))| LegendItem {
                name: series_name(name, i),
                colour: colour(i),
                swatch: Swatch::Box,
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut left = left_margin(&ya, value_label);
    let mut slot = (WIDTH - left - 20.0) / n as f64;
    let mut plan = plan_category_labels(labels, slot);
    if plan.rotated {
        // The first rotated label reaches about cos(40°)·length left of its bar's centre.
        let needed = plan.max_px * 0.766 + 6.0 - slot / 2.0;
        if needed > left {
            left = needed;
            slot = (WIDTH - left - 20.0) / n as f64;
            plan = plan_category_labels(labels, slot);
        }
    }
    let width = WIDTH - left - 20.0;
    let (legend_svg, legend_h) = legend(&items, left, 42.0, width);
    let top = 36.0 + legend_h + if legend_h > 0.0 { 6.0 } else { 10.0 };
    let f = Frame {
        x: left,
        y: top,
        w: width,
        h: (HEIGHT - top - plan.band - 4.0).max(40.0),
    };
    let height = f.bottom() + plan.band + 4.0;

    let mut out = open(WIDTH, height, title);
    draw_y_axis(&mut out, &f, &ya, value_label);
    let zero = y_px(&f, &ya, 0.0);
    let group_w = slot * if g > 1 { 0.84 } else { 0.7 };
    let bar_w = (group_w / g as f64).min(80.0);
    let value_size = 10.5;
    for i in 0..n {
        let label = labels.get(i).map(String::as_str).unwrap_or("");
        let cx = f.x + (i as f64 + 0.5) * slot;
        let x0 = cx - bar_w * g as f64 / 2.0;
        for (j, (name, values)) in groups.iter().enumerate() {
            let Some(v) = values.get(i).copied().filter(|v| usable(*v)) else {
                continue;
            };
            let y = y_px(&f, &ya, v);
            let (top_y, h) = (y.min(zero), (y - zero).abs());
            let tip = if g > 1 {
                format!(
                    "{label} \u{2014} {}: {}",
                    series_name(name, j),
                    format_value(v)
                )
            } else {
                format!("{label}: {}", format_value(v))
            };
            put!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{}</title></rect>",
                P(x0 + j as f64 * bar_w + 0.5),
                P(top_y),
                P((bar_w - 1.0).max(0.5)),
                P(h.max(if v != 0.0 { 0.5 } else { 0.0 })),
                colour(j),
                escape(&tip)
            );
            if print_values {
                let text = format_value(v);
                if text_px(&text, value_size) <= slot - 2.0 {
                    let ty = if v >= 0.0 {
                        top_y - 4.0
                    } else {
                        top_y + h + 12.0
                    };
                    Label::new(&text, cx, ty)
                        .size(value_size)
                        .fill(INK)
                        .anchor(Anchor::Middle)
                        .draw(&mut out);
                }
            }
        }
    }
    if ya.lo < 0.0 {
        put!(
            out,
            "<line x1=\"{}\" y1=\"{z}\" x2=\"{}\" y2=\"{z}\" stroke=\"{AXIS}\"/>",
            P(f.x),
            P(f.right()),
            z = P(zero)
        );
    }
    draw_axis_lines(&mut out, &f);
    draw_category_labels(&mut out, &f, labels, n, &plan);
    out.push_str(&legend_svg);
    close(out)
}

fn horizontal_bars(title: &str, labels: &[String], values: &[f64], value_label: &str) -> String {
    let n = labels.len().max(values.len());
    let Some((lo, hi)) = extent(values.iter().copied()) else {
        return placeholder(title, "No data");
    };
    let xa = bar_value_axis(lo, hi, 7);
    let value_size = 10.5;
    let print_values = n <= 40;
    let widest_value = if print_values {
        values
            .iter()
            .filter(|v| usable(**v))
            .map(|v| text_px(&format_value(*v), value_size))
            .fold(0.0, f64::max)
    } else {
        0.0
    };
    let widest_label = labels
        .iter()
        .map(|l| text_px(l, TICK_SIZE))
        .fold(0.0, f64::max);
    let label_px = widest_label.min(200.0);
    let left = 12.0 + label_px + 8.0;
    let right = 16.0 + widest_value;
    let top = 44.0;
    let bottom = if value_label.is_empty() { 28.0 } else { 46.0 };
    let height = (top + bottom + 22.0 * n as f64).clamp(HEIGHT, MAX_HEIGHT);
    let f = Frame {
        x: left,
        y: top,
        w: WIDTH - left - right,
        h: height - top - bottom,
    };
    let slot = f.h / n as f64;
    let thickness = (slot * 0.72).min(28.0);

    let mut out = open(WIDTH, height, title);
    draw_x_axis(&mut out, &f, &xa, value_label);
    let zero = x_px(&f, &xa, 0.0);
    let every = (13.0 / slot).ceil().max(1.0) as usize;
    for i in 0..n {
        let label = labels.get(i).map(String::as_str).unwrap_or("");
        let cy = f.y + (i as f64 + 0.5) * slot;
        if i % every == 0 {
            Label::new(label, f.x - 8.0, cy + TICK_SIZE * 0.35)
                .anchor(Anchor::End)
                .fill(INK)
                .max_px(label_px)
                .draw(&mut out);
        }
        let Some(v) = values.get(i).copied().filter(|v| usable(*v)) else {
            continue;
        };
        let x = x_px(&f, &xa, v);
        let (x0, w) = (x.min(zero), (x - zero).abs());
        put!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{}</title></rect>",
            P(x0),
            P(cy - thickness / 2.0),
            P(w.max(if v != 0.0 { 0.5 } else { 0.0 })),
            P(thickness),
            PALETTE[0],
            escape(&format!("{label}: {}", format_value(v)))
        );
        if print_values && slot >= 11.0 {
            // Right of the bar, or right of the zero line for negative bars.
            let tx = x.max(zero) + 4.0;
            Label::new(&format_value(v), tx, cy + value_size * 0.35)
                .size(value_size)
                .fill(INK)
                .draw(&mut out);
        }
    }
    put!(
        out,
        "<line x1=\"{z}\" y1=\"{}\" x2=\"{z}\" y2=\"{}\" stroke=\"{AXIS}\"/>",
        P(f.y),
        P(f.bottom()),
        z = P(zero)
    );
    put!(
        out,
        "<line x1=\"{}\" y1=\"{b}\" x2=\"{}\" y2=\"{b}\" stroke=\"{AXIS}\"/>",
        P(f.x),
        P(f.right()),
        b = P(f.bottom())
    );
    close(out)
}
#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn every_bar_chart_is_well_formed_xml_for_normal_empty_single_and_nan_inputs() {
        let many: Vec<String> = (0..60).map(|i| format!("feature_number_{i}")).collect();
        let many_values: Vec<f64> = (0..60).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let cases: Vec<(Vec<String>, Vec<f64>)> = vec![
            (labels(&["low", "medium", "high"]), vec![120.0, 45.0, 12.0]),
            (vec![], vec![]),
            (labels(&["only"]), vec![7.0]),
            (labels(&["a", "b"]), vec![3.0, 3.0]),
            (labels(&["zero", "zero"]), vec![0.0, 0.0]),
            (labels(&["a", "b", "c"]), vec![f64::NAN, 2.0, f64::INFINITY]),
            (labels(&["a", "b"]), vec![f64::NAN, f64::NAN]),
            (labels(&["neg", "pos"]), vec![-0.4, 0.9]),
            (labels(&["more labels", "than", "values"]), vec![1.0]),
            (many, many_values),
        ];
        for (l, v) in &cases {
            for horizontal in [false, true] {
                assert_well_formed(&bar_chart("Bars", l, v, "customers", horizontal));
            }
        }
    }

    #[test]
    fn every_grouped_bar_chart_is_well_formed_xml_for_normal_empty_single_and_nan_inputs() {
        let segs = labels(&["SMB", "Mid-market", "Enterprise"]);
        let cases: Vec<(Vec<String>, Groups)> = vec![
            (
                segs.clone(),
                vec![
                    ("train".into(), vec![0.12, 0.08, 0.03]),
                    ("validation".into(), vec![0.14, 0.07, 0.04]),
                ],
            ),
            (vec![], vec![]),
            (segs.clone(), vec![]),
            (labels(&["one"]), vec![("g".into(), vec![0.5])]),
            (
                segs.clone(),
                vec![
                    ("nan".into(), vec![f64::NAN, 0.1]),
                    ("short".into(), vec![]),
                ],
            ),
            (segs, vec![("all nan".into(), vec![f64::NAN; 3])]),
        ];
        for (l, g) in &cases {
            assert_well_formed(&grouped_bar_chart("Churn by segment", l, g, "churn rate"));
        }
    }
}
