//! The report's charts as inline SVG, drawn by `plotters` (SVG backend only: the browser lays
//! out the text, so no font library is built or needed).
//!
//! Colours are from the Okabe–Ito palette, which stays distinguishable for the common colour
//! vision deficiencies; every bar also carries its value as text, so a grey printout reads as
//! well as the screen.

use plotters::coord::Shift;
use plotters::coord::ranged1d::DiscreteRanged;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Error;
use super::data::{Bar, GroupCompletion};

/// Okabe–Ito blue: ordinary bars.
pub const BLUE: RGBColor = RGBColor(0, 114, 178);
/// Okabe–Ito vermillion: bars that need attention (expired, inactive).
pub const VERMILLION: RGBColor = RGBColor(213, 94, 0);
const INK: RGBColor = RGBColor(34, 34, 34);
const GRID: RGBColor = RGBColor(221, 221, 221);
const FONT: &str = "sans-serif";
const WIDTH: u32 = 900;

fn chart_err(chart: &'static str) -> impl Fn(String) -> Error {
    move |cause| Error::Chart { chart, cause }
}

/// Draw on a fresh SVG of `size` with `draw`, and return the `<svg>` element ready to inline:
/// labelled for screen readers with `title`, scaling to the page width, and without the
/// namespace URL (inline SVG in HTML needs none; the page holds no URL at all).
fn svg(
    chart: &'static str,
    title: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<String, Error> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| chart_err(chart)(e.to_string()))?;
        draw(&root).map_err(chart_err(chart))?;
        root.present()
            .map_err(|e| chart_err(chart)(e.to_string()))?;
    }
    let title = html_escape(title);
    Ok(out
        .replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
        .replacen(
            "<svg ",
            &format!("<svg role=\"img\" aria-label=\"{title}\" class=\"chart\" "),
            1,
        ))
}

/// `&`, `<`, `>` and quotes as entities.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The value label of a group's bar: `72.5% (123 of 170)`.
pub fn completion_label(g: &GroupCompletion) -> String {
    format!(
        "{:.1}% ({} of {})",
        g.completion_pct.unwrap_or(0.0),
        g.completed,
        g.training_items
    )
}

/// Horizontal bars, one per group, the lowest completion at the top.
pub fn completion(groups: &[GroupCompletion], title: &str) -> Result<String, Error> {
    // A discrete range includes its end: segments 0..=n-1 are the n bars.
    let n = groups.len().max(1) as u32;
    let height = 80 + 30 * n;
    // Segment 0 is at the bottom: group i goes to segment n - 1 - i.
    let labels: Vec<String> = groups
        .iter()
        .map(|g| {
            let label = g.label();
            if label.chars().count() > 32 {
                format!("{}…", label.chars().take(31).collect::<String>())
            } else {
                label
            }
        })
        .collect();
    svg("completion", title, (WIDTH, height), |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(170)
            .x_label_area_size(40)
            .y_label_area_size(260)
            .build_cartesian_2d(0.0..100.0f64, (0u32..n - 1).into_segmented())
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .y_labels(n as usize)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(s) if (*s as usize) < labels.len() => {
                    labels[(n - 1 - s) as usize].clone()
                }
                _ => String::new(),
            })
            .x_labels(11)
            .x_label_formatter(&|x| format!("{x:.0}%"))
            .x_desc("training items completed")
            .label_style((FONT, 16).into_font().color(&INK))
            .axis_desc_style((FONT, 17).into_font().color(&INK))
            .draw()
            .map_err(|x| e(&x))?;
        let segment = chart.as_coord_spec().y_spec();
        let bars: Vec<_> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let (y, ny) = segment_span(segment, n - 1 - i as u32)?;
                let mut bar = Rectangle::new(
                    [(g.completion_pct.unwrap_or(0.0), y), (0.0, ny)],
                    BLUE.filled(),
                );
                bar.set_margin(5, 5, 0, 0);
                Some(bar)
            })
            .collect();
        chart.draw_series(bars).map_err(|x| e(&x))?;
        let style = (FONT, 16)
            .into_font()
            .color(&INK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(groups.iter().enumerate().map(|(i, g)| {
                Text::new(
                    completion_label(g),
                    (
                        g.completion_pct.unwrap_or(0.0) + 1.0,
                        SegmentValue::CenterOf(n - 1 - i as u32),
                    ),
                    style.clone(),
                )
            }))
            .map_err(|x| e(&x))?;
        Ok(())
    })
}

