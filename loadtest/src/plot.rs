//! `--plot FILE.svg|FILE.png`: the latency percentile distribution, drawn as HdrHistogram
//! plots are: the x axis is `1 / (1 − percentile)` on a log scale, labelled 90%, 99%,
//! 99.9%, …, so the tail gets as much room as the body; the y axis is latency in ms. One
//! line for receive − ts_gateway, one for receive − ts_event.
//!
//! Text needs a font: one is loaded at run time from the system font directories (DejaVu
//! Sans or Liberation Sans preferred, any `.ttf` otherwise). Without one, a `.png` is
//! refused (suggesting `.svg`), and an `.svg` is still drawn: plotters draws the lines and
//! the labels are written as SVG `<text>` elements for the viewer to render.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::Report;

/// Picture size in pixels.
const SIZE: (u32, u32) = (1000, 620);
const MARGIN_LEFT: i32 = 95;
const MARGIN_BOTTOM: i32 = 60;
const MARGIN_TOP: i32 = 50;
const MARGIN_RIGHT: i32 = 30;

/// Directories searched for a font.
const FONT_DIRS: &[&str] = &["/usr/share/fonts", "/usr/local/share/fonts"];
/// Preferred font files, best first.
const PREFERRED_FONTS: &[&str] = &["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf"];

/// One line of the plot.
struct Series<'a> {
    name: String,
    points: Vec<(f64, f64)>,
    color: &'a RGBColor,
}

/// A label to draw (or to write into the SVG).
struct Label {
    text: String,
    at: (i32, i32),
    anchor: &'static str,
    size: u32,
    rotate: bool,
}

/// Finds and registers a system font once; returns whether text can be drawn.
fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let Some(path) = find_font() else { return false };
        let Ok(bytes) = std::fs::read(&path) else { return false };
        // plotters keeps registered fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

fn find_font() -> Option<PathBuf> {
    let mut all = Vec::new();
    let mut home_dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        home_dirs.push(PathBuf::from(&home).join(".fonts"));
        home_dirs.push(PathBuf::from(home).join(".local/share/fonts"));
    }
    for dir in FONT_DIRS.iter().map(PathBuf::from).chain(home_dirs) {
        collect_ttf(&dir, 0, &mut all);
    }
    PREFERRED_FONTS
        .iter()
        .find_map(|name| all.iter().find(|p| p.file_name().is_some_and(|f| f == *name)).cloned())
        .or_else(|| all.into_iter().next())
}

/// Collects `.ttf` files under `dir` (bounded depth and count).
fn collect_ttf(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 5 || out.len() > 2000 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_ttf(&p, depth + 1, out);
        } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")) {
            out.push(p);
        }
    }
}

/// The label of x = 1 / (1 − p): `1` → `0%`, `10` → `90%`, `1000` → `99.9%`.
pub fn percentile_label(x: f64) -> String {
    if x <= 1.0 {
        return "0%".into();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    let decimals = (x.log10().round() as i32 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
}

/// The points of a latency histogram (ns) as (1 / (1 − q), ms), up to `x_max`, ending with
/// the maximum at `x_max`.
fn points(h: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    if h.is_empty() {
        return pts;
    }
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        let x = 1.0 / (1.0 - q);
        if x > x_max {
            break;
        }
        pts.push((x.max(1.0), h.highest_equivalent(v.value_iterated_to()) as f64 / 1e6));
    }
    pts.push((x_max, h.max() as f64 / 1e6));
    pts
}

/// A y label: up to 6 decimals, trailing zeros trimmed (`0.5`, `4`, `0.125`).
fn fmt_ms(y: f64) -> String {
    let s = format!("{y:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" { "0".to_string() } else { s.to_string() }
}

/// A "nice" tick step for `0..max` with about 6 ticks.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 6.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    mag * if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// Writes the plot of `report` to `path` (`.svg` or `.png`).
///
/// # Errors
///
/// An unsupported extension, a `.png` without any system font, or a drawing/IO error; each
/// message names the file.
pub fn write(path: &Path, report: &Report) -> Result<(), String> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let gw = &report.histograms.latency_gateway.0;
    let ev = &report.histograms.latency_event.0;
    let count = gw.len().max(ev.len()).max(100);
    let x_max = 10f64.powi((count as f64).log10().ceil().clamp(2.0, 7.0) as i32);
    let series = [
        Series {
            name: format!("receive - ts_gateway (p99 {})", crate::stats::fmt_ns(report.latency_gateway.p99)),
            points: points(gw, x_max),
            color: &BLUE,
        },
        Series {
            name: format!("receive - ts_event (p99 {})", crate::stats::fmt_ns(report.latency_event.p99)),
            points: points(ev, x_max),
            color: &RED,
        },
    ];
    let y_top =
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max).max(0.001) * 1.08;
    let c = &report.config;
    let title = format!(
        "tickgate latency by percentile: {}, {} clients x {} symbols, {} updates",
        c.profile.as_deref().unwrap_or("custom"),
        report.clients.target,
        c.symbols_per_client,
        report.updates
    );
    let err = |e: String| format!("plotting to {}: {e}", path.display());
    match ext.as_str() {
        "svg" => {
            let text = font_available();
            let mut svg = String::new();
            let labels = {
                let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
                let labels = draw(&root, &series, x_max, y_top, &title, text).map_err(err)?;
                root.present().map_err(|e| err(e.to_string()))?;
                labels
            };
            if !text {
                inject_svg_labels(&mut svg, &labels);
            }
            std::fs::write(path, svg).map_err(|e| format!("writing {}: {e}", path.display()))
        }
        "png" => {
            if !font_available() {
                return Err(format!(
                    "cannot write {}: no font found under {} to draw text in a PNG; use a .svg plot instead",
                    path.display(),
                    FONT_DIRS.join(", ")
                ));
            }
            let root = BitMapBackend::new(path, SIZE).into_drawing_area();
            draw(&root, &series, x_max, y_top, &title, true).map_err(err)?;
            root.present().map_err(|e| err(e.to_string()))
        }
        _ => Err(format!("--plot {}: use a .svg or .png file name", path.display())),
    }
}

