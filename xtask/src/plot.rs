//! PNG plots of load results (plotters with an embedded font, so no system fonts are needed).

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::load::RunResult;

fn fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // Ubuntu Light, shipped inside the epaint_default_fonts crate, stands in for "sans-serif".
        let _ = register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// p99 latency per second of each run, one line per (workload, client), on a log scale.
pub(crate) fn latency_over_time(path: &Path, results: &[RunResult]) -> Result<()> {
    fonts();
    let runs: Vec<&RunResult> = results.iter().filter(|r| !r.timeline.is_empty()).collect();
    let seconds = runs.iter().map(|r| r.timeline.len()).max().unwrap_or(1).max(1);
    let max_us = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|(_, p99)| *p99))
        .max()
        .unwrap_or(1000)
        .max(10);
    let root = BitMapBackend::new(path, (1200, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("p99 latency per second (µs, log scale)", ("sans-serif", 28))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0..seconds, (10u64..max_us * 2).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("p99 µs")
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, run) in runs.iter().enumerate() {
        let color = Palette99::pick(i).stroke_width(2);
        let points: Vec<(usize, u64)> = run
            .timeline
            .iter()
            .enumerate()
            .map(|(s, (_, p99))| (s, (*p99).max(10)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color))
            .map_err(|e| anyhow!("{e}"))?
            .label(format!("{:?} · {}", run.workload, run.client))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], Palette99::pick(i).stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Ops/s per client and workload (medians over rounds) as grouped bars on a log scale: one group per
/// workload, one colour per client, so a run's ratios can be seen at a glance.
pub(crate) fn throughput(path: &Path, results: &[RunResult]) -> Result<()> {
    fonts();
    let bars = crate::load::median_ops_per_sec(results);
    let mut workloads = Vec::new();
    let mut clients: Vec<&str> = Vec::new();
    for (workload, client, _) in &bars {
        if !workloads.contains(workload) {
            workloads.push(*workload);
        }
        if !clients.contains(client) {
            clients.push(client);
        }
    }
    let max = bars.iter().map(|(_, _, ops)| *ops).fold(10.0, f64::max);
    let root = BitMapBackend::new(path, (1400, 750)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let groups = workloads.len().max(1);
    let names: Vec<String> = workloads.iter().map(|w| format!("{w:?}")).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ops/s per client and workload (median over rounds, log scale)",
            ("sans-serif", 28),
        )
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..groups as f64, (1f64..max * 3.0).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&|x| {
            // Label each group at its middle only.
            let index = x.floor() as usize;
            if (x - index as f64 - 0.5).abs() < 1e-6 {
                names.get(index).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("ops/s (redis-benchmark: requests/s, one key each)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    // Each group leaves a tenth of its width free on either side; its bars share the rest.
    let width = 0.8 / clients.len().max(1) as f64;
    for (i, client) in clients.iter().enumerate() {
        let color = Palette99::pick(i).filled();
        let rects: Vec<Rectangle<(f64, f64)>> = bars
            .iter()
            .filter(|(_, c, _)| c == client)
            .filter_map(|(workload, _, ops)| {
                let group = workloads.iter().position(|w| w == workload)? as f64;
                let left = group + 0.1 + i as f64 * width;
                Some(Rectangle::new(
                    [(left, 1.0), (left + width * 0.9, ops.max(1.0))],
                    color,
                ))
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(|e| anyhow!("{e}"))?
            .label(client.to_string())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], Palette99::pick(i).filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
