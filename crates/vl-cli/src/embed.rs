//! `vl embed`: load a CLIP checkpoint, preprocess images and tokenize captions as the checkpoint
//! expects, and write `{"image_embeds", "text_embeds", "logits_per_image", "meta"}` as JSON.
//! The embeddings are projected and unnormalised (transformers' `get_image_features` /
//! `get_text_features`); `meta` records the checkpoint, layout, device, dtype and vlkit revision.
//! The output is written atomically and never overwrites an existing file without `--force`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Args;
use serde_json::{Value, json};
use vl_data::{ClipTokenizer, ImagePreprocessor, Padding, PreprocessConfig};
use vl_encoders::clip::{CheckpointFormat, Clip, LoadOptions, LoadedCheckpoint, load_clip};

/// Arguments of `vl embed`.
#[derive(Debug, Args)]
pub(crate) struct EmbedArgs {
    /// Checkpoint: a local directory (Hugging Face or open_clip layout), a `.safetensors` file, or
    /// a hub id such as `openai/clip-vit-base-patch32`.
    #[arg(long)]
    model: String,
    /// Hub revision (branch, tag or commit) for a hub id.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Image files to embed (PNG, JPEG, WebP).
    #[arg(long = "image", num_args = 1..)]
    images: Vec<PathBuf>,
    /// Captions to embed.
    #[arg(long = "text", num_args = 1..)]
    texts: Vec<String>,
    /// Output JSON file.
    #[arg(long)]
    out: PathBuf,
    /// Checkpoint layout: auto, hf or openclip.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Tokenizer file to use instead of the checkpoint's `tokenizer.json`.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Preprocessing config (`preprocessor_config.json` or `open_clip_config.json`) to use
    /// instead of the checkpoint's.
    #[arg(long)]
    preprocessor: Option<PathBuf>,
    /// Device: flex, wgpu or cuda (default: the best backend compiled in).
    #[arg(long)]
    device: Option<String>,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    force: bool,
    /// A Hugging Face PEFT adapter directory (`adapter_config.json` +
    /// `adapter_model.safetensors`: LoRA, DoRA, VeRA) applied on top of the checkpoint.
    #[arg(long)]
    adapter: Option<PathBuf>,
}

pub(crate) fn run(args: &EmbedArgs) -> Result<()> {
    if args.images.is_empty() && args.texts.is_empty() {
        bail!("nothing to embed: give at least one --image or --text");
    }
    if args.out.exists() && !args.force {
        bail!(
            "{} exists; pass --force to overwrite it",
            args.out.display()
        );
    }
    let format = match args.format.as_str() {
        "auto" => None,
        other => Some(
            other
                .parse::<CheckpointFormat>()
                .map_err(anyhow::Error::msg)?,
        ),
    };
    let (device_name, device) = crate::device::select(args.device.as_deref())?;
    let dir = crate::hub::resolve(&args.model, &args.revision)?;
    let options = LoadOptions {
        format,
        ..Default::default()
    };
    let (clip, info) = load_clip(&dir, &options, &device)?;
    let (clip, adapter) = match &args.adapter {
        Some(path) => {
            let (clip, state) = vl_peft::load_peft_adapter(clip, path)
                .with_context(|| format!("applying the adapter {}", path.display()))?;
            eprintln!("adapter {}: {}", path.display(), state.trainable_line());
            (clip, Some(state))
        }
        None => (clip, None),
    };
    let model_dir = if dir.is_file() {
        dir.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        dir.clone()
    };

    let image_embeds = if args.images.is_empty() {
        None
    } else {
        let processor = preprocessor(args, &model_dir, &info)?;
        let pixels = processor.preprocess_files(&args.images)?;
        Some(clip.encode_image(pixels.to_tensor(&device)))
    };
    let text_embeds = if args.texts.is_empty() {
        None
    } else {
        let tokenizer = tokenizer(args, &model_dir, &info)?;
        let ids = tokenizer.encode_batch(&args.texts)?;
        Some(clip.encode_text(ids.to_tensor(&device)))
    };
    let logits = match (&image_embeds, &text_embeds) {
        (Some(i), Some(t)) => Some(clip.logits(i.clone(), t.clone())),
        _ => None,
    };

    let mut out = serde_json::Map::new();
    for (key, tensor) in [
        ("image_embeds", image_embeds),
        ("text_embeds", text_embeds),
        ("logits_per_image", logits),
    ] {
        if let Some(t) = tensor {
            out.insert(key.to_string(), rows(t)?);
        }
    }
    let mut meta = meta(args, &dir, &info, &device_name, &clip);
    if let Some(state) = &adapter {
        meta["adapter"] = json!({
            "path": args.adapter,
            "method": state.config.method,
            "targets": state.targets,
        });
    }
    out.insert("meta".into(), meta);
    write_atomic(&args.out, &Value::Object(out))?;
    eprintln!(
        "wrote {} ({} images, {} texts, {:?} checkpoint, device {device_name})",
        args.out.display(),
        args.images.len(),
        args.texts.len(),
        info.format
    );
    Ok(())
}

