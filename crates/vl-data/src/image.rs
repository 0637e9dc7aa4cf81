//! Decoding image files into 8-bit RGB, the way the Python references see them.
//!
//! The format is detected from the file's content (PNG, JPEG or WebP), never from its extension.
//! Grayscale is replicated into the three channels (Pillow's `convert("RGB")`). Alpha (including
//! palette or colour-key transparency, which the decoder expands into an alpha channel) is handled
//! per [`AlphaHandling`]:
//! - transformers 5's `convert_to_rgb`
//!   ([`image_transforms.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/image_transforms.py))
//!   composites the image over **white** with `PIL.Image.alpha_composite`
//!   ([`AlphaComposite.c`](https://github.com/python-pillow/Pillow/blob/main/src/libImaging/AlphaComposite.c)),
//!   reproduced here bit for bit;
//! - Pillow's `convert("RGB")` (transformers 4, open_clip's `_convert_to_rgb`) **drops** alpha.
//!
//! Known differences from Pillow: EXIF orientation is not applied (Pillow's `Image.open` does not
//! apply it either, transformers' `load_image` does); JPEG is decoded by `zune-jpeg` rather than
//! libjpeg-turbo, which can differ by a unit or two on some pixels; 16-bit PNGs are scaled to
//! 8 bits (Pillow clips 16-bit grayscale to 255 and reduces 16-bit RGB).

use std::path::Path;

use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What happens to an alpha channel (and to palette transparency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlphaHandling {
    /// Composite over a white background before anything else, with Pillow's `alpha_composite`
    /// arithmetic (transformers 5 `convert_to_rgb`, both backends). The default.
    #[default]
    CompositeWhite,
    /// Drop alpha before anything else (Pillow `convert("RGB")`; transformers 4's
    /// `convert_to_rgb`).
    Drop,
    /// Resize the RGBA image with Pillow's premultiplied alpha, then drop alpha (open_clip, which
    /// resizes the PIL image in its own mode and calls `convert("RGB")` after cropping). Outside
    /// a resize this is the same as [`AlphaHandling::Drop`].
    ResizeThenDrop,
}

/// Reads an image file, detecting PNG / JPEG / WebP from its content, and keeps its channels
/// (grayscale, alpha) as decoded.
pub fn load_dynamic_image(path: impl AsRef<Path>) -> Result<DynamicImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image(&bytes, path)
}

/// Reads an image file (PNG / JPEG / WebP, detected from content) as 8-bit RGB the way
/// transformers 5's `CLIPImageProcessor` sees it: grayscale becomes three equal channels and
/// transparency is composited over white ([`AlphaHandling::CompositeWhite`]).
pub fn load_image(path: impl AsRef<Path>) -> Result<RgbImage> {
    load_dynamic_image(path).map(|image| to_rgb(&image, AlphaHandling::CompositeWhite))
}

/// Decodes an in-memory PNG / JPEG / WebP file, detecting the format from the bytes; `name` is
/// used in errors.
pub fn decode_image(bytes: &[u8], name: impl AsRef<Path>) -> Result<DynamicImage> {
    let name = name.as_ref();
    let format = image::guess_format(bytes).map_err(|source| Error::UnknownImageFormat {
        path: name.to_path_buf(),
        source,
    })?;
    let image = image::load_from_memory_with_format(bytes, format).map_err(|source| {
        Error::ImageDecode {
            path: name.to_path_buf(),
            source,
        }
    })?;
    if image.width() == 0 || image.height() == 0 {
        return Err(Error::EmptyImage {
            path: name.to_path_buf(),
            width: image.width(),
            height: image.height(),
        });
    }
    Ok(image)
}

/// Converts to 8-bit RGB: grayscale is replicated; alpha is composited over white
/// ([`AlphaHandling::CompositeWhite`]) or dropped (the other two).
pub fn to_rgb(image: &DynamicImage, alpha: AlphaHandling) -> RgbImage {
    if let DynamicImage::ImageRgb8(rgb) = image {
        return rgb.clone();
    }
    if !image.color().has_alpha() || alpha != AlphaHandling::CompositeWhite {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    let (width, height) = rgba.dimensions();
    let mut out = RgbImage::new(width, height);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let [r, g, b, a] = src.0;
        dst.0 = [over_white(r, a), over_white(g, a), over_white(b, a)];
    }
    out
}

