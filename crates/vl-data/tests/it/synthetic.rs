//! Behaviour of the synthetic world: determinism, captions that agree with the drawn pixels,
//! held-out combinations kept out of pretraining, task labels and the image-folder writer.

use std::collections::HashSet;
use std::time::Instant;

use vl_data::synthetic::{
    Background, ObjectSpec, Relation, Shape, Split, SyntheticSample, SyntheticWorld,
    SyntheticWorldConfig, Task,
};

fn world() -> SyntheticWorld {
    SyntheticWorld::new(SyntheticWorldConfig::default()).expect("default config is valid")
}

fn world_with_seed(seed: u64) -> SyntheticWorld {
    SyntheticWorld::new(SyntheticWorldConfig {
        seed,
        ..SyntheticWorldConfig::default()
    })
    .expect("valid config")
}

fn same(a: &SyntheticSample, b: &SyntheticSample) -> bool {
    a.image == b.image && a.caption == b.caption && a.objects == b.objects
}

#[test]
fn same_seed_and_index_give_identical_samples() {
    let (a, b) = (world(), world());
    for split in [Split::Pretrain, Split::Eval, Split::HeldOut] {
        for index in [0, 1, 17, 1_000_000_007] {
            assert!(same(&a.sample_in(split, index), &b.sample_in(split, index)));
        }
    }
}

#[test]
fn sampling_an_index_alone_equals_sampling_it_after_others() {
    let world = world();
    let alone = world.sample(25);
    for index in 0..25 {
        let _ = world.sample(index);
    }
    assert!(same(&alone, &world.sample(25)));
}

#[test]
fn different_seeds_and_splits_give_different_images() {
    let (a, b) = (world_with_seed(0), world_with_seed(1));
    let differing = (0..50)
        .filter(|&i| a.sample(i).image != b.sample(i).image)
        .count();
    assert_eq!(differing, 50);
    let eval_differs = (0..50)
        .filter(|&i| a.sample_in(Split::Pretrain, i).image != a.sample_in(Split::Eval, i).image)
        .count();
    assert_eq!(eval_differs, 50);
}

#[test]
fn eval_backgrounds_have_odd_greys_and_pretrain_even() {
    let world = world();
    for index in 0..100 {
        for (split, parity) in [(Split::Pretrain, 0), (Split::Eval, 1)] {
            let sample = world.sample_in(split, index);
            // A pixel far from every object box is pure background.
            let background = sample.image.enumerate_pixels().find(|(x, y, _)| {
                sample.objects.iter().all(|o| {
                    let [x0, y0, x1, y1] = o.bbox;
                    *x + 1 < x0 || *x > x1 || *y + 1 < y0 || *y > y1
                })
            });
            let (_, _, pixel) = background.expect("objects never cover the whole image");
            assert_eq!(pixel.0[0] % 2, parity, "{split:?} {index}");
        }
    }
}

/// Extracts, in order, the words of `vocabulary` found in `caption`.
fn words_in<'a>(caption: &str, vocabulary: &[&'a str]) -> Vec<&'a str> {
    caption
        .split(' ')
        .filter_map(|w| vocabulary.iter().find(|v| **v == w).copied())
        .collect()
}

