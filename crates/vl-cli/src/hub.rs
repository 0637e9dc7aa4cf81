//! Resolving `--model`: a local path is used as it is; anything else is a Hugging Face hub id
//! (`openai/clip-vit-base-patch32`) looked up in the hub cache (`$HF_HOME/hub`, by default
//! `~/.cache/huggingface/hub`, the same cache Python's `huggingface_hub` fills) through the
//! `hf-hub` crate. Files already cached are used without any network access; missing ones are
//! downloaded unless `HF_HUB_OFFLINE=1`, in which case — or when the download fails — the error
//! says exactly which files to fetch and where they must go.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use hf_hub::{Cache, Repo, RepoType};

/// The files a CLIP checkpoint needs, per layout: (required, optional).
const HF_FILES: (&[&str], &[&str]) = (
    &["config.json", "model.safetensors"],
    &[
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
    ],
);
const OPEN_CLIP_FILES: (&[&str], &[&str]) = (
    &["open_clip_model.safetensors"],
    &[
        "open_clip_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ],
);

/// A local directory holding the checkpoint named by `model`.
pub(crate) fn resolve(model: &str, revision: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if !looks_like_hub_id(model) {
        bail!("--model {model}: no such file or directory (and not a hub id like `owner/name`)");
    }
    let cache = Cache::from_env();
    let repo = Repo::with_revision(model.to_string(), RepoType::Model, revision.to_string());
    let cached = cache.repo(repo.clone());
    for layout in [HF_FILES, OPEN_CLIP_FILES] {
        if let Some(first) = layout
            .0
            .iter()
            .map(|f| cached.get(f))
            .collect::<Option<Vec<_>>>()
        {
            return snapshot_dir(&first[0]);
        }
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v != "0" && !v.is_empty());
    if offline {
        bail!(
            "{}",
            missing_message(model, revision, cache.path(), "HF_HUB_OFFLINE is set")
        );
    }
    download(model, revision, &cache, &repo)
}

fn looks_like_hub_id(model: &str) -> bool {
    let parts: Vec<&str> = model.split('/').collect();
    parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
}

/// The snapshot directory holding a cached file.
fn snapshot_dir(file: &Path) -> Result<PathBuf> {
    match file.parent() {
        Some(dir) => Ok(dir.to_path_buf()),
        None => bail!("cached file {} has no parent directory", file.display()),
    }
}

fn download(model: &str, revision: &str, cache: &Cache, repo: &Repo) -> Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
        .with_progress(true)
        .build()?;
    let remote = api.repo(repo.clone());
    let mut last_error = String::new();
    for (required, optional) in [HF_FILES, OPEN_CLIP_FILES] {
        let mut got = Vec::new();
        for file in required {
            match remote.get(file) {
                Ok(path) => got.push(path),
                Err(e) => {
                    last_error = format!("{file}: {e}");
                    break;
                }
            }
        }
        if got.len() == required.len() {
            for file in optional {
                // Optional files: a checkpoint without them still loads (defaults apply).
                let _ = remote.get(file);
            }
            return snapshot_dir(&got[0]);
        }
    }
    bail!(
        "{}",
        missing_message(
            model,
            revision,
            cache.path(),
            &format!("the download failed ({last_error})")
        )
    )
}

fn missing_message(model: &str, revision: &str, cache: &Path, why: &str) -> String {
    let folder = format!("models--{}", model.replace('/', "--"));
    format!(
        "--model {model}: the checkpoint is not in the local hub cache and {why}.\n\
         Download these files of https://huggingface.co/{model} (revision {revision}):\n  \
         Hugging Face layout: {} (+ optional {})\n  \
         or open_clip layout: {} (+ optional {})\n\
         e.g. with `huggingface-cli download {model}` on a connected machine, so they land in \
         {}/{folder}/snapshots/<commit>/ with refs/{revision} naming the commit, \
         or copy them into a local directory and pass that directory as --model.",
        HF_FILES.0.join(", "),
        HF_FILES.1.join(", "),
        OPEN_CLIP_FILES.0.join(", "),
        OPEN_CLIP_FILES.1.join(", "),
        cache.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_owner_slash_name() {
        assert!(looks_like_hub_id("openai/clip-vit-base-patch32"));
        assert!(!looks_like_hub_id("clip"));
        assert!(!looks_like_hub_id("./models/clip"));
        assert!(!looks_like_hub_id("a/b/c"));
    }
}
