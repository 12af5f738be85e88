//! The report's building blocks: SVG line charts (phases shaded and
//! labelled, SLO threshold lines, units scaled to the data), number and
//! duration formatting, table bars. Re-exported by [`crate::report`].

use std::fmt::Write;

pub use crate::units::fmt_ms;

use crate::annotations::Phase;
use crate::results::Sample;

pub(crate) const PALETTE: [&str; 8] = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563",
];
/// Colour of curve targets in single-region charts.
pub(crate) const TARGET: &str = "#111827";
const W: f64 = 880.0;
const H: f64 = 240.0;
const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 26.0;
const MB: f64 = 34.0;

/// One line of a chart; `None` y values leave a gap. Dashed lines are
/// targets: drawn over the solid ones with a white halo, so that a target
/// the actual curve follows exactly still shows.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, Option<f64>)>,
}

/// What a chart's values measure; durations and bytes are scaled to the
/// largest value (one unit per chart).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// Counts or rates: shown as they are, with this axis label.
    Plain(&'static str),
    /// Values in milliseconds, shown in µs, ms, s or min.
    Millis,
    /// Values in bytes, shown in KiB, MiB or GiB.
    Bytes,
}

impl Unit {
    /// The divisor and label for data whose largest value is `max`.
    pub fn scale(self, max: f64) -> (f64, &'static str) {
        match self {
            Unit::Plain(l) => (1.0, l),
            Unit::Millis => millis_scale(max),
            Unit::Bytes => {
                if max >= 1024.0 * 1024.0 * 1024.0 {
                    (1024.0 * 1024.0 * 1024.0, "GiB")
                } else if max >= 1024.0 * 1024.0 {
                    (1024.0 * 1024.0, "MiB")
                } else if max >= 1024.0 {
                    (1024.0, "KiB")
                } else {
                    (1.0, "bytes")
                }
            }
        }
    }
}

/// Divisor and unit for milliseconds whose largest value is `max`.
pub fn millis_scale(max: f64) -> (f64, &'static str) {
    if max > 0.0 && max < 1.0 {
        (1e-3, "µs")
    } else if max < 1_000.0 {
        (1.0, "ms")
    } else if max < 120_000.0 {
        (1_000.0, "s")
    } else {
        (60_000.0, "min")
    }
}

/// A horizontal line at a limit (an SLO), value in the chart's base unit.
pub struct Threshold {
    pub label: String,
    pub value: f64,
}

/// A chart: title, unit, the scenario's phases to shade, thresholds.
pub struct Chart<'a> {
    title: &'a str,
    unit: Unit,
    phases: Vec<&'a Phase>,
    thresholds: Vec<Threshold>,
}

impl<'a> Chart<'a> {
    pub fn new(title: &'a str, unit: Unit) -> Chart<'a> {
        Chart {
            title,
            unit,
            phases: Vec::new(),
            thresholds: Vec::new(),
        }
    }

    /// Shades `phases` (of `region` only, or of every region with `None`).
    pub fn phases(mut self, phases: &'a [Phase], region: Option<&str>) -> Self {
        self.phases = phases
            .iter()
            .filter(|p| region.is_none_or(|r| p.region == r))
            .collect();
        self
    }

    /// Draws a horizontal line at `value` (when set).
    pub fn threshold(mut self, label: impl Into<String>, value: Option<f64>) -> Self {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            self.thresholds.push(Threshold {
                label: label.into(),
                value,
            });
        }
        self
    }

