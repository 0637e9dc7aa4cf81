//! The rasteriser of the synthetic world: point-in-shape tests in a shape's unit box, optional
//! 4x4 supersampled anti-aliasing, and the grey background textures. Integer and basic float
//! arithmetic only (no `sin`/`cos`), so pixels are identical on every platform.

use image::{Rgb, RgbImage};

use super::config::{Background, Shape};
use super::rng::{SplitMix64, hash3};

/// The five-pointed star's outline in its unit box (outer radius 1, inner radius 0.42, one point
/// up, shifted down by 0.1 to centre it vertically); precomputed so no trigonometry runs here.
const STAR: [[f32; 2]; 10] = [
    [0.000000, -0.900000],
    [0.246870, -0.239787],
    [0.951057, -0.209017],
    [0.399444, 0.229787],
    [0.587785, 0.909017],
    [0.000000, 0.520000],
    [-0.587785, 0.909017],
    [-0.399444, 0.229787],
    [-0.951057, -0.209017],
    [-0.246870, -0.239787],
];

/// Crossing-number point-in-polygon test.
fn in_polygon(polygon: &[[f32; 2]], u: f32, v: f32) -> bool {
    let mut inside = false;
    let mut j = polygon.len() - 1;
    for i in 0..polygon.len() {
        let [xi, yi] = polygon[i];
        let [xj, yj] = polygon[j];
        if (yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Whether the point `(u, v)` of the shape's box (both in `[-1, 1]`, `v` pointing down) is inside
/// the shape.
pub(crate) fn inside(shape: Shape, u: f32, v: f32) -> bool {
    let (au, av) = (u.abs(), v.abs());
    match shape {
        Shape::Circle => u * u + v * v <= 1.0,
        Shape::Square => au <= 0.88 && av <= 0.88,
        // Apex at (0, -0.9), base from (-1, 0.85) to (1, 0.85).
        Shape::Triangle => (-0.9..=0.85).contains(&v) && au <= (v + 0.9) / 1.75,
        Shape::Star => in_polygon(&STAR, u, v),
        Shape::Cross => (au <= 0.34 && av <= 1.0) || (av <= 0.34 && au <= 1.0),
        Shape::Ring => {
            let r2 = u * u + v * v;
            (0.3025..=1.0).contains(&r2)
        }
        Shape::Diamond => au + av <= 1.0,
        // Disc of radius 1 centred at (0, 0.5), upper half only: spans v in [-0.5, 0.5].
        Shape::Semicircle => v <= 0.5 && u * u + (v - 0.5) * (v - 0.5) <= 1.0,
        Shape::Hexagon => {
            const SQRT3: f32 = 1.732_050_8;
            av <= SQRT3 / 2.0 && SQRT3 * au + av <= SQRT3
        }
    }
}

/// An object to paint: its shape, colour and square box (centre and side in pixels).
pub(crate) struct Paint {
    pub(crate) shape: Shape,
    pub(crate) rgb: [u8; 3],
    pub(crate) centre: [f32; 2],
    pub(crate) side: f32,
}

/// The pixel box `[x0, y0, x1, y1)` that a square box of `side` around `centre` touches, clipped
/// to the image.
pub(crate) fn pixel_bbox(centre: [f32; 2], side: f32, image_size: u32) -> [u32; 4] {
    let half = side / 2.0;
    let lo = |c: f32| (c - half).floor().max(0.0) as u32;
    let hi = |c: f32| ((c + half).ceil().max(0.0) as u32).min(image_size);
    [lo(centre[0]), lo(centre[1]), hi(centre[0]), hi(centre[1])]
}

/// Fraction of the pixel `(x, y)` covered by the object (`0` or `1` without anti-aliasing, where
/// only the pixel centre is tested).
pub(crate) fn coverage(paint: &Paint, x: u32, y: u32, antialias: bool) -> f32 {
    let n = if antialias { 4 } else { 1 };
    let scale = 2.0 / paint.side;
    let mut hits = 0;
    for j in 0..n {
        let py = y as f32 + (j as f32 + 0.5) / n as f32;
        let v = (py - paint.centre[1]) * scale;
        for i in 0..n {
            let px = x as f32 + (i as f32 + 0.5) / n as f32;
            let u = (px - paint.centre[0]) * scale;
            if inside(paint.shape, u, v) {
                hits += 1;
            }
        }
    }
    hits as f32 / (n * n) as f32
}

/// Paints the contour of `paint`'s shape: every point within `width` pixels of the shape (tested
/// at the shape and at 8 points around it on a circle of that radius, per subsample), in
/// `paint.rgb`; paint the object itself over it afterwards.
pub(crate) fn paint_contour(image: &mut RgbImage, paint: &Paint, width: f32, antialias: bool) {
    let n = if antialias { 4 } else { 1 };
    let scale = 2.0 / paint.side;
    let offsets: Vec<(f32, f32)> = (0..8)
        .map(|k| {
            let angle = k as f32 * std::f32::consts::FRAC_PI_4;
            (width * angle.cos(), width * angle.sin())
        })
        .collect();
    let near = |px: f32, py: f32| {
        let at = |x: f32, y: f32| {
            inside(
                paint.shape,
                (x - paint.centre[0]) * scale,
                (y - paint.centre[1]) * scale,
            )
        };
        at(px, py) || offsets.iter().any(|&(dx, dy)| at(px + dx, py + dy))
    };
    let [x0, y0, x1, y1] = pixel_bbox(paint.centre, paint.side + 2.0 * width, image.width());
    for y in y0..y1 {
        for x in x0..x1 {
            let mut hits = 0;
            for j in 0..n {
                let py = y as f32 + (j as f32 + 0.5) / n as f32;
                for i in 0..n {
                    hits += usize::from(near(x as f32 + (i as f32 + 0.5) / n as f32, py));
                }
            }
            let c = hits as f32 / (n * n) as f32;
            if c > 0.0 {
                blend(image.get_pixel_mut(x, y), paint.rgb, c);
            }
        }
    }
}

/// `pixel` moved a fraction `c` of the way to `target`.
fn blend(pixel: &mut image::Rgb<u8>, target: [u8; 3], c: f32) {
    for (channel, &target) in pixel.0.iter_mut().zip(&target) {
        let blended = f32::from(*channel) * (1.0 - c) + f32::from(target) * c;
        *channel = blended.round() as u8;
    }
}

/// Paints one object over the image.
pub(crate) fn paint_object(image: &mut RgbImage, paint: &Paint, antialias: bool) {
    let [x0, y0, x1, y1] = pixel_bbox(paint.centre, paint.side, image.width());
    for y in y0..y1 {
        for x in x0..x1 {
            let c = coverage(paint, x, y, antialias);
            if c <= 0.0 {
                continue;
            }
            blend(image.get_pixel_mut(x, y), paint.rgb, c);
        }
    }
}

/// Draws a background texture. `base` is the mean grey level; every pattern adds an even offset
/// to it, so all background pixels share `base`'s parity (how evaluation images are kept
/// pixel-distinct from pretraining ones). `seed` draws the pattern's period, phase and noise.
pub(crate) fn background(
    size: u32,
    kind: Background,
    base: u8,
    contrast: u8,
    seed: u64,
) -> RgbImage {
    let mut rng = SplitMix64::new(seed);
    let half_swing = i32::from(contrast / 2);
    let swing = 2 * half_swing;
    let base = i32::from(base);
    let min_period = (size / 12).max(3) as usize;
    let period = (min_period + rng.below(min_period + 1)) as u32;
    let phase_x = rng.below(period as usize) as u32;
    let phase_y = rng.below(period as usize) as u32;
    let vertical = rng.chance(1, 2);
    let flip = rng.chance(1, 2);
    let noise_seed = rng.next_u64();
    let dot = (period / 3).max(1);
    let offset = |x: u32, y: u32| -> i32 {
        let (px, py) = ((x + phase_x) % period, (y + phase_y) % period);
        match kind {
            Background::Plain => 0,
            Background::Striped => {
                let along = if vertical { px } else { py };
                if along < period / 2 {
                    swing / 2
                } else {
                    -swing / 2
                }
            }
            Background::Dotted => {
                if px < dot && py < dot {
                    swing
                } else {
                    -swing / 4
                }
            }
            Background::Checkered => {
                let cell = ((x + phase_x) / period + (y + phase_y) / period) % 2;
                if cell == 0 { swing / 2 } else { -swing / 2 }
            }
            Background::Noisy => {
                let r = hash3(noise_seed, u64::from(y), u64::from(x));
                2 * ((r % (half_swing as u64 + 1)) as i32 - half_swing / 2)
            }
            Background::Gradient => {
                let t = if vertical { y } else { x } as i32;
                let t = if flip { size as i32 - 1 - t } else { t };
                // Even steps from -swing to +swing across the image.
                2 * ((t * (2 * half_swing + 1)) / size as i32 - half_swing)
            }
        }
    };
    RgbImage::from_fn(size, size, |x, y| {
        let level = (base + offset(x, y)).clamp(0, 255) as u8;
        Rgb([level, level, level])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_covers_a_sensible_part_of_its_box() {
        for shape in Shape::DEFAULT.into_iter().chain([Shape::Hexagon]) {
            let n = 64;
            let mut hits = 0;
            for j in 0..n {
                for i in 0..n {
                    let u = (i as f32 + 0.5) / n as f32 * 2.0 - 1.0;
                    let v = (j as f32 + 0.5) / n as f32 * 2.0 - 1.0;
                    hits += usize::from(inside(shape, u, v));
                }
            }
            let area = hits as f32 / (n * n) as f32;
            assert!((0.25..=0.8).contains(&area), "{shape:?} covers {area}");
        }
    }

    #[test]
    fn background_pixels_keep_the_base_parity() {
        for kind in Background::ALL {
            for base in [96u8, 97] {
                let image = background(48, kind, base, 16, 9);
                assert!(
                    image
                        .pixels()
                        .all(|p| p.0[0] % 2 == base % 2 && p.0[0] == p.0[2])
                );
            }
        }
    }
}
