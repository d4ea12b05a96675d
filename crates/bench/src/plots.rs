//! PNG and SVG figures with `plotters`: line charts of accuracy against a cost (with 95%
//! error bars, titled axes and a legend beside the plot) and bar charts of per-bin differences.
//!
//! Text is drawn with DejaVu Sans, bundled under `assets/` (Bitstream Vera licence, which
//! permits redistribution; see `assets/DejaVu-LICENSE.txt`), so PNGs render the same on any
//! machine without fontconfig or system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::{BenchError, BenchErrorKind};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1100, 700);
/// Line charts draw their legend in a column right of the plot, where it can never cover a
/// point (a run's token plot carries a dozen series).
const LEGEND_WIDTH: u32 = 430;
/// Legend labels longer than this wrap onto a second line.
const LEGEND_WRAP: usize = 44;

fn register_font() {
    REGISTER.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the bundled font could not be loaded; plot text may be missing");
        }
    });
}

/// Which points of a series its line joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// The Pareto-optimal points (most accurate for their cost); every point gets a marker.
    Frontier,
    /// Every point, in order of x.
    All,
}

/// One curve: points `(x, y, y_lo, y_hi, label)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64, f64, String)>,
    pub dashed: bool,
    pub line: LineKind,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64, f64, f64, String)>) -> Self {
        Self {
            name: name.into(),
            points,
            dashed: false,
            line: LineKind::Frontier,
        }
    }

    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }

    /// Join every point instead of the Pareto frontier.
    pub fn join_all(mut self) -> Self {
        self.line = LineKind::All;
        self
    }
}

/// A line chart of accuracy (or any y) against a cost, on a logarithmic x axis (costs span
/// orders of magnitude); points with a cost of 0 or less are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Label each point (e.g. with its budget).
    pub annotate: bool,
    pub series: Vec<Series>,
}

/// One bar series: its name and `(y, lo, hi)` per group.
pub type BarSeries = (String, Vec<(f64, f64, f64)>);

/// A grouped bar chart with error bars: `groups` along x, one bar per series in each.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub groups: Vec<String>,
    /// `(name, values (y, lo, hi) per group)`.
    pub series: Vec<BarSeries>,
}

fn color(i: usize) -> RGBColor {
    // Twenty distinct colours: a run's token plot can carry a dozen series and more.
    const COLORS: [RGBColor; 20] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 128),
        RGBColor(128, 0, 0),
        RGBColor(0, 128, 128),
        RGBColor(128, 128, 0),
        RGBColor(255, 0, 255),
        RGBColor(0, 0, 0),
        RGBColor(218, 165, 32),
        RGBColor(0, 100, 0),
        RGBColor(210, 105, 30),
        RGBColor(72, 61, 139),
    ];
    COLORS[i % COLORS.len()]
}

type DrawResult<T, DB> = Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn range_of(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

fn draw_line<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &LineChart,
) -> DrawResult<(), DB> {
    root.fill(&WHITE)?;
    let (root, legend_area) = root.split_horizontally(SIZE.0);
    draw_legend(&legend_area, &chart.series)?;
    let positive = |x: f64| x.is_finite() && x > 0.0;
    let (x0, x1) = range_of(
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .filter(|x| positive(*x)),
    )
    .unwrap_or((1.0, 10.0));
    // The axis starts at a power of ten: plotters labels a log axis from its first power of
    // ten on, so anything left of it would have no tick labels.
    let (xa, xb) = (
        10f64.powf((x0 / 1.2).log10().floor()),
        (x1 * 1.35).max(x0 * 2.0),
    );
    let (y0, y1) = range_of(
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().flat_map(|p| [p.2, p.3, p.1])),
    )
    .unwrap_or((0.0, 1.0));
    let (ya, yb) = (
        (y0 - 0.05).min(0.0),
        (y1 + 0.05)
            .max(0.1)
            .min(if y1 <= 1.0 { 1.02 } else { f64::MAX }),
    );
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.title, (FAMILY, 24))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(75)
        .build_cartesian_2d((xa..xb).log_scale(), ya..yb)?;
    // Tick marks at every 1..9 × 10^k; labels only at 1, 2 and 5 × 10^k, so they never crowd.
    let x_fmt = |x: &f64| {
        let mantissa = x / 10f64.powf(x.log10().floor());
        if ![1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6) {
            String::new()
        } else if *x >= 100.0 {
            format!("{x:.0}")
        } else if *x >= 1.0 {
            format!("{x:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned()
        } else {
            format!("{x:.2}")
        }
    };
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .axis_desc_style((FAMILY, 19))
        .label_style((FAMILY, 15))
        .x_labels(40)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;
    for (i, s) in chart.series.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| positive(p.0))
            .map(|p| (p.0, p.1))
            .collect();
        let line: Vec<(f64, f64)> = match s.line {
            LineKind::Frontier => crate::metrics::pareto(&pts),
            LineKind::All => pts.clone(),
        };
        let style = ShapeStyle::from(&c).stroke_width(2);
        if s.dashed {
            ctx.draw_series(DashedLineSeries::new(line, 8, 5, style))?;
        } else {
            ctx.draw_series(LineSeries::new(line, style))?;
        }
        ctx.draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 4, c.filled())))?;
        ctx.draw_series(s.points.iter().filter(|p| positive(p.0)).map(|p| {
            ErrorBar::new_vertical(
                p.0,
                p.2,
                p.1,
                p.3,
                ShapeStyle::from(&c.mix(0.6)).stroke_width(1),
                8,
            )
        }))?;
        if chart.annotate {
            ctx.draw_series(
                s.points
                    .iter()
                    .filter(|p| !p.4.is_empty() && positive(p.0))
                    .map(|p| {
                        Text::new(
                            p.4.clone(),
                            (p.0, p.1),
                            (FAMILY, 12)
                                .into_font()
                                .color(&c)
                                .pos(Pos::new(HPos::Left, VPos::Bottom)),
                        )
                    }),
            )?;
        }
    }
    root.present()?;
    Ok(())
}