    /// The chart as an HTML section (SVG plus legend).
    pub fn render(&self, series: &[Series]) -> String {
        render_chart(self, series)
    }
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" tick step (1, 2 or 5 × 10^k) for about `n` ticks over `range`.
pub(crate) fn nice_step(range: f64, n: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Compact number: 1234 → "1.2k", 2_000_000 → "2M", 0.25 → "0.25".
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

/// A time axis label: seconds, or minutes past 10 minutes.
pub(crate) fn fmt_time(s: f64, span: f64) -> String {
    if span > 600.0 {
        format!("{}m", fmt_num(s / 60.0))
    } else {
        format!("{}s", fmt_num(s))
    }
}

/// An SVG line chart with axes, grid and an HTML legend (no phases, no
/// thresholds, values as they are).
pub fn line_chart(title: &str, unit: &'static str, series: &[Series]) -> String {
    Chart::new(title, Unit::Plain(unit)).render(series)
}

/// Fill colour of a phase's shading by kind.
fn phase_fill(kind: &str) -> &'static str {
    match kind {
        "retry_storm" => "#dc2626",
        "spike" => "#d97706",
        "queue_release" => "#2563eb",
        _ => "#6b7280",
    }
}

fn render_chart(c: &Chart<'_>, series: &[Series]) -> String {
    let mut out = String::new();
    let _ = write!(out, "<section class=\"chart\"><h3>{}</h3>", esc(c.title));
    let Some((f, off_scale)) = Frame::fit(c, series) else {
        out.push_str("<p class=\"empty\">no data</p></section>");
        return out;
    };
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        esc(c.title)
    );
    draw_phases(&mut out, &f, &c.phases);
    draw_axes(&mut out, &f);
    draw_series(&mut out, &f, series);
    for t in c
        .thresholds
        .iter()
        .filter(|t| !off_scale.iter().any(|o| std::ptr::eq(*o, *t)))
    {
        let y = f.py(t.value / f.k);
        let _ = write!(
            out,
            "<g class=\"slo\"><line x1=\"{ML}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#991b1b\" stroke-width=\"1.25\" stroke-dasharray=\"2 3\"/><text x=\"{}\" y=\"{:.1}\" class=\"sl\">{}</text></g>",
            W - MR,
            W - MR - 2.0,
            y - 3.0,
            esc(&format!("{} {}", t.label, fmt_num(t.value / f.k))) + " " + &esc(f.unit)
        );
    }
    out.push_str("</svg>");
    draw_legend(&mut out, c, series, &off_scale);
    out.push_str("</section>");
    out
}

/// A chart's axes: the data's extent, the value scale and the tick steps.
struct Frame {
    x0: f64,
    x1: f64,
    /// Values are divided by `k` and labelled in `unit` (`Unit::scale`).
    k: f64,
    unit: &'static str,
    ystep: f64,
    ymax: f64,
    xstep: f64,
}

impl Frame {
    /// Fits the axes to the series and the thresholds on the scale; returns
    /// also the thresholds left off it. `None` when there is no point.
    fn fit<'c>(c: &'c Chart<'_>, series: &[Series]) -> Option<(Frame, Vec<&'c Threshold>)> {
        let pts = series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
        for (x, y) in pts {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
            if let Some(y) = y {
                y1 = y1.max(*y);
            }
        }
        if !x0.is_finite() {
            return None;
        }
        // A threshold far above the data would flatten it: such a line is
        // named in the legend instead.
        let data_max = y1;
        let mut off_scale = Vec::new();
        for t in &c.thresholds {
            if data_max <= 0.0 || t.value <= data_max * 4.0 {
                y1 = y1.max(t.value);
            } else {
                off_scale.push(t);
            }
        }
        let (k, unit) = c.unit.scale(y1);
        let y1 = y1 / k;
        x0 = x0.min(0.0);
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let ystep = nice_step(if y1 > 0.0 { y1 } else { 1.0 }, 4.0);
        let ymax = ((y1 / ystep).ceil() * ystep).max(ystep);
        // Ticks at round minutes when the axis is labelled in minutes.
        let xstep = if x1 - x0 > 600.0 {
            nice_step((x1 - x0) / 60.0, 8.0) * 60.0
        } else {
            nice_step(x1 - x0, 8.0)
        };
        let frame = Frame {
            x0,
            x1,
            k,
            unit,
            ystep,
            ymax,
            xstep,
        };
        Some((frame, off_scale))
    }

    fn px(&self, x: f64) -> f64 {
        ML + (x.clamp(self.x0, self.x1) - self.x0) / (self.x1 - self.x0) * (W - ML - MR)
    }

    fn py(&self, y: f64) -> f64 {
        MT + (1.0 - y / self.ymax) * (H - MT - MB)
    }
}

/// Phases: shaded bands, labelled at the top (rows alternate so that
/// neighbouring labels do not overlap). The same phase in several regions is
/// drawn once, naming them all.
fn draw_phases(out: &mut String, f: &Frame, phases: &[&Phase]) {
    let several = phases.iter().any(|q| q.region != phases[0].region);
    let mut merged: Vec<(&Phase, Vec<&str>)> = Vec::new();
    for p in phases {
        match merged.iter_mut().find(|(m, _)| {
            m.kind == p.kind && m.label == p.label && m.start_s == p.start_s && m.end_s == p.end_s
        }) {
            Some((_, regions)) => regions.push(&p.region),
            None => merged.push((p, vec![&p.region])),
        }
    }
    for (i, (p, regions)) in merged.iter().enumerate() {
        if p.end_s <= f.x0 || p.start_s >= f.x1 {
            continue;
        }
        let (a, b) = (f.px(p.start_s), f.px(p.end_s).max(f.px(p.start_s) + 1.0));
        let label = if several {
            format!("{} · {}", p.label, regions.join(", "))
        } else {
            p.label.clone()
        };
        let _ = write!(
            out,
            "<g class=\"phase\" data-kind=\"{kind}\"><rect x=\"{a:.1}\" y=\"{MT}\" width=\"{:.1}\" height=\"{}\" fill=\"{fill}\" fill-opacity=\"0.10\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"pl\" fill=\"{fill}\">{}</text></g>",
            b - a,
            H - MT - MB,
            a + 3.0,
            MT + 11.0 + (i % 2) as f64 * 11.0,
            esc(&label),
            kind = esc(&p.kind),
            fill = phase_fill(&p.kind),
        );
    }
}

