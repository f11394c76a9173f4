//! PNG plots for the report, drawn with plotters. Text uses a font bundled
//! with didact (DejaVu Sans Mono, see `assets/`), so plots render the same
//! on machines without system fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is valid; failure here would be a build defect.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One line of an accuracy-by-turn plot, with its interval at each turn.
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
    pub band: Vec<(f64, f64)>,
}

fn err<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |e| anyhow!("{}: cannot draw plot: {e}", path.display())
}

/// A rate (%) by turn (accuracy, fix rate; `y_desc` names it), one line
/// per series, with error bars.
pub fn rate_by_turn(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[Series],
    turns: usize,
) -> Result<()> {
    fonts();
    let root = BitMapBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let top = series
        .iter()
        .flat_map(|s| s.band.iter().map(|b| b.1).chain(s.values.iter().copied()))
        .fold(0.0f64, f64::max);
    let y_max = ((top * 100.0 / 10.0).ceil() * 10.0).clamp(10.0, 100.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.7f64..turns as f64 + 0.3, 0f64..y_max)
        .map_err(err(path))?;
    chart
        .configure_mesh()
        .x_desc("turn")
        .y_desc(y_desc)
        .x_labels(turns)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err(path))?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let offset = (i as f64 - series.len() as f64 / 2.0) * 0.03;
        let points: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .map(|(t, v)| (t as f64 + 1.0 + offset, 100.0 * v))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err(path))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().zip(&s.band).map(|(&(x, y), &(lo, hi))| {
                ErrorBar::new_vertical(x, 100.0 * lo, y, 100.0 * hi, color.filled(), 6)
            }))
            .map_err(err(path))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// One bar of a gains plot.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// Horizontal bars (percentage points) with error bars, zero marked.
pub fn gain_bars(path: &Path, title: &str, bars: &[Bar]) -> Result<()> {
    fonts();
    let height = (120 + 28 * bars.len()).max(240) as u32;
    let root = BitMapBackend::new(path, (820, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let lo = bars
        .iter()
        .map(|b| b.low.min(b.value))
        .fold(0.0f64, f64::min)
        * 100.0;
    let hi = bars
        .iter()
        .map(|b| b.high.max(b.value))
        .fold(0.0f64, f64::max)
        * 100.0;
    let pad = ((hi - lo) * 0.1).max(1.0);
    let n = bars.len().max(1);
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(230)
        .build_cartesian_2d(lo - pad..hi + pad, (0..n).into_segmented())
        .map_err(err(path))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("percentage points")
        .draw()
        .map_err(err(path))?;
    for (i, b) in bars.iter().enumerate() {
        let color = if b.low > 0.0 {
            PALETTE[2]
        } else if b.high < 0.0 {
            PALETTE[3]
        } else {
            PALETTE[0]
        };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (100.0 * b.value, SegmentValue::Exact(i + 1)),
            ],
            color.mix(0.7).filled(),
        );
        bar.set_margin(4, 4, 0, 0);
        chart.draw_series(std::iter::once(bar)).map_err(err(path))?;
        chart
            .draw_series(std::iter::once(ErrorBar::new_horizontal(
                SegmentValue::CenterOf(i),
                100.0 * b.low,
                100.0 * b.value,
                100.0 * b.high,
                BLACK.filled(),
                8,
            )))
            .map_err(err(path))?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![
                (0.0, SegmentValue::Exact(0)),
                (0.0, SegmentValue::Exact(n.saturating_sub(1))),
            ],
            BLACK.stroke_width(1),
        )))
        .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}
