//! A finished run's outputs besides the checkpoint: `report.json` (everything needed to reproduce
//! and compare the run), `results.md` (per-epoch table and final numbers, ready to paste), and
//! `curve.svg` (training loss and held-out zero-shot accuracy per epoch, drawn without any
//! plotting dependency). Also the `preprocessor_config.json` a Hugging Face `CLIPImageProcessor`
//! reads.

use std::fmt::Write as _;
use std::path::Path;

use vl_data::PreprocessConfig;

use crate::atomic::{write_atomic, write_json_atomic};
use crate::error::Result;
use crate::pretrain::{PretrainReport, ZeroShotScores};
use crate::renderer::EpochRecord;
use crate::zeroshot::ZeroShotTask;

/// `preprocessor_config.json` for transformers' `CLIPImageProcessor` with `config`'s sizes and
/// normalisation (bicubic resize of the shortest edge, centre crop).
pub fn preprocessor_config_json(config: &PreprocessConfig) -> serde_json::Value {
    serde_json::json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": config.do_resize,
        "size": {"shortest_edge": config.resize_shortest_edge},
        "resample": 3,
        "do_center_crop": config.do_center_crop,
        "crop_size": {"height": config.crop_height, "width": config.crop_width},
        "do_rescale": config.do_rescale,
        "rescale_factor": config.rescale_factor,
        "do_normalize": config.do_normalize,
        "image_mean": config.mean,
        "image_std": config.std,
        "do_convert_rgb": true,
    })
}

/// Writes `report.json`, `results.md` and `curve.svg` into `dir` (each atomically).
pub fn write_outputs(report: &PretrainReport, dir: &Path) -> Result<()> {
    write_json_atomic(&dir.join("report.json"), report)?;
    write_atomic(&dir.join("results.md"), results_markdown(report).as_bytes())?;
    write_atomic(
        &dir.join("curve.svg"),
        curve_svg(&report.history).as_bytes(),
    )?;
    Ok(())
}

fn valid(record: &EpochRecord, task: ZeroShotTask) -> f64 {
    record.valid.get(task.name()).copied().unwrap_or(f64::NAN)
}

fn train(record: &EpochRecord, name: &str) -> f64 {
    record.train.get(name).copied().unwrap_or(f64::NAN)
}

/// The Markdown summary.
pub fn results_markdown(report: &PretrainReport) -> String {
    let mut s = String::new();
    let c = &report.config;
    let _ = writeln!(
        s,
        "# Tiny CLIP pretrained on the synthetic world\n\n\
         seed {} · backend {} · dtype {} · git {} · {} parameters · vocabulary {} · {:?} loss · \
         {} epochs × {} steps × batch {} · {:.0} s of training\n",
        report.seed,
        report.backend,
        report.dtype,
        report.git_revision,
        report.parameters,
        report.vocab_size,
        c.train.loss,
        c.train.epochs,
        c.train.steps_per_epoch,
        c.train.batch_size,
        report.train_seconds
    );
    let _ = writeln!(
        s,
        "| epoch | loss | in-batch i2t acc (%) | shape (%) | shape, prompt (%) | shape, debiased (%) | colour (%) | pair, all (%) | pair, held-out only (%) | s |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &report.history {
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            r.epoch,
            train(r, "Loss"),
            train(r, "Accuracy"),
            valid(r, ZeroShotTask::Shape),
            valid(r, ZeroShotTask::ShapePrompt),
            valid(r, ZeroShotTask::ShapeDebiased),
            valid(r, ZeroShotTask::Colour),
            valid(r, ZeroShotTask::Pair),
            valid(r, ZeroShotTask::HeldOutPair),
            r.seconds
        );
    }
    let row = |name: &str, z: &ZeroShotScores| {
        format!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            z.images,
            z.shape,
            z.shape_prompt,
            z.shape_debiased,
            z.colour,
            z.pair_all,
            z.pair_held_out
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
        )
    };
    let _ = writeln!(
        s,
        "\nFinal zero-shot accuracy (prompt ensemble over {} templates):\n\n\
         | images | n | shape (%) | shape, prompt (%) | shape, debiased (%) | colour (%) | pair, all (%) | pair, held-out only (%) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n{}\n{}",
        c.eval.templates.len(),
        row("held-out pairs (never captioned)", &report.held_out),
        row("seen pairs (unseen images)", &report.seen)
    );
    s
}