#[test]
fn captions_name_what_is_drawn() {
    let world = world();
    let config = world.config();
    let shapes: Vec<&str> = config.shapes.iter().map(|s| s.name()).collect();
    let colours: Vec<&str> = config.colours.iter().map(|c| c.name.as_str()).collect();
    let sizes: Vec<&str> = config.sizes.iter().map(|s| s.name.as_str()).collect();
    let backgrounds: Vec<&str> = Background::ALL.iter().map(|b| b.name()).collect();
    for split in [Split::Pretrain, Split::HeldOut] {
        for index in 0..500 {
            let sample = world.sample_in(split, index);
            let caption = &sample.caption;
            let objects = &sample.objects;
            let drawn: Vec<(&str, &str)> = objects
                .iter()
                .map(|o: &ObjectSpec| (o.shape.name(), o.colour.as_str()))
                .collect();
            // Every object's shape is named, in order; a colour or size word, where present,
            // belongs to the object whose shape follows it.
            let drawn_shapes: Vec<&str> = drawn.iter().map(|d| d.0).collect();
            assert_eq!(words_in(caption, &shapes), drawn_shapes, "{caption}");
            let words: Vec<&str> = caption.split(' ').collect();
            let mut object = 0;
            for (i, word) in words.iter().enumerate() {
                if shapes.contains(word) {
                    object += 1;
                    continue;
                }
                if colours.contains(word) {
                    assert_eq!(*word, objects[object].colour, "{caption}");
                    assert_eq!(words[i + 1], objects[object].shape.name(), "{caption}");
                }
                if sizes.contains(word) {
                    assert_eq!(*word, objects[object].size, "{caption}");
                    let next = words[i + 1];
                    assert!(
                        next == objects[object].colour || next == objects[object].shape.name(),
                        "{caption}"
                    );
                }
            }
            let named_background = words_in(caption, &backgrounds);
            assert!(
                named_background.is_empty() || named_background == [sample.background.name()],
                "{caption}"
            );
            match sample.relation {
                None => assert_eq!(objects.len(), 1),
                Some(relation) => {
                    assert!(
                        caption.contains(&format!(" {} ", relation.phrase())),
                        "{caption}"
                    );
                    let ([ax0, ay0, ax1, ay1], [bx0, by0, bx1, by1]) =
                        (objects[0].bbox, objects[1].bbox);
                    let holds = match relation {
                        Relation::LeftOf => ax1 <= bx0 + 1,
                        Relation::RightOf => bx1 <= ax0 + 1,
                        Relation::Above => ay1 <= by0 + 1,
                        Relation::Below => by1 <= ay0 + 1,
                    };
                    assert!(
                        holds,
                        "{caption}: {:?} vs {:?}",
                        objects[0].bbox, objects[1].bbox
                    );
                }
            }
        }
    }
}

#[test]
fn objects_are_painted_in_their_named_colour() {
    let world = world();
    for index in 0..300 {
        let sample = world.sample(index);
        for object in &sample.objects {
            let [x0, y0, x1, y1] = object.bbox;
            let mut exact = 0;
            let (mut sum, mut count) = ([0f64; 3], 0);
            for y in y0..y1 {
                for x in x0..x1 {
                    let pixel = sample.image.get_pixel(x, y).0;
                    exact += usize::from(pixel == object.rgb);
                    if object.contains(x as f32 + 0.5, y as f32 + 0.5) {
                        for (total, &value) in sum.iter_mut().zip(&pixel) {
                            *total += f64::from(value);
                        }
                        count += 1;
                    }
                }
            }
            assert!(exact >= 10, "{}: only {exact} exact pixels", sample.caption);
            assert!(count > 0);
            for (c, (&total, &target)) in sum.iter().zip(&object.rgb).enumerate() {
                let mean = total / count as f64;
                let diff = (mean - f64::from(target)).abs();
                assert!(diff < 20.0, "{}: channel {c} mean {mean}", sample.caption);
            }
        }
    }
}

#[test]
fn pretraining_never_shows_a_held_out_combination() {
    let world = world();
    let mut shapes = HashSet::new();
    let mut colours = HashSet::new();
    for split in [Split::Pretrain, Split::Eval] {
        for index in 0..2000 {
            for object in world.sample_in(split, index).objects {
                assert!(
                    !world.is_held_out(object.shape, &object.colour),
                    "{split:?} {index}"
                );
                shapes.insert(object.shape);
                colours.insert(object.colour);
            }
        }
    }
    assert_eq!(shapes.len(), world.config().shapes.len());
    assert_eq!(colours.len(), world.config().colours.len());
}

#[test]
fn held_out_images_all_contain_a_held_out_combination() {
    let world = world();
    for index in 0..1000 {
        let sample = world.sample_in(Split::HeldOut, index);
        assert!(
            sample
                .objects
                .iter()
                .any(|o| world.is_held_out(o.shape, &o.colour)),
            "{index}"
        );
    }
}

