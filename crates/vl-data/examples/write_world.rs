//! Writes a labelled slice of the synthetic world to disk as an image folder plus
//! `captions.jsonl` ([`SyntheticWorld::write_image_folder`]), e.g. to feed the same images to a
//! PyTorch script.
//!
//! ```sh
//! cargo run --release -p vl-data --example write_world -- OUT TASK SPLIT N [SMALL LARGE SEED GRID OUTLINE]
//! # TASK: shape | colour | shape_colour | size | background; SPLIT: pretrain | eval | held_out
//! # SMALL, LARGE: object sizes as fractions of the image side (default 0.3, 0.46)
//! # GRID: position_grid in pixels (default 0, continuous positions)
//! # OUTLINE: outline width in pixels (default 0, none)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use vl_data::synthetic::{Split, SyntheticWorld, SyntheticWorldConfig, Task};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: write_world OUT TASK SPLIT N [SMALL LARGE SEED GRID OUTLINE]");
        return ExitCode::FAILURE;
    }
    let task = match args[1].as_str() {
        "shape" => Task::Shape,
        "colour" => Task::Colour,
        "shape_colour" => Task::ShapeColour,
        "size" => Task::Size,
        "background" => Task::Background,
        other => {
            eprintln!(
                "TASK: expected shape, colour, shape_colour, size or background, found {other:?}"
            );
            return ExitCode::FAILURE;
        }
    };
    let split = match args[2].as_str() {
        "pretrain" => Split::Pretrain,
        "eval" => Split::Eval,
        "held_out" => Split::HeldOut,
        other => {
            eprintln!("SPLIT: expected pretrain, eval or held_out, found {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(n) = args[3].parse::<usize>() else {
        eprintln!("N: expected a count, found {:?}", args[3]);
        return ExitCode::FAILURE;
    };
    let mut config = SyntheticWorldConfig::default();
    let floats: Vec<Option<f32>> = args[4..].iter().map(|a| a.parse().ok()).collect();
    if let Some(&Some(small)) = floats.first() {
        config.sizes[0].fraction = small;
    }
    if let Some(&Some(large)) = floats.get(1) {
        config.sizes[1].fraction = large;
    }
    if let Some(seed) = args.get(6).and_then(|s| s.parse().ok()) {
        config.seed = seed;
    }
    if let Some(grid) = args.get(7).and_then(|s| s.parse().ok()) {
        config.position_grid = grid;
    }
    if let Some(outline) = args.get(8).and_then(|s| s.parse().ok()) {
        config.outline = outline;
    }
    let result = SyntheticWorld::new(config)
        .and_then(|world| world.write_image_folder(PathBuf::from(&args[0]), task, split, n));
    match result {
        Ok(summary) => {
            println!(
                "{} images in {}",
                summary.items.len(),
                summary.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
