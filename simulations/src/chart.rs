//! The chart: unused socket-time against threads, one line per series, like
//! the 2013 post's "Percentage unused sockets".

use std::path::Path;

use plotters::prelude::*;

use crate::experiment::Point;
use crate::series::{label, labels};

/// Writes an SVG chart of `points` to `path`.
pub fn write_svg(points: &[Point], sockets: usize, path: &Path) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    let max_threads = points.iter().map(|p| p.threads).max().unwrap_or(1) as f64;
    let max_unused = points.iter().map(|p| p.unused_pct).fold(10.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Percentage unused sockets ({sockets} sockets)"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_threads * 1.02, 0.0..max_unused.ceil())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("threads")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("unused socket-time, %")
        .draw()
        .map_err(|e| fail(&e))?;

    for (index, l) in labels(points.iter().map(|p| &p.series)).iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let line: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| label(&p.series) == *l)
            .map(|p| (p.threads as f64, p.unused_pct))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(l.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(
                line.into_iter()
                    .map(|xy| Circle::new(xy, 3, color.filled())),
            )
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}