/// A two-panel SVG: training loss (left) and held-out zero-shot accuracy (right) per epoch.
pub fn curve_svg(history: &[EpochRecord]) -> String {
    let (w, h, pad) = (420.0, 300.0, 48.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" font-family="sans-serif" font-size="11">"#,
        2.0 * w
    );
    let epochs: Vec<f64> = history.iter().map(|r| r.epoch as f64).collect();
    let max_epoch = epochs.iter().copied().fold(1.0, f64::max);
    let loss: Vec<f64> = history.iter().map(|r| train(r, "Loss")).collect();
    let max_loss = loss
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-6);
    type Series<'a> = Vec<(&'a str, &'a str, Vec<f64>)>;
    let panels: [(&str, f64, f64, Series); 2] = [
        (
            "training loss",
            0.0,
            max_loss * 1.05,
            vec![("loss", "#1f77b4", loss)],
        ),
        (
            "held-out zero-shot accuracy (%)",
            0.0,
            100.0,
            vec![
                (
                    "shape",
                    "#1f77b4",
                    history
                        .iter()
                        .map(|r| valid(r, ZeroShotTask::Shape))
                        .collect(),
                ),
                (
                    "colour",
                    "#d62728",
                    history
                        .iter()
                        .map(|r| valid(r, ZeroShotTask::Colour))
                        .collect(),
                ),
                (
                    "pair (held-out only)",
                    "#2ca02c",
                    history
                        .iter()
                        .map(|r| valid(r, ZeroShotTask::HeldOutPair))
                        .collect(),
                ),
                (
                    "pair (all)",
                    "#9467bd",
                    history
                        .iter()
                        .map(|r| valid(r, ZeroShotTask::Pair))
                        .collect(),
                ),
            ],
        ),
    ];
    for (panel, (title, y0, y1, series)) in panels.iter().enumerate() {
        let ox = panel as f64 * w;
        let x = |e: f64| ox + pad + (e - 1.0) / (max_epoch - 1.0).max(1.0) * (w - 1.6 * pad);
        let y = |v: f64| h - pad - (v - y0) / (y1 - y0) * (h - 1.8 * pad);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="16" text-anchor="middle" font-size="13">{title}</text>"##,
            ox + w / 2.0
        );
        // Axes, ticks.
        let _ = writeln!(
            s,
            r##"<path d="M{} {} V{} H{}" stroke="#000" fill="none"/>"##,
            x(1.0),
            y(*y1),
            y(*y0),
            x(max_epoch)
        );
        for k in 0..=4 {
            let v = y0 + (y1 - y0) * f64::from(k) / 4.0;
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="end">{}</text><path d="M{} {} H{}" stroke="#ddd"/>"##,
                x(1.0) - 4.0,
                y(v) + 4.0,
                if *y1 > 10.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                },
                x(1.0),
                y(v),
                x(max_epoch)
            );
        }
        for e in &epochs {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="middle">{e}</text>"##,
                x(*e),
                h - pad + 14.0
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">epoch</text>"##,
            ox + w / 2.0,
            h - 8.0
        );
        for (i, (name, colour, values)) in series.iter().enumerate() {
            let points: Vec<String> = epochs
                .iter()
                .zip(values)
                .filter(|(_, v)| v.is_finite())
                .map(|(e, v)| format!("{:.1},{:.1}", x(*e), y(*v)))
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
                points.join(" ")
            );
            let ly = 34.0 + 14.0 * i as f64;
            let _ = writeln!(
                s,
                r##"<path d="M{} {ly} h16" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"##,
                ox + w - 170.0,
                ox + w - 150.0,
                ly + 4.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
