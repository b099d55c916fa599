//! `--plot FILE.svg`: throughput and latency (p50, p99) per second over the run, and the latency
//! percentile curve, one above the other.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Summary;

/// Draws the three charts into an SVG file.
pub fn draw(summary: &Summary, path: &Path) -> anyhow::Result<()> {
    let failed = |e: &dyn std::fmt::Debug| anyhow::anyhow!("drawing {}: {e:?}", path.display());
    let root = SVGBackend::new(path, (1000, 1050)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let (title, body) = root.split_vertically(50);
    title
        .titled(
            &format!("{} - {}", summary.workload, summary.load),
            ("sans-serif", 18),
        )
        .map_err(|e| failed(&e))?;
    let panels = body.split_evenly((3, 1));
    let seconds = &summary.per_second;
    let span = f64::from(u32::try_from(seconds.len()).unwrap_or(1).max(1));

    let peak = seconds.iter().map(|s| s.requests).max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&panels[0])
        .caption("throughput (req/s)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..span, 0f64..peak)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("second")
        .draw()
        .map_err(|e| failed(&e))?;
    chart
        .draw_series(LineSeries::new(
            seconds
                .iter()
                .map(|s| (f64::from(s.second) + 0.5, s.requests as f64)),
            &BLUE,
        ))
        .map_err(|e| failed(&e))?;

    let slowest = seconds.iter().map(|s| s.p99).fold(0.0, f64::max).max(0.001) * 1.1;
    let mut chart = ChartBuilder::on(&panels[1])
        .caption(
            "latency per second (ms): p50 blue, p99 red",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..span, 0f64..slowest)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("second")
        .draw()
        .map_err(|e| failed(&e))?;
    chart
        .draw_series(LineSeries::new(
            seconds.iter().map(|s| (f64::from(s.second) + 0.5, s.p50)),
            &BLUE,
        ))
        .map_err(|e| failed(&e))?;
    chart
        .draw_series(LineSeries::new(
            seconds.iter().map(|s| (f64::from(s.second) + 0.5, s.p99)),
            &RED,
        ))
        .map_err(|e| failed(&e))?;

    // The percentile curve on a "nines" axis: 0 is p0, 1 p90, 2 p99, 3 p99.9, 4 p99.99.
    let histogram = &summary.recording.latencies;
    let curve: Vec<(f64, f64)> = (0..=400)
        .map(|step| {
            let nines = f64::from(step) / 100.0;
            let quantile = 1.0 - 10f64.powf(-nines);
            (nines, histogram.value_at_quantile(quantile) as f64 / 1000.0)
        })
        .collect();
    let top = curve
        .last()
        .map_or(1.0, |p| p.1)
        .max(histogram.max() as f64 / 1000.0)
        .max(0.001)
        * 1.1;
    let mut chart = ChartBuilder::on(&panels[2])
        .caption("latency by percentile (ms)", ("sans-serif", 16))
        .margin(10)
        .margin_right(40)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..4f64, 0f64..top)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|nines| match nines.round() as i32 {
            0 => "p0".to_owned(),
            1 => "p90".to_owned(),
            2 => "p99".to_owned(),
            3 => "p99.9".to_owned(),
            _ => "p99.99".to_owned(),
        })
        .draw()
        .map_err(|e| failed(&e))?;
    chart
        .draw_series(LineSeries::new(curve, &BLACK))
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}