/// Draws the chart; with `text` false, draws no text and returns the labels to add.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[Series<'_>],
    x_max: f64,
    y_top: f64,
    title: &str,
    text: bool,
) -> Result<Vec<Label>, String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let decades = x_max.log10().round() as i32;
    let x_keys: Vec<f64> = (0..=decades).map(|d| 10f64.powi(d)).collect();
    let step = nice_step(y_top);
    let y_keys: Vec<f64> = (0..).map(|i| i as f64 * step).take_while(|y| *y <= y_top).collect();
    let mut builder = ChartBuilder::on(root);
    builder
        .margin_top(MARGIN_TOP)
        .margin_right(MARGIN_RIGHT)
        .x_label_area_size(if text { MARGIN_BOTTOM } else { 0 })
        .y_label_area_size(if text { MARGIN_LEFT } else { 0 })
        .margin_left(if text { 15 } else { MARGIN_LEFT })
        .margin_bottom(if text { 0 } else { MARGIN_BOTTOM });
    if text {
        builder.caption(title, ("sans-serif", 20));
    }
    let mut chart = builder
        .build_cartesian_2d((1f64..x_max).log_scale().with_key_points(x_keys.clone()), 0f64..y_top)
        .map_err(|x| e(&x))?;
    let x_fmt = |x: &f64| percentile_label(*x);
    let y_fmt = |y: &f64| fmt_ms(*y);
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(WHITE.mix(0.0)).bold_line_style(BLACK.mix(0.12));
    if text {
        mesh.x_desc("percentile").y_desc("latency (ms)").x_label_formatter(&x_fmt).y_label_formatter(&y_fmt);
    } else {
        // Our own y grid below, at the ticks we label.
        mesh.x_labels(0).y_labels(0).disable_y_mesh();
    }
    mesh.draw().map_err(|x| e(&x))?;
    if !text {
        for &y in &y_keys {
            chart.draw_series(LineSeries::new([(1.0, y), (x_max, y)], BLACK.mix(0.12))).map_err(|x| e(&x))?;
        }
    }
    for s in series {
        let color = s.color;
        let drawn = chart.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)));
        let drawn = drawn.map_err(|x| e(&x))?;
        if text {
            drawn.label(&s.name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
        return Ok(Vec::new());
    }
    // No font: hand the labels back for the SVG to render.
    let mut labels = Vec::new();
    for &x in &x_keys {
        let (px, py) = chart.backend_coord(&(x, 0.0));
        labels.push(Label {
            text: percentile_label(x),
            at: (px, py + 18),
            anchor: "middle",
            size: 12,
            rotate: false,
        });
    }
    for &y in &y_keys {
        let (px, py) = chart.backend_coord(&(1.0, y));
        labels.push(Label { text: fmt_ms(y), at: (px - 6, py + 4), anchor: "end", size: 12, rotate: false });
    }
    let (w, h) = (SIZE.0 as i32, SIZE.1 as i32);
    labels.push(Label {
        text: title.to_string(),
        at: (w / 2, 30),
        anchor: "middle",
        size: 18,
        rotate: false,
    });
    labels.push(Label {
        text: "percentile".into(),
        at: (w / 2, h - 12),
        anchor: "middle",
        size: 14,
        rotate: false,
    });
    labels.push(Label {
        text: "latency (ms)".into(),
        at: (20, h / 2),
        anchor: "middle",
        size: 14,
        rotate: true,
    });
    for (i, s) in series.iter().enumerate() {
        let y = MARGIN_TOP + 24 + 20 * i as i32;
        labels.push(Label {
            text: s.name.clone(),
            at: (MARGIN_LEFT + 40, y),
            anchor: "start",
            size: 13,
            rotate: false,
        });
        root.draw(&PathElement::new(
            vec![(MARGIN_LEFT + 12, y - 4), (MARGIN_LEFT + 34, y - 4)],
            s.color.stroke_width(2),
        ))
        .map_err(|x| e(&x))?;
    }
    Ok(labels)
}