#[test]
fn default_held_out_pairs_leave_every_shape_and_colour_seven_partners() {
    let config = SyntheticWorldConfig::default();
    assert_eq!(config.held_out.len(), 8);
    for shape in Shape::DEFAULT {
        assert_eq!(
            config.held_out.iter().filter(|p| p.shape == shape).count(),
            1
        );
    }
    for colour in &config.colours {
        assert_eq!(
            config
                .held_out
                .iter()
                .filter(|p| p.colour == colour.name)
                .count(),
            1
        );
    }
}

#[test]
fn class_names_are_unique_and_labels_in_range() {
    let world = world();
    for task in [
        Task::Shape,
        Task::Colour,
        Task::ShapeColour,
        Task::Size,
        Task::Background,
    ] {
        let names = world.class_names(task);
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{task:?}");
        for split in [Split::Pretrain, Split::HeldOut] {
            let set = world
                .classification_set(task, split, 200)
                .expect("labelled set");
            assert_eq!(set.len(), 200);
            for &(index, label) in &set {
                assert!(label < names.len());
                let sample = world.sample_in(split, index);
                assert_eq!(world.label(task, &sample), Some(label));
                if task == Task::ShapeColour {
                    // The shape is always named; the colour word may be left out.
                    let caption = &sample.caption;
                    let shape = sample.objects[0].shape.name();
                    assert!(
                        caption.contains(&names[label])
                            || !caption.contains(&sample.objects[0].colour),
                        "{caption}"
                    );
                    assert!(caption.contains(shape), "{caption}");
                }
            }
        }
        let descriptions = world.class_descriptions(task);
        let map = descriptions.as_object().expect("an object");
        assert_eq!(map.len(), names.len());
        for name in &names {
            let sentences = map[name].as_array().expect("a list");
            assert!(sentences.len() >= 2);
            for sentence in sentences {
                let sentence = sentence.as_str().expect("a string");
                assert!(name.split(' ').all(|w| sentence.contains(w)), "{sentence}");
            }
        }
    }
    assert_eq!(world.class_names(Task::ShapeColour).len(), 64);
    assert_eq!(world.class_names(Task::ShapeColour)[0], "red circle");
}

#[test]
fn two_object_images_have_no_object_label() {
    let world = world();
    let sample = (0..)
        .map(|i| world.sample(i))
        .find(|s| s.objects.len() == 2)
        .expect("two-object images exist");
    assert_eq!(world.label(Task::Shape, &sample), None);
    assert!(world.label(Task::Background, &sample).is_some());
}