/// One channel of Pillow's `alpha_composite(white, src)` (`AlphaComposite.c`, 7 extra bits of
/// precision, rounded divisions by 255). With an opaque white destination the coefficients
/// reduce to `src_a * 128` and `(255 - src_a) * 128`.
#[inline]
fn over_white(value: u8, alpha: u8) -> u8 {
    const PRECISION_BITS: u32 = 7;
    if alpha == 0 {
        return 255;
    }
    let (v, a) = (u32::from(value), u32::from(alpha));
    // blend = 255 * (255 - a); outa255 = a * 255 + blend = 255 * 255.
    let outa255 = 255 * 255;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = v * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    // SHIFTFORDIV255(x) = ((x >> 8) + x) >> 8
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> PRECISION_BITS) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageEncoder, ImageFormat, Luma, Rgba, RgbaImage};

    fn png_bytes(image: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn format_comes_from_content_not_extension() {
        let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(3, 2, Luma([9])));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actually_png.jpg");
        std::fs::write(&path, png_bytes(&img)).unwrap();
        let rgb = load_image(&path).unwrap();
        assert_eq!(rgb.dimensions(), (3, 2));
        assert!(rgb.pixels().all(|p| p.0 == [9, 9, 9]));
    }

    #[test]
    fn alpha_is_composited_over_white_or_dropped() {
        let transparent =
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(2, 2, Rgba([10, 20, 30, 0])));
        let white = to_rgb(&transparent, AlphaHandling::CompositeWhite);
        assert!(white.pixels().all(|p| p.0 == [255, 255, 255]));
        let dropped = to_rgb(&transparent, AlphaHandling::Drop);
        assert!(dropped.pixels().all(|p| p.0 == [10, 20, 30]));
        let opaque = DynamicImage::ImageRgba8(RgbaImage::from_pixel(1, 1, Rgba([10, 20, 30, 255])));
        assert_eq!(
            to_rgb(&opaque, AlphaHandling::CompositeWhite)
                .get_pixel(0, 0)
                .0,
            [10, 20, 30]
        );
    }

    #[test]
    fn composite_matches_pillow_values() {
        // Values checked against Pillow 13: alpha_composite(white, (v, v, v, a)).convert("RGB").
        assert_eq!(over_white(0, 128), 127);
        assert_eq!(over_white(0, 1), 254);
        assert_eq!(over_white(100, 200), 133);
        assert_eq!(over_white(255, 17), 255);
        assert_eq!(over_white(37, 255), 37);
    }

    #[test]
    fn text_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.png");
        std::fs::write(&path, "this is not an image").unwrap();
        let err = load_image(&path).unwrap_err();
        assert!(matches!(err, Error::UnknownImageFormat { .. }));
        assert!(err.to_string().contains("notes.png"), "{err}");
    }

    #[test]
    fn truncated_png_is_a_decode_error_naming_the_file() {
        let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(16, 16, Luma([1])));
        let bytes = png_bytes(&img);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.png");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_image(&path).unwrap_err();
        assert!(matches!(err, Error::ImageDecode { .. }), "{err:?}");
        assert!(err.to_string().contains("cut.png"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error_naming_the_file() {
        let err = load_image("/definitely/not/here.png").unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(
            err.to_string().contains("/definitely/not/here.png"),
            "{err}"
        );
    }

    #[test]
    fn rgba_png_round_trips_through_decoder() {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&[1, 2, 3, 4], 1, 1, image::ExtendedColorType::Rgba8)
            .unwrap();
        let img = decode_image(&out, "mem.png").unwrap();
        assert!(img.color().has_alpha());
        assert_eq!(
            to_rgb(&img, AlphaHandling::Drop).get_pixel(0, 0).0,
            [1, 2, 3]
        );
    }
}
