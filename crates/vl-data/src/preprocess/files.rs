//! Reading [`PreprocessConfig`] from the two on-disk formats CLIP checkpoints ship with.
//!
//! - transformers' `preprocessor_config.json`, read as `CLIPImageProcessor` reads it
//!   ([`image_processing_clip.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/clip/image_processing_clip.py)):
//!   new-style `"size": {"shortest_edge": n}` or `{"height", "width"}` and
//!   `"crop_size": {"height", "width"}`, or old-style integers (`"size": n` means shortest edge
//!   `n`, `"crop_size": n` means `n x n`). Missing keys take `CLIPImageProcessor`'s defaults,
//!   `null` counts as missing, and unknown keys are ignored.
//! - open_clip's `open_clip_config.json`
//!   ([`factory.py`](https://github.com/mlfoundations/open_clip/blob/main/src/open_clip/factory.py),
//!   [`transform.py`](https://github.com/mlfoundations/open_clip/blob/main/src/open_clip/transform.py)):
//!   `model_cfg.vision_cfg.image_size` (an integer or `[height, width]`) and `preprocess_cfg`
//!   (`mean`, `std`, `interpolation`, `resize_mode`, `fill_color`, optionally `size`), with
//!   open_clip's `PreprocessCfg` defaults.

use std::path::Path;

use serde_json::Value;

use crate::error::Result;
use crate::json::{self, Obj};
use crate::preprocess::config::{PreprocessConfig, Reference, ResizeMode};
use crate::resize::Resample;

impl PreprocessConfig {
    /// Reads a transformers `preprocessor_config.json` (CLIP image processor). The result
    /// follows transformers 5's default backend ([`Reference::Transformers`]); use
    /// [`PreprocessConfig::with_reference`] for the PIL backend.
    ///
    /// Supported `resample` codes are Pillow's 1 (Lanczos), 2 (bilinear), 3 (bicubic), 4 (box)
    /// and 5 (Hamming); 0 (nearest) is rejected. `size` may hold `shortest_edge` (a
    /// `longest_edge` beside it is ignored, as `CLIPImageProcessor` ignores it) or `height` and
    /// `width`.
    pub fn from_hf_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let root = json::read(path)?;
        let obj = Obj::root(path, &root)?;
        let mut config = Self::clip(224).with_reference(Reference::Transformers);

        if let Some(v) = obj.bool("do_resize")? {
            config.do_resize = v;
        }
        match obj.get("size") {
            None => {}
            Some(Value::Number(_)) => {
                config.resize_mode = ResizeMode::ShortestEdge;
                config.resize_shortest_edge = obj
                    .positive_u32("size")?
                    .ok_or_else(|| obj.missing("size"))?;
            }
            Some(Value::Object(_)) => {
                let size = obj.object("size")?.ok_or_else(|| obj.missing("size"))?;
                if let Some(edge) = size.positive_u32("shortest_edge")? {
                    config.resize_mode = ResizeMode::ShortestEdge;
                    config.resize_shortest_edge = edge;
                } else {
                    match (size.positive_u32("height")?, size.positive_u32("width")?) {
                        (Some(height), Some(width)) => {
                            config.resize_mode = ResizeMode::Exact { height, width };
                        }
                        (Some(_), None) => return Err(size.missing("width")),
                        (None, Some(_)) => return Err(size.missing("height")),
                        (None, None) => {
                            return Err(obj.unsupported(
                                "size",
                                "{\"shortest_edge\": n} or {\"height\": h, \"width\": w}",
                                obj.get("size").unwrap_or(&Value::Null),
                            ));
                        }
                    }
                }
            }
            Some(other) => {
                return Err(obj.type_error(
                    "size",
                    "a positive integer or an object with `shortest_edge` or `height` and `width`",
                    other,
                ));
            }
        }