/// Where bar `i` of a segmented axis starts and ends. The bars are drawn as rectangles in
/// the data's order: plotters' `Histogram` sums its data in a `HashMap` first, which made
/// the SVG's elements come out in a different order on every run.
fn segment_span<R: DiscreteRanged<ValueType = SegmentValue<u32>>>(
    axis: &R,
    i: u32,
) -> Option<(SegmentValue<u32>, SegmentValue<u32>)> {
    let at = SegmentValue::Exact(i);
    let next = axis.from_index(axis.index_of(&at)? + 1)?;
    Some((at, next))
}

/// Vertical bars with their counts on top; `alert` bars in vermillion.
pub fn bars(
    chart_name: &'static str,
    bars: &[Bar],
    title: &str,
    y_desc: &str,
) -> Result<String, Error> {
    // A discrete range includes its end: segments 0..=n-1 are the n bars.
    let n = bars.len().max(1) as u32;
    let top = bars.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    // Head room for the count above the tallest bar.
    let y_max = (top as f64 * 1.15).ceil() as i64 + 1;
    svg(chart_name, title, (WIDTH, 380), |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((0u32..n - 1).into_segmented(), 0i64..y_max)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .x_labels(n as usize)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(s) => bars
                    .get(*s as usize)
                    .map(|b| b.label.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .y_labels(6)
            .y_label_formatter(&|y| y.to_string())
            .y_desc(y_desc)
            .label_style((FONT, 16).into_font().color(&INK))
            .axis_desc_style((FONT, 17).into_font().color(&INK))
            .draw()
            .map_err(|x| e(&x))?;
        let segment = chart.as_coord_spec().x_spec();
        let rects: Vec<_> = bars
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let (x, nx) = segment_span(segment, i as u32)?;
                let colour = if b.alert { VERMILLION } else { BLUE };
                let mut rect = Rectangle::new([(x, b.count), (nx, 0)], colour.filled());
                rect.set_margin(0, 0, 6, 6);
                Some(rect)
            })
            .collect();
        chart.draw_series(rects).map_err(|x| e(&x))?;
        let style = (FONT, 16)
            .into_font()
            .color(&INK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Text::new(
                    b.count.to_string(),
                    (SegmentValue::CenterOf(i as u32), b.count),
                    style.clone(),
                )
            }))
            .map_err(|x| e(&x))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `x` (or `y`) of each bar in the order the SVG draws them (the bars are the
    /// rectangles filled with a bar colour).
    fn bar_positions(svg: &str, attribute: &str) -> Vec<i64> {
        svg.split("<rect ")
            .skip(1)
            .filter(|r| r.contains("fill=\"#0072B2\"") || r.contains("fill=\"#D55E00\""))
            .map(|r| {
                let at = r.find(&format!("{attribute}=\"")).expect("the attribute") + 3;
                r[at..at + r[at..].find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    /// The same data gives the same SVG, bars in the data's order (they came out in a
    /// `HashMap`'s order, different on every run, with plotters' `Histogram`).
    #[test]
    fn bars_are_drawn_in_the_data_order_every_time() {
        let data: Vec<Bar> = (0..12)
            .map(|i| Bar {
                label: format!("m{i}"),
                count: 10 + i,
                alert: i == 0,
            })
            .collect();
        let first = bars("expiry", &data, "Expiry", "certificates").unwrap();
        assert_eq!(
            first,
            bars("expiry", &data, "Expiry", "certificates").unwrap()
        );
        let xs = bar_positions(&first, "x");
        assert_eq!(xs.len(), 12);
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
        assert!(first.contains("fill=\"#D55E00\""), "the alert bar");

        let groups: Vec<GroupCompletion> = (0..12)
            .map(|i| GroupCompletion {
                group_ref: Some(format!("G{i}")),
                group_name: None,
                members: 10,
                training_items: 10,
                completed: i,
                completion_pct: Some(i as f64 * 5.0),
                avg_score: None,
            })
            .collect();
        let first = completion(&groups, "Completion").unwrap();
        assert_eq!(first, completion(&groups, "Completion").unwrap());
        let ys = bar_positions(&first, "y");
        assert_eq!(ys.len(), 12);
        assert!(
            ys.windows(2).all(|w| w[0] < w[1]),
            "the first group on top: {ys:?}"
        );
    }
}