/// Adds `labels` as `<text>` elements before the closing `</svg>`.
fn inject_svg_labels(svg: &mut String, labels: &[Label]) {
    let mut t = String::new();
    for l in labels {
        let esc = l.text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let rot = if l.rotate {
            format!(" transform=\"rotate(-90 {} {})\"", l.at.0, l.at.1)
        } else {
            String::new()
        };
        t.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"{}\" text-anchor=\"{}\"{rot}>{esc}</text>\n",
            l.at.0, l.at.1, l.size, l.anchor
        ));
    }
    match svg.rfind("</svg>") {
        Some(i) => svg.insert_str(i, &t),
        None => svg.push_str(&t),
    }
}

/// Draws the SVG without relying on a font (the fallback path), for tests.
///
/// # Errors
///
/// As [`write()`].
pub fn svg_without_font(report: &Report) -> Result<String, String> {
    let gw = &report.histograms.latency_gateway.0;
    let x_max = 1e4;
    let series = [Series { name: "receive - ts_gateway".into(), points: points(gw, x_max), color: &BLUE }];
    let mut svg = String::new();
    let labels = {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let labels = draw(&root, &series, x_max, 1.0, "test", false)?;
        root.present().map_err(|e| e.to_string())?;
        labels
    };
    inject_svg_labels(&mut svg, &labels);
    Ok(svg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_steps() {
        let cases = [
            (1.0, "0%"),
            (10.0, "90%"),
            (100.0, "99%"),
            (1000.0, "99.9%"),
            (1e4, "99.99%"),
            (1e5, "99.999%"),
        ];
        for (x, want) in cases {
            assert_eq!(percentile_label(x), want);
        }
        assert_eq!(fmt_ms(0.5), "0.5");
        assert_eq!(fmt_ms(4.0), "4");
        assert_eq!(fmt_ms(0.125), "0.125");
        assert_eq!(fmt_ms(0.0), "0");
        assert_eq!(nice_step(6.0), 1.0);
        assert_eq!(nice_step(0.3), 0.05);
        assert_eq!(nice_step(1000.0), 200.0);
    }

    fn report() -> Report {
        let mut r = Report::default();
        for v in 1..=10_000u64 {
            r.histograms.latency_gateway.0.saturating_record(v * 1_000);
            r.histograms.latency_event.0.saturating_record(v * 2_000);
        }
        r
    }

    #[test]
    fn points_rise_to_the_max() {
        let r = report();
        let p = points(&r.histograms.latency_gateway.0, 1e4);
        assert!(p.len() > 20);
        assert!(p.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1), "{p:?}");
        assert_eq!(p.last().unwrap().0, 1e4);
    }

    #[test]
    fn svg_is_written_with_and_without_a_font() {
        let svg = svg_without_font(&report()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("99.9%") && svg.contains("latency (ms)"));
        let dir = std::env::temp_dir().join(format!("tickgate-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.svg");
        write(&f, &report()).unwrap();
        assert!(std::fs::read_to_string(&f).unwrap().contains("<svg"));
        if font_available() {
            let png = dir.join("p.png");
            write(&png, &report()).unwrap();
            assert!(std::fs::metadata(&png).unwrap().len() > 1000);
        } else {
            assert!(write(&dir.join("p.png"), &report()).unwrap_err().contains(".svg"));
        }
        assert!(write(&dir.join("p.gif"), &report()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