/// Grid lines with the y labels, x ticks with the time labels, both axes and
/// the unit.
fn draw_axes(out: &mut String, f: &Frame) {
    let mut y = 0.0;
    while y <= f.ymax + f.ystep * 1e-9 {
        let _ = write!(
            out,
            "<line x1=\"{ML}\" x2=\"{}\" y1=\"{y_}\" y2=\"{y_}\" class=\"grid\"/><text x=\"{}\" y=\"{}\" class=\"yl\">{}</text>",
            W - MR,
            ML - 6.0,
            f.py(y) + 4.0,
            fmt_num(y),
            y_ = f.py(y)
        );
        y += f.ystep;
    }
    let mut x = (f.x0 / f.xstep).ceil() * f.xstep;
    while x <= f.x1 + f.xstep * 1e-9 {
        let _ = write!(
            out,
            "<line x1=\"{x_}\" x2=\"{x_}\" y1=\"{}\" y2=\"{}\" class=\"tick\"/><text x=\"{x_}\" y=\"{}\" class=\"xl\">{}</text>",
            H - MB,
            H - MB + 4.0,
            H - MB + 18.0,
            fmt_time(x, f.x1 - f.x0),
            x_ = f.px(x)
        );
        x += f.xstep;
    }
    let _ = write!(
        out,
        "<line x1=\"{ML}\" x2=\"{ML}\" y1=\"{MT}\" y2=\"{}\" class=\"axis\"/><line x1=\"{ML}\" x2=\"{}\" y1=\"{b}\" y2=\"{b}\" class=\"axis\"/>",
        H - MB,
        W - MR,
        b = H - MB
    );
    let _ = write!(
        out,
        "<text x=\"2\" y=\"14\" class=\"unit\">{}</text>",
        esc(f.unit)
    );
}

/// The series: solid lines first, then dashed targets over them. Each is one
/// path with gaps where values are missing; a point with no neighbour is a dot.
fn draw_series(out: &mut String, f: &Frame, series: &[Series]) {
    let ordered = series
        .iter()
        .filter(|s| !s.dashed)
        .chain(series.iter().filter(|s| s.dashed));
    for s in ordered {
        let mut d = String::new();
        let mut pen = false;
        let mut lone = Vec::new();
        for (i, (x, y)) in s.points.iter().enumerate() {
            match y {
                Some(y) => {
                    let (cx, cy) = (f.px(*x), f.py(*y / f.k));
                    let _ = write!(d, "{}{cx:.1},{cy:.1} ", if pen { "L" } else { "M" });
                    let next_missing = s.points.get(i + 1).is_none_or(|p| p.1.is_none());
                    if !pen && next_missing {
                        lone.push((cx, cy));
                    }
                    pen = true;
                }
                None => pen = false,
            }
        }
        let d = d.trim_end();
        if s.dashed {
            let _ = write!(
                out,
                "<path d=\"{d}\" fill=\"none\" stroke=\"#fff\" stroke-width=\"4\" stroke-dasharray=\"7 5\" stroke-opacity=\"0.9\"/><path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.75\" stroke-dasharray=\"7 5\" class=\"target\"/>",
                s.color
            );
        } else {
            let _ = write!(
                out,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\" stroke-linejoin=\"round\" class=\"actual\"/>",
                s.color
            );
        }
        for (cx, cy) in lone {
            let _ = write!(
                out,
                "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"2.5\" fill=\"{}\"/>",
                s.color
            );
        }
    }
}

