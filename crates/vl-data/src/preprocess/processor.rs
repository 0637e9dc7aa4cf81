//! [`ImagePreprocessor`]: runs a [`PreprocessConfig`] on images and files, producing CHW `f32`
//! pixels and `[n, 3, h, w]` batches.
//!
//! Step order, as in transformers' `CLIPImageProcessor._preprocess`
//! ([`image_processing_backends.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/image_processing_backends.py))
//! and open_clip's eval `Compose`
//! ([`transform.py`](https://github.com/mlfoundations/open_clip/blob/main/src/open_clip/transform.py)):
//! RGB conversion (or, for open_clip, a premultiplied RGBA resize and a late alpha drop) →
//! resize → center crop / pad (in 8-bit space, so padding is `pad_value` before normalisation) →
//! rescale → normalise → CHW.

use std::path::Path;

use burn::prelude::{Device, Tensor, TensorData};
use image::{DynamicImage, RgbImage};

use crate::error::{Error, Result};
use crate::image::{AlphaHandling, load_dynamic_image, to_rgb};
use crate::preprocess::config::{PreprocessConfig, ResizeMode};
use crate::preprocess::geometry::{CropAxis, keep_ratio_size, shortest_edge_size};
use crate::resize::{resize_rgba_premultiplied, resize_u8};

/// Preprocessed images stacked into one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelBatch {
    /// Row-major `[n, 3, height, width]` values.
    pub data: Vec<f32>,
    /// `[n, 3, height, width]`.
    pub shape: [usize; 4],
}

impl PixelBatch {
    /// The pixels of image `i` (`[3, height, width]`), or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[f32]> {
        let per_image = self.shape[1] * self.shape[2] * self.shape[3];
        if i >= self.shape[0] {
            return None;
        }
        self.data.get(i * per_image..(i + 1) * per_image)
    }

    /// The batch as a float tensor of shape `[n, 3, height, width]` on `device`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.data.clone(), self.shape), device)
    }
}

/// Applies a validated [`PreprocessConfig`].
#[derive(Debug, Clone)]
pub struct ImagePreprocessor {
    config: PreprocessConfig,
    /// `lut[c][v]`: the output value of channel `c` for the 8-bit value `v`.
    lut: Box<[[f32; 256]; 3]>,
}

