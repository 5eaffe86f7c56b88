//! PNG charts with plotters' bitmap backend. Text is drawn with DejaVu Sans from the `dejavu`
//! crate through plotters' `ab_glyph` feature, so no system font or fontconfig is needed.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{self, fmt_keys, fmt_rate, Agg};
use crate::row::Row;

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Debug>(err: E) -> String {
    format!("{err:?}")
}

const FONT: &str = "sans-serif";

fn color(engine: &str) -> RGBColor {
    match engine {
        "minivault" => RGBColor(214, 39, 40),
        "minivault-walpre64k" => RGBColor(240, 128, 128),
        "minivault-walpre0" => RGBColor(120, 20, 20),
        "minivault-inline" => RGBColor(250, 180, 60),
        "minivault-bigcache" => RGBColor(180, 0, 120),
        "minivault-lowpriority" => RGBColor(200, 90, 160),
        "fjall" => RGBColor(31, 119, 180),
        "redb" => RGBColor(44, 160, 44),
        "sled" => RGBColor(148, 103, 189),
        "rocksdb" => RGBColor(255, 127, 14),
        "rawfile" => RGBColor(90, 90, 90),
        "rawprealloc" => RGBColor(170, 170, 170),
        _ => RGBColor(23, 190, 207),
    }
}