#[test]
fn object_tasks_need_one_object_images() {
    let config = SyntheticWorldConfig {
        min_objects: 2,
        ..SyntheticWorldConfig::default()
    };
    let world = SyntheticWorld::new(config).expect("valid config");
    assert!(
        world
            .classification_set(Task::Shape, Split::Pretrain, 1)
            .is_err()
    );
    assert_eq!(
        world
            .classification_set(Task::Background, Split::Pretrain, 3)
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn position_grid_puts_boxes_on_the_grid_inside_the_image_keeping_relations_and_all_else() {
    let grid = 6u32;
    let snapped = SyntheticWorld::new(SyntheticWorldConfig {
        position_grid: grid,
        sizes: vec![
            vl_data::synthetic::SizeClass {
                name: "small".into(),
                fraction: 0.4,
            },
            vl_data::synthetic::SizeClass {
                name: "large".into(),
                fraction: 0.5,
            },
        ],
        ..SyntheticWorldConfig::default()
    })
    .expect("valid config");
    let free = SyntheticWorld::new(SyntheticWorldConfig {
        position_grid: 0,
        ..snapped.config().clone()
    })
    .expect("valid config");
    let size = snapped.config().image_size as f32;
    let mut corners = HashSet::new();
    for split in [Split::Pretrain, Split::Eval, Split::HeldOut] {
        for index in 0..300 {
            let (a, b) = (
                snapped.sample_in(split, index),
                free.sample_in(split, index),
            );
            // Everything but the positions (and so the pixels) is the continuous world's.
            assert_eq!(a.caption, b.caption);
            assert_eq!(a.relation, b.relation);
            assert_eq!(a.background, b.background);
            for (o, p) in a.objects.iter().zip(&b.objects) {
                assert_eq!((o.shape, &o.colour, &o.size), (p.shape, &p.colour, &p.size));
                let corner = [o.centre[0] - o.side / 2.0, o.centre[1] - o.side / 2.0];
                for c in corner {
                    let k = c / grid as f32;
                    assert!((k - k.round()).abs() < 1e-4, "corner {c} off the grid");
                    assert!(
                        c >= 0.0 && c + o.side <= size + 1e-4,
                        "box {corner:?} outside"
                    );
                }
                corners.insert([corner[0].round() as u32, corner[1].round() as u32]);
            }
            if let Some(relation) = a.relation {
                // Continuous boxes `[x0, y0, x1, y1]`: the objects may touch, never overlap.
                let boxes: Vec<[f32; 4]> = a
                    .objects
                    .iter()
                    .map(|o| {
                        let h = o.side / 2.0;
                        [
                            o.centre[0] - h,
                            o.centre[1] - h,
                            o.centre[0] + h,
                            o.centre[1] + h,
                        ]
                    })
                    .collect();
                let ([ax0, ay0, ax1, ay1], [bx0, by0, bx1, by1]) = (boxes[0], boxes[1]);
                let holds = match relation {
                    Relation::LeftOf => ax1 <= bx0 + 1e-4,
                    Relation::RightOf => bx1 <= ax0 + 1e-4,
                    Relation::Above => ay1 <= by0 + 1e-4,
                    Relation::Below => by1 <= ay0 + 1e-4,
                };
                assert!(holds, "{}: {boxes:?}", a.caption);
            }
        }
    }
    // Positions still vary: (48 - 19.2) / 6 gives corners 0, 6, .., 24 per axis.
    assert_eq!(corners.len(), 25, "{corners:?}");
}

#[test]
fn outline_draws_a_dark_contour_around_the_shape_and_leaves_its_colour_inside() {
    // Backgrounds are greys of at least 80 and every object colour has a channel above 70.
    let dark = |p: &image::Rgb<u8>| p.0.iter().all(|&c| c <= 70);
    let outlined = SyntheticWorld::new(SyntheticWorldConfig {
        outline: 1.0,
        max_objects: 1,
        ..SyntheticWorldConfig::default()
    })
    .expect("valid config");
    let plain = SyntheticWorld::new(SyntheticWorldConfig {
        outline: 0.0,
        ..outlined.config().clone()
    })
    .expect("valid config");
    let square = [
        (-0.5, -0.5),
        (0.5, -0.5),
        (-0.5, 0.5),
        (0.5, 0.5),
        (0.0, 0.0),
    ];
    for index in 0..100 {
        let (a, b) = (outlined.sample(index), plain.sample(index));
        assert_eq!((&a.caption, &a.objects), (&b.caption, &b.objects));
        assert!(!b.image.pixels().any(dark), "no outline, yet a dark pixel");
        let object = &a.objects[0];
        let (mut ring, mut stray, mut inside_dark, mut exact) = (0, 0, 0, 0);
        for (x, y, pixel) in a.image.enumerate_pixels() {
            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
            let hits = square
                .iter()
                .filter(|(dx, dy)| object.contains(cx + dx, cy + dy))
                .count();
            // Pixels inside the shape keep its colour.
            if hits == square.len() {
                exact += usize::from(pixel.0 == object.rgb);
                inside_dark += usize::from(dark(pixel));
            }
            // Dark pixels lie outside the shape, within the contour's pixel of it.
            if dark(pixel) {
                ring += 1;
                let near = (0..16).any(|k| {
                    let angle = k as f32 * std::f32::consts::FRAC_PI_8;
                    object.contains(cx + 1.5 * angle.cos(), cy + 1.5 * angle.sin())
                });
                stray += usize::from(!near || hits == square.len());
            }
        }
        assert_eq!(inside_dark, 0, "{}", a.caption);
        assert!(exact >= 10, "{}: {exact} pixels of its colour", a.caption);
        assert!(ring >= 12, "{}: only {ring} contour pixels", a.caption);
        assert_eq!(stray, 0, "{}: dark pixels away from the contour", a.caption);
    }
}

#[test]
fn invalid_configs_are_rejected() {
    let bad = [
        SyntheticWorldConfig {
            image_size: 4,
            ..Default::default()
        },
        SyntheticWorldConfig {
            max_objects: 3,
            ..Default::default()
        },
        SyntheticWorldConfig {
            shapes: vec![],
            ..Default::default()
        },
        SyntheticWorldConfig {
            held_out: vec![],
            ..Default::default()
        },
        SyntheticWorldConfig {
            shapes: vec![Shape::Star, Shape::Star],
            ..Default::default()
        },
        SyntheticWorldConfig {
            position_grid: 48,
            ..Default::default()
        },
        SyntheticWorldConfig {
            outline: -1.0,
            ..Default::default()
        },
    ];
    for config in bad {
        assert!(SyntheticWorld::new(config).is_err());
    }
}

#[test]
fn config_round_trips_through_json_and_fills_defaults() {
    let config = SyntheticWorldConfig::default();
    let json = serde_json::to_string(&config).unwrap();
    let back: SyntheticWorldConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    let partial: SyntheticWorldConfig = serde_json::from_str(r#"{"image_size": 32}"#).unwrap();
    assert_eq!(partial.image_size, 32);
    assert_eq!(partial.shapes, config.shapes);
    assert!(serde_json::from_str::<SyntheticWorldConfig>(r#"{"imag_size": 32}"#).is_err());
}

#[test]
fn image_folder_has_expected_counts_and_is_never_overwritten() {
    let world = world();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shapes");
    let summary = world
        .write_image_folder(&dir, Task::Shape, Split::Eval, 40)
        .unwrap();
    assert_eq!(summary.items.len(), 40);
    let mut total = 0;
    for (label, class) in summary.class_names.iter().enumerate() {
        let files = std::fs::read_dir(dir.join(class)).unwrap().count();
        let expected = summary.items.iter().filter(|(_, l)| *l == label).count();
        assert_eq!(files, expected, "{class}");
        total += files;
    }
    assert_eq!(total, 40);
    let captions = std::fs::read_to_string(dir.join("captions.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = captions
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 40);
    for line in &lines {
        let path = line["path"].as_str().unwrap();
        let image = image::open(dir.join(path)).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (48, 48));
        assert!(line["caption"].as_str().is_some());
    }
    // The first line is the first item, and its image decodes to the generated pixels.
    let (index, _) = summary.items[0];
    let first = image::open(dir.join(lines[0]["path"].as_str().unwrap()))
        .unwrap()
        .to_rgb8();
    assert_eq!(first, world.sample_in(Split::Eval, index).image);

    let error = world
        .write_image_folder(&dir, Task::Shape, Split::Eval, 5)
        .unwrap_err();
    assert!(error.to_string().contains("shapes"), "{error}");
    assert_eq!(
        std::fs::read_to_string(dir.join("captions.jsonl")).unwrap(),
        captions
    );
    // No temporary folder is left behind.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
}

#[test]
fn generation_speed_is_reported() {
    let world = world();
    let n = 2000;
    let start = Instant::now();
    let mut checksum = 0u64;
    for index in 0..n {
        checksum += u64::from(world.sample(index).image.get_pixel(0, 0).0[0]);
    }
    let per_second = n as f64 / start.elapsed().as_secs_f64();
    println!("synthetic world: {per_second:.0} images/s (48x48, this build profile; {checksum})");
}

#[test]
fn caption_and_objects_without_pixels_equal_the_rendered_samples() {
    let world = world();
    for split in [Split::Pretrain, Split::Eval, Split::HeldOut] {
        for index in 0..50 {
            let sample = world.sample_in(split, index);
            assert_eq!(world.caption_in(split, index), sample.caption);
            assert_eq!(world.objects_in(split, index), sample.objects);
        }
    }
}

#[test]
fn shape_variants_change_only_that_shape_and_never_show_held_out_pairs() {
    let world = world();
    let n_shapes = world.config().shapes.len();
    let mut variants = 0;
    let mut refused = 0;
    for index in 0..40 {
        let original = world.sample_in(Split::Pretrain, index);
        for slot in 0..original.objects.len() {
            for shape_index in 0..n_shapes {
                let Some(variant) =
                    world.shape_variant_in(Split::Pretrain, index, slot, shape_index)
                else {
                    refused += 1;
                    let colour = &original.objects[slot].colour;
                    let shape = world.config().shapes[shape_index];
                    let clash = original.objects.iter().enumerate().any(|(i, o)| {
                        i != slot && o.shape_index == shape_index && &o.colour == colour
                    });
                    assert!(
                        world.is_held_out(shape, colour) || clash,
                        "variant {index}/{slot}/{shape_index} refused without reason"
                    );
                    continue;
                };
                variants += 1;
                for (i, (a, b)) in original.objects.iter().zip(&variant.objects).enumerate() {
                    assert!(!world.is_held_out(b.shape, &b.colour));
                    assert_eq!(a.colour, b.colour);
                    assert_eq!(a.centre, b.centre);
                    assert_eq!(a.size, b.size);
                    if i == slot {
                        assert_eq!(b.shape, world.config().shapes[shape_index]);
                    } else {
                        assert_eq!(a.shape, b.shape);
                    }
                }
                assert_eq!(original.background, variant.background);
                // The caption differs at most in the word naming the changed shape.
                let (ca, cb): (Vec<_>, Vec<_>) = (
                    original.caption.split(' ').collect(),
                    variant.caption.split(' ').collect(),
                );
                assert_eq!(
                    ca.len(),
                    cb.len(),
                    "{} / {}",
                    original.caption,
                    variant.caption
                );
                let differing = ca.iter().zip(&cb).filter(|(a, b)| a != b).count();
                let expected = usize::from(original.objects[slot].shape_index != shape_index);
                // "a"/"an" may change with the shape word when no size or colour precedes it.
                assert!(
                    differing == expected || differing == 2 * expected,
                    "{} / {}",
                    original.caption,
                    variant.caption
                );
                if original.objects[slot].shape_index == shape_index {
                    assert!(same(&original, &variant));
                }
            }
        }
    }
    assert!(
        variants > 0 && refused > 0,
        "{variants} variants, {refused} refused"
    );
    assert!(world.shape_variant_in(Split::Pretrain, 0, 2, 0).is_none());
    assert!(
        world
            .shape_variant_in(Split::Pretrain, 0, 0, n_shapes)
            .is_none()
    );
}

#[test]
fn several_captions_per_image_all_name_the_drawn_shapes_and_vary() {
    let world = world();
    let shapes: Vec<&str> = world.config().shapes.iter().map(|s| s.name()).collect();
    let mut varied = 0;
    for index in 0..100 {
        let sample = world.sample_in(Split::Eval, index);
        let captions = world.captions_in(Split::Eval, index, 5);
        assert_eq!(captions.len(), 5);
        assert_eq!(captions[0], sample.caption);
        assert_eq!(captions, world.captions_in(Split::Eval, index, 5));
        let drawn: Vec<&str> = sample.objects.iter().map(|o| o.shape.name()).collect();
        for c in &captions {
            assert_eq!(words_in(c, &shapes), drawn, "{c}");
        }
        varied += usize::from(captions.iter().collect::<HashSet<_>>().len() > 1);
    }
    assert!(
        varied > 90,
        "only {varied} of 100 images have varied captions"
    );
}