impl ImagePreprocessor {
    /// Validates `config` ([`PreprocessConfig::validate`]) and builds the preprocessor.
    pub fn new(config: PreprocessConfig) -> Result<Self> {
        config.validate()?;
        let mut lut = Box::new([[0f32; 256]; 3]);
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                // transformers rescales in f64 and casts to f32, then normalises in f32.
                let mut x = if config.do_rescale {
                    (v as f64 * config.rescale_factor) as f32
                } else {
                    v as f32
                };
                if config.do_normalize {
                    x = (x - config.mean[c]) / config.std[c];
                }
                *out = x;
            }
        }
        Ok(Self { config, lut })
    }

    /// The configuration.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// `(height, width)` after the resize step for an input of `height x width` (the input size
    /// when resizing is off).
    pub fn resized_size(&self, height: u32, width: u32) -> (u32, u32) {
        let c = &self.config;
        if !c.do_resize {
            return (height, width);
        }
        match c.resize_mode {
            ResizeMode::ShortestEdge => shortest_edge_size(height, width, c.resize_shortest_edge),
            ResizeMode::CoverCrop => {
                keep_ratio_size(height, width, c.crop_height, c.crop_width, false)
            }
            ResizeMode::FitCrop => {
                keep_ratio_size(height, width, c.crop_height, c.crop_width, true)
            }
            ResizeMode::Exact { height, width } => (height, width),
        }
    }

    /// `(height, width)` of the output for an input of `height x width`.
    pub fn output_size(&self, height: u32, width: u32) -> (u32, u32) {
        if self.config.do_center_crop {
            (self.config.crop_height, self.config.crop_width)
        } else {
            self.resized_size(height.max(1), width.max(1))
        }
    }

    /// Preprocesses an RGB image into `[3, height, width]` values (see [`Self::output_size`]).
    /// An empty image is treated as one black pixel.
    pub fn preprocess(&self, image: &RgbImage) -> Vec<f32> {
        self.run(&Rgb8Source::Rgb(image))
    }

    /// Preprocesses a decoded image of any colour type, handling alpha per
    /// [`PreprocessConfig::alpha`].
    pub fn preprocess_image(&self, image: &DynamicImage) -> Vec<f32> {
        self.run(&Rgb8Source::Dynamic(image))
    }

    /// Reads (PNG / JPEG / WebP, detected from content) and preprocesses one file.
    pub fn preprocess_file(&self, path: impl AsRef<Path>) -> Result<Vec<f32>> {
        let image = load_dynamic_image(path)?;
        Ok(self.preprocess_image(&image))
    }

    /// Reads and preprocesses files into one `[n, 3, height, width]` batch. All outputs must have
    /// the same size (always true with center cropping on).
    pub fn preprocess_files(&self, paths: &[impl AsRef<Path>]) -> Result<PixelBatch> {
        let mut data = Vec::new();
        let mut chw: Option<[usize; 3]> = None;
        for path in paths {
            let path = path.as_ref();
            let image = load_dynamic_image(path)?;
            let (h, w) = self.output_size(image.height(), image.width());
            let found = [3, h as usize, w as usize];
            match chw {
                None => {
                    chw = Some(found);
                    data.reserve(paths.len() * found.iter().product::<usize>());
                }
                Some(expected) if expected != found => {
                    return Err(Error::BatchShapeMismatch {
                        path: path.to_path_buf(),
                        expected,
                        found,
                    });
                }
                Some(_) => {}
            }
            data.extend(self.preprocess_image(&image));
        }
        let [c, h, w] = chw.unwrap_or_else(|| {
            let (h, w) = self.output_size(0, 0);
            [3, h as usize, w as usize]
        });
        Ok(PixelBatch {
            data,
            shape: [paths.len(), c, h, w],
        })
    }

    fn run(&self, source: &Rgb8Source<'_>) -> Vec<f32> {
        let (rgb, width, height) = self.resized_rgb(source);
        self.crop_and_normalize(&rgb, width, height)
    }

    /// RGB conversion and resize: interleaved RGB bytes with their width and height.
    fn resized_rgb(&self, source: &Rgb8Source<'_>) -> (Vec<u8>, u32, u32) {
        let c = &self.config;
        let (width, height) = source.dimensions();
        if width == 0 || height == 0 {
            let (h, w) = self.resized_size(1, 1);
            return (vec![0; h as usize * w as usize * 3], w, h);
        }
        let (new_height, new_width) = self.resized_size(height, width);
        let (w, h, nw, nh) = (
            width as usize,
            height as usize,
            new_width as usize,
            new_height as usize,
        );
        if let Rgb8Source::Dynamic(image) = source
            && c.alpha == AlphaHandling::ResizeThenDrop
            && image.color().has_alpha()
        {
            let rgba = image.to_rgba8();
            let resized =
                resize_rgba_premultiplied(rgba.as_raw(), w, h, nw, nh, c.resample, c.resize_engine);
            let rgb = resized
                .chunks_exact(4)
                .flat_map(|px| [px[0], px[1], px[2]])
                .collect();
            return (rgb, new_width, new_height);
        }
        let converted;
        let rgb: &RgbImage = match source {
            Rgb8Source::Rgb(rgb) => rgb,
            Rgb8Source::Dynamic(image) => {
                converted = to_rgb(image, c.alpha);
                &converted
            }
        };
        let resized = resize_u8(rgb.as_raw(), w, h, 3, nw, nh, c.resample, c.resize_engine);
        (resized, new_width, new_height)
    }

    /// Center crop / pad, rescale and normalise into CHW.
    fn crop_and_normalize(&self, rgb: &[u8], width: u32, height: u32) -> Vec<f32> {
        let c = &self.config;
        let (out_h, out_w, ys, xs) = if c.do_center_crop {
            (
                c.crop_height,
                c.crop_width,
                c.crop_rule.axis(height, c.crop_height),
                c.crop_rule.axis(width, c.crop_width),
            )
        } else {
            let full = |len| CropAxis {
                src_offset: 0,
                dst_offset: 0,
                len,
            };
            (height, width, full(height), full(width))
        };
        let (out_h, out_w, width) = (out_h as usize, out_w as usize, width as usize);
        let plane = out_h * out_w;
        let mut out = vec![0f32; 3 * plane];
        for (ch, values) in out.chunks_exact_mut(plane).enumerate() {
            let lut = &self.lut[ch];
            values.fill(lut[usize::from(c.pad_value)]);
            for y in 0..ys.len as usize {
                let src_row = (ys.src_offset as usize + y) * width;
                let dst_row = (ys.dst_offset as usize + y) * out_w;
                for x in 0..xs.len as usize {
                    let src = (src_row + xs.src_offset as usize + x) * 3 + ch;
                    values[dst_row + xs.dst_offset as usize + x] = lut[usize::from(rgb[src])];
                }
            }
        }
        out
    }
}

