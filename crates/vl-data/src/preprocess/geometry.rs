//! Output-size and crop-offset rules of the reference preprocessors, as pure functions.
//!
//! - Shortest-edge resize: transformers'
//!   [`get_resize_output_image_size(..., default_to_square=False)`](https://github.com/huggingface/transformers/blob/main/src/transformers/image_transforms.py)
//!   and torchvision's `_compute_resized_output_size` for `Resize(int)`
//!   ([`functional.py`](https://github.com/pytorch/vision/blob/main/torchvision/transforms/functional.py))
//!   both set the short side to the target and the long side to `int(size * long / short)`
//!   (truncation).
//! - Keep-ratio resize: timm's / open_clip's `ResizeKeepRatio`
//!   ([`transform.py`](https://github.com/mlfoundations/open_clip/blob/main/src/open_clip/transform.py)),
//!   `round(side / ratio)` with Python's round-half-to-even.
//! - Center crop: transformers' numpy `center_crop` (PIL backend) takes `(size - crop) // 2` and
//!   pads a too-small image with `ceil(missing / 2)` before; its torchvision backend takes
//!   `int((size - crop) / 2.0)` (the same floor) but pads `missing // 2` before; torchvision's
//!   `center_crop` (and open_clip's `center_crop_or_pad`) takes `int(round((size - crop) / 2.0))`
//!   (ties to even) and pads `missing // 2` before. They differ by one pixel when
//!   `size - crop ≡ 3 (mod 4)` or when the padding is odd.

use serde::{Deserialize, Serialize};

/// Which reference's center-crop (and padding) offsets to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropRule {
    /// transformers 5's default (torchvision) backend: offset `int((size - crop) / 2.0)`
    /// (floor); a too-small image is placed `(crop - size) // 2` from the start. The default.
    #[default]
    Hf,
    /// transformers' numpy `center_crop` (PIL backend, transformers 4): offset
    /// `(size - crop) // 2`; a too-small image is placed `ceil((crop - size) / 2)` from the start.
    HfPil,
    /// torchvision's `CenterCrop` / open_clip's `CenterCropOrPad`: offset
    /// `round((size - crop) / 2)` with ties to even; a too-small image is placed
    /// `(crop - size) // 2` from the start.
    Torchvision,
}

/// How one axis of a center crop maps source pixels to output pixels: output positions
/// `dst_offset..dst_offset + len` take source positions `src_offset..src_offset + len`; the rest
/// of the output is padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropAxis {
    /// First source pixel that is kept.
    pub src_offset: u32,
    /// Where it lands in the output.
    pub dst_offset: u32,
    /// How many pixels are copied.
    pub len: u32,
}

impl CropRule {
    /// The crop of one axis of length `size` to length `crop`.
    pub fn axis(self, size: u32, crop: u32) -> CropAxis {
        if size >= crop {
            let excess = size - crop;
            let src_offset = match self {
                Self::Hf | Self::HfPil => excess / 2,
                // Python `round(excess / 2.0)`: halves go to the even neighbour.
                Self::Torchvision => {
                    let half = excess / 2;
                    if excess % 2 == 1 && half % 2 == 1 {
                        half + 1
                    } else {
                        half
                    }
                }
            };
            CropAxis {
                src_offset,
                dst_offset: 0,
                len: crop,
            }
        } else {
            let missing = crop - size;
            let dst_offset = match self {
                Self::HfPil => missing.div_ceil(2),
                Self::Hf | Self::Torchvision => missing / 2,
            };
            CropAxis {
                src_offset: 0,
                dst_offset,
                len: size,
            }
        }
    }
}

/// `(height, width)` after a shortest-edge resize: the short side becomes `shortest_edge`, the
/// long side `int(shortest_edge * long / short)`. A square image (or one whose sides are equal)
/// becomes `shortest_edge` square. Zero-sized inputs are treated as 1 pixel.
pub fn shortest_edge_size(height: u32, width: u32, shortest_edge: u32) -> (u32, u32) {
    let (height, width) = (height.max(1), width.max(1));
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    // Python: int(size * long / short) — an exact integer product, a correctly rounded true
    // division (exact in f64 for any realistic size), then truncation.
    let new_long = ((u64::from(shortest_edge) * u64::from(long)) as f64 / f64::from(short)) as u32;
    if width <= height {
        (new_long, shortest_edge)
    } else {
        (shortest_edge, new_long)
    }
}