/// The legend: each series, each threshold (saying when it is above the
/// scale), and the phases' shading.
fn draw_legend(out: &mut String, c: &Chart<'_>, series: &[Series], off_scale: &[&Threshold]) {
    out.push_str("<div class=\"legend\">");
    for s in series {
        let _ = write!(
            out,
            "<span><i style=\"border-top:3px {} {}\"></i>{}</span>",
            if s.dashed { "dashed" } else { "solid" },
            s.color,
            esc(&s.name)
        );
    }
    for t in &c.thresholds {
        let above = off_scale.iter().any(|o| std::ptr::eq(*o, t));
        let _ = write!(
            out,
            "<span><i style=\"border-top:2px dotted #991b1b\"></i>{}{}</span>",
            esc(&t.label),
            if above {
                format!(" ({}: above the scale)", esc(&fmt_value(c.unit, t.value)))
            } else {
                String::new()
            }
        );
    }
    if !c.phases.is_empty() {
        out.push_str("<span><i class=\"shade\"></i>shaded: the scenario's phases</span>");
    }
    out.push_str("</div>");
}

/// One value with its own unit.
pub(crate) fn fmt_value(unit: Unit, v: f64) -> String {
    let (k, u) = unit.scale(v);
    format!("{} {u}", fmt_num(v / k))
}

pub(crate) fn series(
    name: impl Into<String>,
    color: &'static str,
    dashed: bool,
    tl: &[Sample],
    f: impl Fn(&Sample) -> Option<f64>,
) -> Series {
    Series {
        name: name.into(),
        color,
        dashed,
        points: tl.iter().map(|s| (s.t_s, f(s))).collect(),
    }
}

/// A horizontal bar inside a table cell, `v` of `max`.
pub(crate) fn bar(v: f64, max: f64, color: &str) -> String {
    let w = if max > 0.0 {
        (v / max * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!("<div class=\"bar\"><b style=\"width:{w:.1}%;background:{color}\"></b></div>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_steps() {
        assert_eq!(fmt_num(2_000_000.0), "2M");
        assert_eq!(fmt_num(12_345.0), "12.3k");
        assert_eq!(fmt_num(250.0), "250");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(0.125), "0.125");
        assert_eq!(nice_step(100.0, 4.0), 50.0);
        assert_eq!(nice_step(7.0, 8.0), 1.0);
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }

    #[test]
    fn chart_units_scale_with_the_largest_value() {
        assert_eq!(millis_scale(0.85), (1e-3, "µs"));
        assert_eq!(millis_scale(3.0), (1.0, "ms"));
        assert_eq!(millis_scale(1_500.0), (1_000.0, "s"));
        assert_eq!(millis_scale(22.0 * 60_000.0), (60_000.0, "min"));
        assert_eq!(
            Unit::Bytes.scale(40.0 * 1024.0 * 1024.0),
            (1024.0 * 1024.0, "MiB")
        );
    }

    fn line(points: Vec<(f64, Option<f64>)>, dashed: bool) -> Series {
        Series {
            name: "x<y".into(),
            color: PALETTE[0],
            dashed,
            points,
        }
    }

    #[test]
    fn chart_handles_gaps_and_empty_input() {
        let s = line(
            vec![(0.0, Some(1.0)), (1.0, None), (2.0, Some(3.0)), (3.0, Some(2.0))],
            false,
        );
        let svg = line_chart("t", "u", &[s]);
        assert_eq!(svg.matches("<path").count(), 1);
        assert_eq!(
            svg.matches("<circle").count(),
            1,
            "a lone point is drawn as a dot"
        );
        assert!(svg.contains("x&lt;y"));
        assert!(line_chart("t", "u", &[]).contains("no data"));
    }

    #[test]
    fn targets_over_actuals_phases_and_thresholds() {
        let pts = vec![(0.0, Some(2_000.0)), (10.0, Some(4_000.0))];
        let phases = [Phase {
            region: "eu".into(),
            kind: "retry_storm".into(),
            start_s: 2.0,
            end_s: 4.0,
            label: "retry storm".into(),
        }];
        let svg = Chart::new("t", Unit::Millis)
            .phases(&phases, Some("eu"))
            .threshold("SLO p99", Some(3_000.0))
            .threshold("far", Some(1e9))
            .render(&[line(pts.clone(), true), line(pts, false)]);
        let actual = svg.find("class=\"actual\"").unwrap();
        let target = svg.find("class=\"target\"").unwrap();
        assert!(actual < target, "the target is drawn over the actual line");
        assert!(svg.contains("data-kind=\"retry_storm\"") && svg.contains(">retry storm<"));
        assert!(
            svg.contains("SLO p99 3 s"),
            "threshold in the chart's unit: {svg}"
        );
        assert!(svg.contains(">s</text>"), "4,000 ms is drawn in seconds");
        assert!(svg.contains("above the scale"));
        assert_eq!(svg.matches("class=\"slo\"").count(), 1);
        let other = Chart::new("t", Unit::Millis)
            .phases(&phases, Some("us"))
            .render(&[]);
        assert!(!other.contains("data-kind"));
    }
}
