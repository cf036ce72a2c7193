//! The plot: an SVG of players, tick time, update latency and bandwidth against time, and in ramp mode the
//! steps' figures against players. SVG text is `<text>` elements, so nothing needs a font file.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::report::{Report, Sample};
use crate::run::{p50, p99};

/// One line: a name, a colour and its points.
struct Line {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn line(
    name: &'static str,
    color: RGBColor,
    samples: &[Sample],
    y: impl Fn(&Sample) -> Option<f64>,
) -> Line {
    Line {
        name,
        color,
        points: samples
            .iter()
            .filter_map(|s| y(s).map(|v| (s.to_s, v)))
            .collect(),
    }
}

/// A panel of lines with a title and axis names.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
    hline: Option<(f64, &str)>,
) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plot: {e}");
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (mut x_max, mut x_min) = (1.0f64, f64::INFINITY);
    let mut ys = Vec::new();
    for &(x, y) in all {
        x_max = x_max.max(x);
        x_min = x_min.min(x);
        ys.push(y);
    }
    let (mut y_max, clipped) = robust_top(&mut ys);
    if let Some((h, _)) = hline {
        y_max = y_max.max(h * 1.1);
    }
    let title = if clipped {
        format!("{title} [y axis clipped]")
    } else {
        title.to_owned()
    };
    if !x_min.is_finite() || x_min >= x_max {
        x_min = 0.0;
    }
    let mut chart = ChartBuilder::on(area)
        .caption(&title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x_min..x_max, 0.0..y_max * 1.05)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(&e))?;
    for l in lines {
        let color = l.color;
        // Points above the axis are drawn at its top.
        let top = y_max * 1.05;
        let points: Vec<(f64, f64)> = l.points.iter().map(|&(x, y)| (x, y.min(top))).collect();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(l.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if l.points.len() < 30 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    if let Some((h, name)) = hline {
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(LineSeries::new(
                [(x_min, h), (x_max, h)],
                grey.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// The top of a y axis for `ys`: their maximum, unless a few outliers (the world's generation tick, the first
/// second of connecting) would flatten everything else; then 1.5 × the 95th percentile (and `true`).
fn robust_top(ys: &mut [f64]) -> (f64, bool) {
    ys.sort_by(f64::total_cmp);
    let Some(&max) = ys.last() else {
        return (1.0, false);
    };
    let p95 = ys[((ys.len() - 1) as f64 * 0.95).round() as usize];
    if ys.len() >= 10 && max > 3.0 * p95 && p95 > 0.0 {
        (p95 * 1.5, true)
    } else {
        (max.max(1e-9), false)
    }
}

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const RED_: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);

/// Draw `report` as an SVG at `path`.
pub(crate) fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    let ramp = report.mode == "ramp";
    let rows = if ramp { 6 } else { 4 };
    let root = SVGBackend::new(path, (1100, 280 * rows)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let areas = root.split_evenly((rows as usize, 1));
    let s = &report.samples;
    let sla = &report.sla;
    let time = "time (s)";
    panel(
        &areas[0],
        &format!(
            "players connected ({} scenario, seed {})",
            report.scenario, report.seed
        ),
        time,
        "players",
        &[line("bot sessions", BLUE_, s, |x| Some(x.players as f64))],
        None,
    )?;
    let tick_title = if report.server.metrics_available {
        "server tick time (p50/p99/max over recent ticks, started afresh at each measurement; tick-thread CPU per tick, per second)"
    } else {
        "server tick time: unavailable (external server)"
    };
    panel(
        &areas[1],
        tick_title,
        time,
        "ms",
        &[
            line("p50", BLUE_, s, |x| x.server.map(|t| t.p50_ms)),
            line("p99", RED_, s, |x| x.server.map(|t| t.p99_ms)),
            line("tick-thread CPU / tick", GREEN_, s, |x| {
                x.server.and_then(|t| t.cpu_mean_ms)
            }),
        ],
        Some((sla.tick_p99_ms, "p99 limit")),
    )?;
    panel(
        &areas[2],
        "update latency (tick commit → frame at a bot seeing another player move) and reducer round trip, per second",
        time,
        "ms",
        &[
            line("update p50", BLUE_, s, |x| p50(&x.update_latency)),
            line("update p99", RED_, s, |x| p99(&x.update_latency)),
            line("round trip p99", PURPLE, s, |x| p99(&x.reducer_rtt)),
        ],
        Some((sla.latency_p99_ms, "update p99 limit")),
    )?;
    panel(
        &areas[3],
        "bandwidth per client (UDP payload bytes per second)",
        time,
        "B/s",
        &[
            line("down", BLUE_, s, |x| {
                (x.players > 0).then_some(x.down_bytes_per_s)
            }),
            line("up", ORANGE, s, |x| {
                (x.players > 0).then_some(x.up_bytes_per_s)
            }),
        ],
        None,
    )?;
    if ramp {
        let steps = &report.steps;
        let by_players =
            |name, color, y: &dyn Fn(&crate::report::StepReport) -> Option<f64>| Line {
                name,
                color,
                points: steps
                    .iter()
                    .filter_map(|st| y(st).map(|v| (f64::from(st.players), v)))
                    .collect(),
            };
        panel(
            &areas[4],
            "ramp: p99 per step against players",
            "players",
            "ms",
            &[
                by_players("tick p99", RED_, &|st| st.measured.server.map(|t| t.p99_ms)),
                by_players("update latency p99", BLUE_, &|st| {
                    p99(&st.measured.update_latency)
                }),
                by_players("tick-thread CPU / tick", GREEN_, &|st| {
                    st.measured.server.and_then(|t| t.cpu_mean_ms)
                }),
            ],
            Some((sla.tick_p99_ms, "tick p99 limit")),
        )?;
        panel(
            &areas[5],
            "ramp: bandwidth per client, server and bots' CPU per player per tick, against players",
            "players",
            "B/s  |  µs × 100",
            &[
                by_players("down B/s", BLUE_, &|st| Some(st.measured.down_bytes_per_s)),
                by_players("up B/s", ORANGE, &|st| Some(st.measured.up_bytes_per_s)),
                by_players("server CPU µs/player/tick × 100", GREEN_, &|st| {
                    st.measured
                        .server
                        .and_then(|t| t.cpu_us_per_player_tick)
                        .map(|c| c * 100.0)
                }),
                by_players("bots' CPU µs/bot/tick × 100", RED_, &|st| {
                    st.measured.bot_cpu_us_per_bot_tick.map(|c| c * 100.0)
                }),
            ],
            None,
        )?;
    }
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outliers_do_not_flatten_the_axis() {
        let mut ys: Vec<f64> = (0..40).map(|i| 10.0 + f64::from(i % 3)).collect();
        ys.push(4_500.0);
        let (top, clipped) = robust_top(&mut ys);
        assert!(clipped);
        assert!((15.0..20.0).contains(&top), "{top}");
        let mut even = vec![1.0, 2.0, 3.0];
        assert_eq!(robust_top(&mut even), (3.0, false));
        assert_eq!(robust_top(&mut []), (1.0, false));
    }
}