/// Split a legend label into lines of at most about [`LEGEND_WRAP`] characters, at spaces.
fn wrap_label(label: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in label.split(' ') {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= LEGEND_WRAP => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// The legend, one entry per series in its colour and line style, top to bottom.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> DrawResult<(), DB> {
    const LINE_HEIGHT: i32 = 19;
    let mut y = 70;
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        let style = ShapeStyle::from(&c).stroke_width(2);
        if s.dashed {
            area.draw(&PathElement::new(vec![(4, y), (11, y)], style))?;
            area.draw(&PathElement::new(vec![(21, y), (28, y)], style))?;
        } else {
            area.draw(&PathElement::new(vec![(4, y), (28, y)], style))?;
        }
        area.draw(&Circle::new((16, y), 4, c.filled()))?;
        let font = (FAMILY, 15)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for line in wrap_label(&s.name) {
            area.draw(&Text::new(line, (38, y), font.clone()))?;
            y += LINE_HEIGHT;
        }
        y += 6;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &BarChart,
) -> DrawResult<(), DB> {
    root.fill(&WHITE)?;
    let groups = chart.groups.len().max(1);
    let (y0, y1) = range_of(
        chart
            .series
            .iter()
            .flat_map(|s| s.1.iter().flat_map(|v| [v.0, v.1, v.2])),
    )
    .unwrap_or((0.0, 1.0));
    let (ya, yb) = ((y0 - 0.05).min(0.0), (y1 + 0.05).max(0.05));
    let labels = chart.groups.clone();
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, (FAMILY, 26))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(75)
        .build_cartesian_2d(0.0..groups as f64, ya..yb)?;
    let fmt = move |v: &f64| {
        let i = v.floor() as usize;
        if (v - v.floor() - 0.5).abs() < 1e-6 {
            labels.get(i).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .axis_desc_style((FAMILY, 20))
        .label_style((FAMILY, 15))
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&fmt)
        .y_label_formatter(&|v| format!("{v:+.2}"))
        .disable_x_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    ctx.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 0.0), (groups as f64, 0.0)],
        BLACK,
    )))?;
    let n = chart.series.len().max(1) as f64;
    let width = 0.8 / n;
    for (si, (name, values)) in chart.series.iter().enumerate() {
        let c = color(si);
        let left = |gi: usize| gi as f64 + 0.1 + si as f64 * width;
        ctx.draw_series(values.iter().enumerate().map(|(gi, v)| {
            Rectangle::new(
                [(left(gi) + 0.01, 0.0), (left(gi) + width - 0.01, v.0)],
                c.mix(0.75).filled(),
            )
        }))?
        .label(name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], c.filled()));
        ctx.draw_series(values.iter().enumerate().map(|(gi, v)| {
            ErrorBar::new_vertical(
                left(gi) + width / 2.0,
                v.1,
                v.0,
                v.2,
                ShapeStyle::from(&BLACK).stroke_width(1),
                10,
            )
        }))?;
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 15))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A chart that can draw itself on any plotters backend.
trait Drawable {
    /// Pixel size of the figure.
    fn size(&self) -> (u32, u32) {
        SIZE
    }
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB>;
}

impl Drawable for LineChart {
    fn size(&self) -> (u32, u32) {
        (SIZE.0 + LEGEND_WIDTH, SIZE.1)
    }
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        draw_line(root, self)
    }
}

impl Drawable for BarChart {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        draw_bars(root, self)
    }
}

/// Write `stem.png` and `stem.svg`.
fn write_both(chart: &impl Drawable, stem: &Path) -> crate::Result<Vec<PathBuf>> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let failed = |p: &Path, e: &dyn std::fmt::Display| {
        BenchError::new(
            BenchErrorKind::Plot,
            format!("drawing {}: {e}", p.display()),
        )
    };
    chart
        .draw_on(&BitMapBackend::new(&png, chart.size()).into_drawing_area())
        .map_err(|e| failed(&png, &e))?;
    chart
        .draw_on(&SVGBackend::new(&svg, chart.size()).into_drawing_area())
        .map_err(|e| failed(&svg, &e))?;
    Ok(vec![png, svg])
}

/// Write `stem.png` and `stem.svg`.
pub fn line_chart(chart: &LineChart, stem: &Path) -> crate::Result<Vec<PathBuf>> {
    write_both(chart, stem)
}

/// Write `stem.png` and `stem.svg`.
pub fn bar_chart(chart: &BarChart, stem: &Path) -> crate::Result<Vec<PathBuf>> {
    write_both(chart, stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_legend_labels_wrap_at_spaces_and_keep_every_word() {
        let label = "aided-solve k=1: retrieved c' + c + q (fallback: c + q)";
        let lines = wrap_label(label);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.chars().count() <= LEGEND_WRAP),
            "{lines:?}"
        );
        assert_eq!(lines.join(" "), label);
        assert_eq!(
            wrap_label("test-time only (c + q)"),
            vec!["test-time only (c + q)"]
        );
    }
}