/// The image preprocessing the checkpoint expects.
fn preprocessor(
    args: &EmbedArgs,
    model_dir: &Path,
    info: &LoadedCheckpoint,
) -> Result<ImagePreprocessor> {
    let [height, width] = info.config.vision.image_size;
    let config = if let Some(file) = &args.preprocessor {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if text.contains("\"model_cfg\"") || text.contains("\"preprocess_cfg\"") {
            PreprocessConfig::from_open_clip_file(file)?
        } else {
            PreprocessConfig::from_hf_file(file)?
        }
    } else {
        match info.format {
            CheckpointFormat::HuggingFace => {
                let file = model_dir.join("preprocessor_config.json");
                if file.is_file() {
                    PreprocessConfig::from_hf_file(&file)?
                } else {
                    PreprocessConfig::clip(height as u32)
                }
            }
            CheckpointFormat::OpenClip => match &info.config_file {
                Some(file) => PreprocessConfig::from_open_clip_file(file)?,
                None => PreprocessConfig::open_clip(height as u32),
            },
        }
    };
    let processor = ImagePreprocessor::new(config)?;
    let produced = (
        processor.config().crop_height as usize,
        processor.config().crop_width as usize,
    );
    if processor.config().do_center_crop && produced != (height, width) {
        bail!(
            "the preprocessing crops to {}x{} but the model takes {height}x{width} images; \
             pass a matching --preprocessor",
            produced.0,
            produced.1
        );
    }
    Ok(processor)
}

/// The tokenizer, padded and truncated as the checkpoint expects.
fn tokenizer(args: &EmbedArgs, model_dir: &Path, info: &LoadedCheckpoint) -> Result<ClipTokenizer> {
    let tokenizer = match &args.tokenizer {
        Some(file) => ClipTokenizer::from_file(file)?,
        None => {
            if !model_dir.join("tokenizer.json").is_file() {
                bail!(
                    "{} has no tokenizer.json; pass --tokenizer <tokenizer.json> (any CLIP BPE \
                     tokenizer, e.g. from openai/clip-vit-base-patch32)",
                    model_dir.display()
                );
            }
            ClipTokenizer::from_dir(model_dir)?
        }
    };
    let tokenizer = match info.format {
        // open_clip's tokenizer pads with 0; transformers pads with end-of-text.
        CheckpointFormat::OpenClip => tokenizer.with_padding(Padding::Zero),
        CheckpointFormat::HuggingFace => tokenizer,
    };
    let text = &info.config.text;
    if tokenizer.vocab_size() > text.vocab_size {
        bail!(
            "the tokenizer has {} tokens but the model's vocabulary has {}: they do not belong together",
            tokenizer.vocab_size(),
            text.vocab_size
        );
    }
    Ok(tokenizer.with_context_length(text.context_length)?)
}

fn rows(t: Tensor<2>) -> Result<Value> {
    let [n, d] = t.dims();
    let values = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read results: {e:?}"))?;
    Ok(Value::Array(
        (0..n).map(|i| json!(values[i * d..(i + 1) * d])).collect(),
    ))
}

fn meta(args: &EmbedArgs, dir: &Path, info: &LoadedCheckpoint, device: &str, clip: &Clip) -> Value {
    json!({
        "model": args.model,
        "resolved_path": dir,
        "format": info.format,
        "config_file": info.config_file,
        "weight_files": info.weight_files,
        "architecture_inferred": info.config_file.is_none(),
        "projection_dim": info.config.projection_dim,
        "logit_scale": clip.logit_scale.val().into_scalar::<f32>(),
        "images": args.images,
        "texts": args.texts,
        "device": device,
        "dtype": "f32",
        "vlkit_version": env!("CARGO_PKG_VERSION"),
        "git_revision": env!("VL_GIT_REVISION"),
    })
}

/// Writes JSON to a temporary file beside `path`, then renames it into place.
fn write_atomic(path: &Path, value: &Value) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&mut file, value)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