/// Draws every chart into `out`; returns (file name, title) of each.
pub fn draw_all(out: &Path, rows: &[Row]) -> Res<Vec<(String, String)>> {
    plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "font".to_string())?;
    plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
        .map_err(|_| "font".to_string())?;
    let t = report::table(rows);
    let engines = report::engines_in(rows);
    let workloads = report::workloads_in(rows);
    let scales = report::scales_in(rows);
    let mut made = Vec::new();

    for &keys in &scales {
        let file = format!("ops-{keys}.png");
        let title = format!("Throughput per workload, {} keys (ops/s, log scale)", fmt_keys(keys));
        let get = |e: &str, w: &str| {
            t.get(&(keys, e.to_string(), w.to_string())).filter(|a| a.error.is_none()).map(|a| a.ops_per_sec)
        };
        bars(&out.join(&file), &title, &engines, &workloads, get)?;
        made.push((file, title));
    }

    if scales.len() > 1 {
        let file = "scale.png".to_string();
        let title = "Throughput against the key count (ops/s, log–log)".to_string();
        let panels: Vec<&str> = ["fillrandom", "fillbatch", "readrandom", "readhot"]
            .into_iter()
            .filter(|w| workloads.iter().any(|x| x == w))
            .collect();
        let path = out.join(&file);
        let root = BitMapBackend::new(&path, (1400, 1000)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let (top, body) = root.split_vertically(50);
        top.draw(&Text::new(
            title.clone(),
            (700, 12),
            (FONT, 26)
                .into_font()
                .style(FontStyle::Bold)
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(e)?;
        let areas = body.split_evenly((2, 2));
        for (area, w) in areas.iter().zip(panels) {
            let series: Vec<(String, Vec<(f64, f64)>)> = engines
                .iter()
                .map(|en| {
                    let pts = scales
                        .iter()
                        .filter_map(|&k| {
                            t.get(&(k, en.clone(), w.to_string()))
                                .filter(|a| a.error.is_none())
                                .map(|a| (k as f64, a.ops_per_sec))
                        })
                        .collect();
                    (en.clone(), pts)
                })
                .collect();
            lines(area, w, "keys", "ops/s", &series, true)?;
        }
        root.present().map_err(e)?;
        made.push((file, title));

        let file = "rss.png".to_string();
        let title = "Peak RSS against the key count (MiB, highest over the workloads)".to_string();
        let path = out.join(&file);
        let root = BitMapBackend::new(&path, (1000, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let series: Vec<(String, Vec<(f64, f64)>)> = engines
            .iter()
            .map(|en| {
                let pts = scales
                    .iter()
                    .map(|&k| {
                        let peak = t
                            .iter()
                            .filter(|((kk, ee, _), a)| *kk == k && ee == en && a.error.is_none())
                            .map(|(_, a)| a.rss_mib)
                            .fold(0.0f64, f64::max);
                        (k as f64, peak.max(1.0))
                    })
                    .collect();
                (en.clone(), pts)
            })
            .collect();
        lines(&root, &title, "keys", "MiB", &series, true)?;
        root.present().map_err(e)?;
        made.push((file, title));
    }

    let sw = report::sweep(rows);
    if sw.values().any(|a| a.error.is_none()) {
        let file = "sstables.png".to_string();
        let title = "MiniVaultDB gets as data and SSTables grow (random keys, compaction on)".to_string();
        let path = out.join(&file);
        let root = BitMapBackend::new(&path, (1400, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let (top, body) = root.split_vertically(50);
        top.draw(&Text::new(
            title.clone(),
            (700, 12),
            (FONT, 26)
                .into_font()
                .style(FontStyle::Bold)
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(e)?;
        let (left, right) = body.split_horizontally(700);
        let pick = |kind: &str, f: &dyn Fn(&Agg) -> Option<f64>| -> Vec<(f64, f64)> {
            sw.iter()
                .filter(|((k, t), a)| k == kind && *t > 1 && a.error.is_none())
                .filter_map(|((_, t), a)| f(a).map(|v| (*t as f64, v)))
                .collect()
        };
        let lat = vec![
            ("present key, p50".to_string(), pick("sst-present", &|a| Some(a.p50 / 1e3))),
            ("missing key, p50".to_string(), pick("sst-missing", &|a| Some(a.p50 / 1e3))),
            ("present key, p99".to_string(), pick("sst-present", &|a| Some(a.p99 / 1e3))),
        ];
        lines(&left, "get latency (µs)", "keys written", "µs", &lat, true)?;
        let probes = vec![
            ("SSTables".to_string(), pick("sst-present", &|a| a.tables)),
            ("present key: probes/get".to_string(), pick("sst-present", &|a| a.probes)),
            ("missing key: probes/get".to_string(), pick("sst-missing", &|a| a.probes)),
            (
                "present key: pread(2)/get ÷ 10".to_string(),
                pick("sst-present", &|a| Some(a.syscr_per_op / 10.0)),
            ),
            (
                "missing key: pread(2)/get ÷ 10".to_string(),
                pick("sst-missing", &|a| Some(a.syscr_per_op / 10.0)),
            ),
        ];
        lines(&right, "SSTables and read amplification", "keys written", "count", &probes, true)?;
        root.present().map_err(e)?;
        made.push((file, title));
    }
    Ok(made)
}

/// Grouped bars: one group per workload, one bar per engine, log y axis.
fn bars(
    path: &Path,
    title: &str,
    engines: &[String],
    workloads: &[String],
    get: impl Fn(&str, &str) -> Option<f64>,
) -> Res<()> {
    let vals: Vec<f64> = engines
        .iter()
        .flat_map(|en| workloads.iter().filter_map(|w| get(en, w)))
        .filter(|v| *v > 0.0)
        .collect();
    if vals.is_empty() {
        return Ok(());
    }
    let lo = 10f64.powf(vals.iter().cloned().fold(f64::MAX, f64::min).log10().floor());
    let hi = 10f64.powf(vals.iter().cloned().fold(0.0, f64::max).log10().ceil());
    let root = BitMapBackend::new(path, (1500, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let w = workloads.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 26).into_font().style(FontStyle::Bold))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..w, (lo..hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| fmt_rate(*v))
        .y_label_style((FONT, 16))
        .y_desc("ops/s")
        .axis_desc_style((FONT, 18))
        .draw()
        .map_err(e)?;
    let bw = 0.8 / engines.len().max(1) as f64;
    for (j, en) in engines.iter().enumerate() {
        let c = color(en);
        let rects: Vec<Rectangle<(f64, f64)>> = workloads
            .iter()
            .enumerate()
            .filter_map(|(i, wl)| get(en, wl).filter(|v| *v > 0.0).map(|v| (i, v)))
            .map(|(i, v)| {
                let x0 = i as f64 + 0.1 + j as f64 * bw;
                Rectangle::new([(x0, lo), (x0 + bw * 0.92, v)], c.filled())
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(e)?
            .label(en.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    for (i, wl) in workloads.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, lo));
        root.draw(&Text::new(
            wl.clone(),
            (px, py + 8),
            (FONT, 16).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

/// One line per series, log–log (or log y when `log_x` is false), on `area`.
fn lines(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
) -> Res<()> {
    let xs: Vec<f64> = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).filter(|v| *v > 0.0).collect();
    let ys: Vec<f64> = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).filter(|v| *v > 0.0).collect();
    if xs.is_empty() || ys.is_empty() {
        return Ok(());
    }
    let (x0, x1) = (xs.iter().cloned().fold(f64::MAX, f64::min), xs.iter().cloned().fold(0.0, f64::max));
    let (y0, y1) = (ys.iter().cloned().fold(f64::MAX, f64::min), ys.iter().cloned().fold(0.0, f64::max));
    let ylo = 10f64.powf(y0.log10().floor());
    let yhi = 10f64.powf(y1.log10().ceil()).max(ylo * 10.0);
    let _ = log_x;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((x0 * 0.8..x1 * 1.25).log_scale(), (ylo..yhi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| fmt_axis(*v))
        .y_label_formatter(&|v| fmt_axis(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(e)?;
    let palette = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(90, 90, 90),
        RGBColor(170, 170, 170),
    ];
    for (i, (name, pts)) in series.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let c = if crate::engines::ALL.contains(&name.as_str()) {
            color(name)
        } else {
            palette[i % palette.len()]
        };
        chart
            .draw_series(LineSeries::new(pts.iter().cloned(), c.stroke_width(3)))
            .map_err(e)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

fn fmt_axis(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
