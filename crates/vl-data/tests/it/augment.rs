//! Behaviour of the seeded augmentations in `vl_data::augment`.

use image::{Rgb, RgbImage};
use vl_data::augment::{
    AugmentConfig, ColorJitterConfig, RandomResizedCropConfig, WeakStrongPair, horizontal_flip,
    random_grayscale, sample_seed,
};

/// A colourful test image whose pixels all differ.
fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            ((x * 7 + y * 13) % 256) as u8,
        ])
    })
}

#[test]
fn same_seed_gives_same_bytes_and_different_seeds_differ() {
    let image = gradient(64, 48);
    let config = AugmentConfig::strong(32, 32);
    let a = config.apply(&image, 42);
    let b = config.apply(&image, 42);
    assert_eq!(a.as_raw(), b.as_raw());
    let differing = (0..20)
        .filter(|&s| config.apply(&image, s).as_raw() != a.as_raw())
        .count();
    assert!(differing >= 19, "only {differing} of 20 seeds differ");
}

#[test]
fn crop_boxes_stay_inside_with_area_and_ratio_in_range() {
    let config = RandomResizedCropConfig::default();
    for (w, h) in [(500u32, 400u32), (300, 300), (200, 450)] {
        let area = f64::from(w) * f64::from(h);
        for seed in 0..2000 {
            let b = config.sample_box(w, h, seed);
            assert!(b.width >= 1 && b.height >= 1);
            assert!(b.left + b.width <= w && b.top + b.height <= h, "{b:?}");
            let frac = f64::from(b.width) * f64::from(b.height) / area;
            assert!((0.08 * 0.95..=1.0).contains(&frac), "area {frac} for {b:?}");
            let ratio = f64::from(b.width) / f64::from(b.height);
            assert!(
                (0.75 * 0.97..=4.0 / 3.0 * 1.03).contains(&ratio),
                "ratio {ratio} for {b:?}"
            );
        }
    }
}

#[test]
fn crop_falls_back_to_a_centred_box_for_extreme_shapes() {
    let config = RandomResizedCropConfig::default();
    for seed in 0..200 {
        let b = config.sample_box(1000, 2, seed);
        assert!(b.left + b.width <= 1000 && b.top + b.height <= 2);
        assert!(b.width >= 1 && b.height >= 1);
    }
}

#[test]
fn crop_output_has_the_configured_size() {
    let out = RandomResizedCropConfig::with_size(17, 23).apply(&gradient(40, 30), 3);
    assert_eq!(out.dimensions(), (23, 17));
}

#[test]
fn flip_with_p0_is_identity_and_p1_is_exact_mirror() {
    let image = gradient(9, 5);
    for seed in 0..20 {
        assert_eq!(horizontal_flip(&image, 0.0, seed), image);
        let mirrored = horizontal_flip(&image, 1.0, seed);
        for (x, y, p) in mirrored.enumerate_pixels() {
            assert_eq!(*p, *image.get_pixel(8 - x, y));
        }
    }
}

#[test]
fn jitter_with_all_zeros_is_identity() {
    let image = gradient(16, 12);
    for seed in 0..10 {
        assert_eq!(ColorJitterConfig::default().apply(&image, seed), image);
    }
}

#[test]
fn brightness_factor_zero_gives_black() {
    // brightness = 1 samples factors from [0, 2]; set the factor directly instead.
    let mut image = gradient(16, 12);
    vl_data::augment::adjust_brightness(&mut image, 0.0);
    assert!(image.as_raw().iter().all(|&v| v == 0));
}

#[test]
fn saturation_zero_gives_grey_pixels() {
    let mut image = gradient(16, 12);
    vl_data::augment::adjust_saturation(&mut image, 0.0);
    assert!(image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    let grey = random_grayscale(&gradient(16, 12), 1.0, 5);
    assert!(grey.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn hue_shift_of_a_full_turn_is_identity_and_keeps_grey() {
    let image = gradient(16, 12);
    let mut turned = image.clone();
    vl_data::augment::adjust_hue(&mut turned, 1.0);
    assert_eq!(turned, image);
    let mut grey = RgbImage::from_pixel(3, 3, Rgb([90, 90, 90]));
    vl_data::augment::adjust_hue(&mut grey, 0.3);
    assert!(grey.pixels().all(|p| p.0 == [90, 90, 90]));
}

#[test]
fn tiny_and_thin_images_do_not_panic() {
    let pair = WeakStrongPair::new(8, 8);
    for (w, h) in [(1, 1), (1, 200), (200, 1), (2, 1), (3, 2)] {
        let image = gradient(w, h);
        for seed in 0..50 {
            let (weak, strong) = pair.apply(&image, seed);
            assert_eq!(weak.dimensions(), (8, 8));
            assert_eq!(strong.dimensions(), (8, 8));
            let _ = AugmentConfig {
                crop: None,
                ..AugmentConfig::strong(8, 8)
            }
            .apply(&image, seed);
        }
    }
}

#[test]
fn weak_and_strong_views_differ_but_each_is_deterministic() {
    let image = gradient(64, 64);
    let pair = WeakStrongPair::new(32, 32);
    let seed = sample_seed(7, 3, 11);
    let (weak, strong) = pair.apply(&image, seed);
    let (weak2, strong2) = pair.apply(&image, seed);
    assert_eq!(weak, weak2);
    assert_eq!(strong, strong2);
    assert_ne!(weak, strong);
}

#[test]
fn sample_seeds_differ_across_epochs_and_indices() {
    let seeds = [
        sample_seed(1, 0, 0),
        sample_seed(1, 0, 1),
        sample_seed(1, 1, 0),
        sample_seed(2, 0, 0),
    ];
    for i in 0..seeds.len() {
        for j in i + 1..seeds.len() {
            assert_ne!(seeds[i], seeds[j]);
        }
    }
}

#[test]
fn presets_validate_and_bad_settings_are_rejected() {
    AugmentConfig::weak(32, 32).validate().unwrap();
    AugmentConfig::strong(32, 32).validate().unwrap();
    let zero = RandomResizedCropConfig::with_size(0, 4);
    assert!(zero.validate().unwrap_err().to_string().contains("size"));
    let bad_p = AugmentConfig {
        flip_p: 1.5,
        ..AugmentConfig::weak(8, 8)
    };
    assert!(bad_p.validate().unwrap_err().to_string().contains("flip_p"));
}