        if let Some(v) = obj.bool("do_center_crop")? {
            config.do_center_crop = v;
        }
        match obj.get("crop_size") {
            None => {}
            Some(Value::Number(_)) => {
                let n = obj
                    .positive_u32("crop_size")?
                    .ok_or_else(|| obj.missing("crop_size"))?;
                (config.crop_height, config.crop_width) = (n, n);
            }
            Some(Value::Object(_)) => {
                let crop = obj
                    .object("crop_size")?
                    .ok_or_else(|| obj.missing("crop_size"))?;
                config.crop_height = crop
                    .positive_u32("height")?
                    .ok_or_else(|| crop.missing("height"))?;
                config.crop_width = crop
                    .positive_u32("width")?
                    .ok_or_else(|| crop.missing("width"))?;
            }
            Some(other) => {
                return Err(obj.type_error(
                    "crop_size",
                    "a positive integer or an object with `height` and `width`",
                    other,
                ));
            }
        }

        if let Some(v) = obj.get("resample") {
            let code = v.as_u64().ok_or_else(|| {
                obj.type_error("resample", "a Pillow resampling code (integer)", v)
            })?;
            config.resample = Resample::from_pil_code(code).ok_or_else(|| {
                obj.unsupported(
                    "resample",
                    "1 (lanczos), 2 (bilinear), 3 (bicubic), 4 (box), 5 (hamming)",
                    v,
                )
            })?;
        }
        if let Some(v) = obj.bool("do_rescale")? {
            config.do_rescale = v;
        }
        if let Some(v) = obj.number("rescale_factor")? {
            config.rescale_factor = v;
        }
        if let Some(v) = obj.bool("do_normalize")? {
            config.do_normalize = v;
        }
        if let Some(v) = obj.triple("image_mean", true)? {
            config.mean = v;
        }
        if let Some(v) = obj.triple("image_std", true)? {
            config.std = v;
        }
        // Type-check the remaining known switch; RGB conversion always happens here.
        obj.bool("do_convert_rgb")?;
        config.validate()?;
        Ok(config)
    }

    /// Reads an open_clip `open_clip_config.json` (the file open_clip publishes next to the
    /// weights on the Hub). The result follows open_clip's eval transform
    /// ([`Reference::OpenClip`]):
    ///
    /// - `resize_mode: "shortest"` (default): a square size resizes the short side
    ///   (torchvision `Resize(int)`, truncating the long side); a non-square `[h, w]` resizes so
    ///   the image covers the box (`ResizeKeepRatio`, sides rounded half to even) — then
    ///   `CenterCrop([h, w])`;
    /// - `"longest"`: fit inside the box (`ResizeKeepRatio(longest=1)`), then pad with
    ///   `fill_color` (`CenterCropOrPad`);
    /// - `"squash"`: resize to exactly `[h, w]`, no crop.
    ///
    /// `interpolation` is `"bicubic"` (default), `"bilinear"` or `"random"` (bicubic at eval).
    /// `mean` / `std` may be a number or three numbers (default OpenAI's).
    pub fn from_open_clip_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let root = json::read(path)?;
        let obj = Obj::root(path, &root)?;
        let model_cfg = obj
            .object("model_cfg")?
            .ok_or_else(|| obj.missing("model_cfg"))?;
        let vision_cfg = model_cfg
            .object("vision_cfg")?
            .ok_or_else(|| model_cfg.missing("vision_cfg"))?;
        let mut size = image_size(&vision_cfg, "image_size")?.unwrap_or((224, 224));

        let mut config = Self::open_clip(224);
        if let Some(pp) = obj.object("preprocess_cfg")? {
            if let Some(s) = image_size(&pp, "size")? {
                size = s;
            }
            if let Some(v) = pp.triple("mean", true)? {
                config.mean = v;
            }
            if let Some(v) = pp.triple("std", true)? {
                config.std = v;
            }
            if let Some(v) = pp.str("interpolation")? {
                config.resample = match v {
                    "bicubic" | "random" => Resample::Bicubic,
                    "bilinear" => Resample::Bilinear,
                    _ => {
                        return Err(pp.unsupported(
                            "interpolation",
                            "\"bicubic\", \"bilinear\", \"random\"",
                            &Value::from(v),
                        ));
                    }
                };
            }
            if let Some(v) = pp.get("fill_color") {
                config.pad_value = v
                    .as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| pp.type_error("fill_color", "an integer from 0 to 255", v))?;
            }
            if let Some(mode) = pp.str("mode")?
                && mode != "RGB"
            {
                return Err(pp.unsupported("mode", "\"RGB\"", &Value::from(mode)));
            }
            let resize_mode = pp.str("resize_mode")?.unwrap_or("shortest");
            let (height, width) = size;
            (config.crop_height, config.crop_width) = size;
            config.resize_shortest_edge = height.min(width);
            match resize_mode {
                "shortest" if height == width => config.resize_mode = ResizeMode::ShortestEdge,
                "shortest" => config.resize_mode = ResizeMode::CoverCrop,
                "longest" => config.resize_mode = ResizeMode::FitCrop,
                "squash" => {
                    config.resize_mode = ResizeMode::Exact { height, width };
                    config.do_center_crop = false;
                }
                other => {
                    return Err(pp.unsupported(
                        "resize_mode",
                        "\"shortest\", \"longest\", \"squash\"",
                        &Value::from(other),
                    ));
                }
            }
        } else {
            let (height, width) = size;
            (config.crop_height, config.crop_width) = size;
            config.resize_shortest_edge = height.min(width);
            config.resize_mode = if height == width {
                ResizeMode::ShortestEdge
            } else {
                ResizeMode::CoverCrop
            };
        }
        config.validate()?;
        Ok(config)
    }
}