/// `(height, width)` after timm's `ResizeKeepRatio` toward `(target_height, target_width)`:
/// the scale is the smaller of the two side ratios (`longest = false`: the result covers the
/// target box) or the larger one (`longest = true`: the result fits inside it), and each side is
/// `round(side / ratio)` with ties to even, at least 1.
pub fn keep_ratio_size(
    height: u32,
    width: u32,
    target_height: u32,
    target_width: u32,
    longest: bool,
) -> (u32, u32) {
    let (h, w) = (f64::from(height.max(1)), f64::from(width.max(1)));
    let ratio_h = h / f64::from(target_height.max(1));
    let ratio_w = w / f64::from(target_width.max(1));
    let ratio = if longest {
        ratio_h.max(ratio_w)
    } else {
        ratio_h.min(ratio_w)
    };
    let side = |x: f64| ((x / ratio).round_ties_even() as u32).max(1);
    (side(h), side(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_truncates_the_long_side() {
        // 640x427 landscape: 224 * 640 / 427 = 335.74 -> 335 (round would give 336).
        assert_eq!(shortest_edge_size(427, 640, 224), (224, 335));
        // Portrait.
        assert_eq!(shortest_edge_size(640, 427, 224), (335, 224));
        // Square and upscaling.
        assert_eq!(shortest_edge_size(50, 50, 224), (224, 224));
        assert_eq!(shortest_edge_size(20, 30, 224), (224, 336));
        // Exact multiples are not truncated down.
        assert_eq!(shortest_edge_size(300, 600, 224), (224, 448));
        // Degenerate input does not divide by zero.
        assert_eq!(shortest_edge_size(0, 0, 224), (224, 224));
    }

    #[test]
    fn keep_ratio_rounds_half_to_even() {
        // Cover a 224x336 (h x w) box from 480x640: ratio = min(480/224, 640/336) = 1.9048.
        assert_eq!(keep_ratio_size(480, 640, 224, 336, false), (252, 336));
        // Fit inside: ratio = max(...) = 2.1429.
        assert_eq!(keep_ratio_size(480, 640, 224, 336, true), (224, 299));
        // 5 / 2 = 2.5 rounds to 2, 7 / 2 = 3.5 rounds to 4 (Python round).
        assert_eq!(keep_ratio_size(4, 5, 2, 2, false), (2, 2));
        assert_eq!(keep_ratio_size(4, 7, 2, 2, false), (2, 4));
    }

    #[test]
    fn crop_offsets_follow_each_reference() {
        // Even excess: both agree.
        assert_eq!(CropRule::Hf.axis(300, 224).src_offset, 38);
        assert_eq!(CropRule::Torchvision.axis(300, 224).src_offset, 38);
        // Excess 1: 0.5 rounds to 0.
        assert_eq!(CropRule::Torchvision.axis(225, 224).src_offset, 0);
        // Excess 3: HF floor 1, torchvision round(1.5) = 2.
        assert_eq!(CropRule::Hf.axis(227, 224).src_offset, 1);
        assert_eq!(CropRule::HfPil.axis(227, 224).src_offset, 1);
        assert_eq!(CropRule::Torchvision.axis(227, 224).src_offset, 2);
        // Excess 5: round(2.5) = 2 for both.
        assert_eq!(CropRule::Torchvision.axis(229, 224).src_offset, 2);
        assert_eq!(CropRule::Hf.axis(229, 224).src_offset, 2);
        // Excess 111 (335 - 224): HF 55, torchvision round(55.5) = 56.
        assert_eq!(CropRule::Hf.axis(335, 224).src_offset, 55);
        assert_eq!(CropRule::Torchvision.axis(335, 224).src_offset, 56);
    }

    #[test]
    fn padding_offsets_follow_each_reference() {
        let pil = CropRule::HfPil.axis(5, 8);
        let hf = CropRule::Hf.axis(5, 8);
        let tv = CropRule::Torchvision.axis(5, 8);
        assert_eq!((pil.src_offset, pil.dst_offset, pil.len), (0, 2, 5));
        assert_eq!((hf.src_offset, hf.dst_offset, hf.len), (0, 1, 5));
        assert_eq!(tv, hf);
        let even = CropRule::HfPil.axis(4, 8);
        assert_eq!(even.dst_offset, CropRule::Torchvision.axis(4, 8).dst_offset);
    }
}