/// An image to preprocess: already RGB, or any decoded colour type.
enum Rgb8Source<'a> {
    Rgb(&'a RgbImage),
    Dynamic(&'a DynamicImage),
}

impl Rgb8Source<'_> {
    fn dimensions(&self) -> (u32, u32) {
        match self {
            Self::Rgb(image) => image.dimensions(),
            Self::Dynamic(image) => (image.width(), image.height()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::AlphaHandling;
    use crate::preprocess::config::{
        OPENAI_CLIP_MEAN as OPENAI_MEAN, OPENAI_CLIP_STD as OPENAI_STD, Reference,
    };
    use crate::preprocess::geometry::CropRule;
    use crate::resize::ResizeEngine;
    use image::{Rgb, Rgba, RgbaImage};

    fn plain(size: u32) -> PreprocessConfig {
        PreprocessConfig {
            do_normalize: false,
            do_rescale: false,
            ..PreprocessConfig::clip(size)
        }
    }

    #[test]
    fn output_is_chw_with_crop_size() {
        let p = ImagePreprocessor::new(PreprocessConfig::clip(8)).unwrap();
        let img = RgbImage::from_pixel(20, 12, Rgb([255, 0, 128]));
        let out = p.preprocess(&img);
        assert_eq!(out.len(), 3 * 8 * 8);
        let r = (1.0 - OPENAI_MEAN[0]) / OPENAI_STD[0];
        let g = (0.0 - OPENAI_MEAN[1]) / OPENAI_STD[1];
        assert!((out[0] - r).abs() < 1e-6 && (out[63] - r).abs() < 1e-6);
        assert!((out[64] - g).abs() < 1e-6);
    }

    #[test]
    fn crop_takes_the_center_by_rule() {
        // No resize; crop 4 of 7 columns (excess 3): HF floor(1.5) = 1, torchvision round(1.5) = 2.
        let mut config = plain(4);
        config.do_resize = false;
        config.crop_height = 1;
        let img = RgbImage::from_fn(7, 1, |x, _| Rgb([x as u8; 3]));
        let hf = ImagePreprocessor::new(config.clone())
            .unwrap()
            .preprocess(&img);
        assert_eq!(&hf[..4], &[1.0, 2.0, 3.0, 4.0]);
        config.crop_rule = CropRule::Torchvision;
        let tv = ImagePreprocessor::new(config).unwrap().preprocess(&img);
        assert_eq!(&tv[..4], &[2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn small_images_are_padded_before_normalisation() {
        let mut config = PreprocessConfig::clip(5);
        config.do_resize = false;
        let img = RgbImage::from_pixel(2, 2, Rgb([255, 255, 255]));
        let out = ImagePreprocessor::new(config.clone())
            .unwrap()
            .preprocess(&img);
        let pad = (0.0 - OPENAI_MEAN[0]) / OPENAI_STD[0];
        let one = (1.0 - OPENAI_MEAN[0]) / OPENAI_STD[0];
        // Torch-backend rule: 3 missing -> 1 before, 2 after.
        let row = |y: usize| &out[y * 5..y * 5 + 5];
        assert_eq!(row(0), &[pad; 5]);
        assert_eq!(row(1), &[pad, one, one, pad, pad]);
        config.crop_rule = CropRule::HfPil;
        let out = ImagePreprocessor::new(config).unwrap().preprocess(&img);
        assert_eq!(&out[10..15], &[pad, pad, one, one, pad]);
    }

    #[test]
    fn resize_then_crop_sizes() {
        let p = ImagePreprocessor::new(PreprocessConfig::clip(224)).unwrap();
        assert_eq!(p.resized_size(240, 320), (224, 298));
        assert_eq!(p.output_size(240, 320), (224, 224));
        let mut c = PreprocessConfig::clip(224);
        c.do_center_crop = false;
        let p = ImagePreprocessor::new(c).unwrap();
        assert_eq!(p.output_size(240, 320), (224, 298));
        assert_eq!(p.preprocess(&RgbImage::new(320, 240)).len(), 3 * 224 * 298);
    }

    #[test]
    fn open_clip_resizes_rgba_before_dropping_alpha() {
        // Left half opaque red, right half transparent green.
        let img = RgbaImage::from_fn(8, 8, |x, _| {
            if x < 4 {
                Rgba([255, 0, 0, 255])
            } else {
                Rgba([0, 255, 0, 0])
            }
        });
        let img = DynamicImage::ImageRgba8(img);
        let mut config = plain(4).with_reference(Reference::OpenClip);
        config.resize_engine = ResizeEngine::Pillow;
        let out = ImagePreprocessor::new(config.clone())
            .unwrap()
            .preprocess_image(&img);
        // Green never bleeds into the opaque side with premultiplied resizing.
        let green = &out[16..32];
        assert!(green[..2].iter().all(|&v| v == 0.0), "{green:?}");
        // Composited over white, the transparent side is white.
        config.alpha = AlphaHandling::CompositeWhite;
        let out = ImagePreprocessor::new(config)
            .unwrap()
            .preprocess_image(&img);
        assert_eq!(out[3], 255.0);
    }

    #[test]
    fn empty_image_does_not_panic() {
        let p = ImagePreprocessor::new(PreprocessConfig::clip(4)).unwrap();
        assert_eq!(p.preprocess(&RgbImage::new(0, 0)).len(), 48);
    }

    #[test]
    fn batch_to_tensor_keeps_shape() {
        let batch = PixelBatch {
            data: (0..2 * 3 * 2 * 2).map(|v| v as f32).collect(),
            shape: [2, 3, 2, 2],
        };
        assert_eq!(batch.image(1).unwrap()[0], 12.0);
        assert!(batch.image(2).is_none());
        let t = batch.to_tensor(&Device::flex());
        assert_eq!(t.dims(), [2, 3, 2, 2]);
        let back: Vec<f32> = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(back, batch.data);
    }
}