/// An open_clip image size: an integer `n` (→ `(n, n)`) or `[height, width]` (a one-element
/// list counts as square).
fn image_size(obj: &Obj<'_>, key: &str) -> Result<Option<(u32, u32)>> {
    const EXPECTED: &str = "a positive integer or a list [height, width] of positive integers";
    match obj.get(key) {
        None => Ok(None),
        Some(v @ Value::Number(_)) => json::positive_u32(v)
            .map(|n| Some((n, n)))
            .ok_or_else(|| obj.type_error(key, EXPECTED, v)),
        Some(v @ Value::Array(items)) => {
            let sides: Option<Vec<u32>> = items.iter().map(json::positive_u32).collect();
            match sides.as_deref() {
                Some(&[n]) => Ok(Some((n, n))),
                Some(&[h, w]) => Ok(Some((h, w))),
                _ => Err(obj.type_error(key, EXPECTED, v)),
            }
        }
        Some(other) => Err(obj.type_error(key, EXPECTED, other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::image::AlphaHandling;
    use crate::preprocess::geometry::CropRule;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn hf_new_format_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "preprocessor_config.json",
            r#"{"crop_size": {"height": 336, "width": 336}, "do_center_crop": true,
                "do_normalize": true, "do_resize": true, "image_processor_type": "CLIPImageProcessor",
                "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "resample": 3,
                "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336},
                "processor_class": "CLIPProcessor", "something_new": {"x": 1}}"#,
        );
        let c = PreprocessConfig::from_hf_file(&path).unwrap();
        assert_eq!(c.resize_mode, ResizeMode::ShortestEdge);
        assert_eq!(
            (c.resize_shortest_edge, c.crop_height, c.crop_width),
            (336, 336, 336)
        );
        assert_eq!((c.mean, c.std), ([0.5; 3], [0.25; 3]));
        assert_eq!(c.crop_rule, CropRule::Hf);
        assert_eq!(c.alpha, AlphaHandling::CompositeWhite);
    }

    #[test]
    fn hf_old_format_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "preprocessor_config.json",
            r#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
                "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#,
        );
        let c = PreprocessConfig::from_hf_file(&path).unwrap();
        assert_eq!(c, PreprocessConfig::clip(224));
    }

    #[test]
    fn hf_height_width_size_is_an_exact_resize() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "p.json",
            r#"{"size": {"height": 30, "width": 40}, "do_center_crop": false, "resample": 2}"#,
        );
        let c = PreprocessConfig::from_hf_file(&path).unwrap();
        assert_eq!(
            c.resize_mode,
            ResizeMode::Exact {
                height: 30,
                width: 40
            }
        );
        assert_eq!(c.resample, Resample::Bilinear);
        assert!(!c.do_center_crop);
    }

    #[test]
    fn hf_bad_field_type_names_field_and_file() {
        let dir = tempfile::tempdir().unwrap();
        for (text, field) in [
            (r#"{"crop_size": "224"}"#, "crop_size"),
            (r#"{"size": {"shortest_edge": -3}}"#, "size.shortest_edge"),
            (r#"{"do_resize": "yes"}"#, "do_resize"),
            (r#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
            (r#"{"resample": "bicubic"}"#, "resample"),
            (r#"{"crop_size": {"height": 224}}"#, "crop_size.width"),
        ] {
            let path = write(&dir, "preprocessor_config.json", text);
            let err = PreprocessConfig::from_hf_file(&path).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("`{field}`")) && msg.contains("preprocessor_config.json"),
                "{text}: {msg}"
            );
        }
    }

    #[test]
    fn hf_nearest_resample_is_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "p.json", r#"{"resample": 0}"#);
        let err = PreprocessConfig::from_hf_file(&path).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedConfigValue { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn open_clip_square_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "open_clip_config.json",
            r#"{"model_cfg": {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12},
                 "text_cfg": {"context_length": 77}},
                "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                 "std": [0.26862954, 0.26130258, 0.27577711]}}"#,
        );
        let c = PreprocessConfig::from_open_clip_file(&path).unwrap();
        assert_eq!(c, PreprocessConfig::open_clip(224));
    }

    #[test]
    fn open_clip_non_square_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |pp: &str| {
            format!(
                r#"{{"model_cfg": {{"vision_cfg": {{"image_size": [224, 336]}}}}, "preprocess_cfg": {pp}}}"#
            )
        };
        let path = write(&dir, "a.json", &cfg(r#"{"mean": 0.5, "std": 0.5}"#));
        let c = PreprocessConfig::from_open_clip_file(&path).unwrap();
        assert_eq!(c.resize_mode, ResizeMode::CoverCrop);
        assert_eq!((c.crop_height, c.crop_width), (224, 336));
        assert_eq!(c.mean, [0.5; 3]);

        let path = write(
            &dir,
            "b.json",
            &cfg(r#"{"resize_mode": "longest", "fill_color": 128}"#),
        );
        let c = PreprocessConfig::from_open_clip_file(&path).unwrap();
        assert_eq!((c.resize_mode, c.pad_value), (ResizeMode::FitCrop, 128));

        let path = write(
            &dir,
            "c.json",
            &cfg(r#"{"resize_mode": "squash", "interpolation": "bilinear"}"#),
        );
        let c = PreprocessConfig::from_open_clip_file(&path).unwrap();
        assert_eq!(
            c.resize_mode,
            ResizeMode::Exact {
                height: 224,
                width: 336
            }
        );
        assert!(!c.do_center_crop);
        assert_eq!(c.resample, Resample::Bilinear);

        let path = write(&dir, "d.json", &cfg(r#"{"resize_mode": "stretch"}"#));
        let err = PreprocessConfig::from_open_clip_file(&path).unwrap_err();
        assert!(
            err.to_string().contains("preprocess_cfg.resize_mode"),
            "{err}"
        );

        let path = write(
            &dir,
            "e.json",
            r#"{"model_cfg": {"vision_cfg": {"image_size": "big"}}}"#,
        );
        let err = PreprocessConfig::from_open_clip_file(&path).unwrap_err();
        assert!(
            err.to_string().contains("model_cfg.vision_cfg.image_size"),
            "{err}"
        );

        let path = write(&dir, "f.json", r#"{"preprocess_cfg": {}}"#);
        let err = PreprocessConfig::from_open_clip_file(&path).unwrap_err();
        assert!(matches!(err, Error::MissingConfigField { .. }), "{err:?}");
    }
}
