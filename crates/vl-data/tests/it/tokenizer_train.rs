//! BPE tokenizer training on synthetic-world captions: round trips, word granularity, the
//! CLIP-shaped `tokenizer.json` (pipeline and base vocabulary compared with OpenAI CLIP's),
//! loading through `ClipTokenizer`, determinism and config errors.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use vl_data::synthetic::{SyntheticWorld, SyntheticWorldConfig};
use vl_data::tokenizer::{END_OF_TEXT, START_OF_TEXT};
use vl_data::tokenizer_train::{byte_symbols, tokenizer_json};
use vl_data::{
    ClipTokenizer, Error, Overwrite, Padding, TokenizerTrainConfig, save_tokenizer,
    train_clip_tokenizer,
};

const CLIP_TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/clip_tokenizer/tokenizer.json"
);

/// Captions of the first `n` samples of the default synthetic world.
fn captions(n: u64) -> Vec<String> {
    let world = SyntheticWorld::new(SyntheticWorldConfig::default()).unwrap();
    (0..n).map(|i| world.sample(i).caption).collect()
}

fn train(texts: &[String], config: &TokenizerTrainConfig) -> tokenizers::Tokenizer {
    train_clip_tokenizer(texts.iter(), config).unwrap()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Content ids of `text` (between start- and end-of-text).
fn content_ids(tokenizer: &ClipTokenizer, text: &str) -> Vec<i64> {
    let ids = tokenizer.encode(text).unwrap();
    let eot = i64::from(tokenizer.eot_id());
    let end = ids.iter().position(|&id| id == eot).unwrap();
    ids[1..end].to_vec()
}

#[test]
fn trained_tokenizer_round_trips_captions() {
    let texts = captions(300);
    let tokenizer =
        ClipTokenizer::from_tokenizer(train(&texts, &TokenizerTrainConfig::default())).unwrap();
    for text in &texts {
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(&tokenizer.decode(&ids).unwrap(), text);
    }
    // Text the corpus never had still round-trips (lowercased, whitespace collapsed): every byte
    // has a symbol with and without the end-of-word suffix.
    let unseen = "A  Zebra\tnear the CAFÉ 🙂";
    let ids = tokenizer.encode(unseen).unwrap();
    assert_eq!(tokenizer.decode(&ids).unwrap(), "a zebra near the café 🙂");
}

#[test]
fn caption_words_are_single_tokens() {
    let texts = captions(300);
    let tokenizer =
        ClipTokenizer::from_tokenizer(train(&texts, &TokenizerTrainConfig::default())).unwrap();
    let words: BTreeSet<&str> = texts.iter().flat_map(|t| t.split(' ')).collect();
    assert!(words.len() > 30, "{words:?}");
    for word in &words {
        let ids = content_ids(&tokenizer, word);
        assert_eq!(ids.len(), 1, "{word:?} -> {ids:?}");
    }
    // Every word of the default grammar (shapes, colours, sizes, backgrounds, relations,
    // templates) is among them.
    let config = SyntheticWorldConfig::default();
    let mut grammar: Vec<String> = ["a", "an", "on", "background", "photo", "of", "there", "is"]
        .into_iter()
        .chain(["image", "picture"])
        .map(String::from)
        .collect();
    grammar.extend(config.shapes.iter().map(|s| s.name().to_owned()));
    grammar.extend(config.colours.iter().map(|c| c.name.clone()));
    grammar.extend(config.sizes.iter().map(|s| s.name.clone()));
    grammar.extend(config.backgrounds.iter().map(|b| b.name().to_owned()));
    grammar.extend(
        config
            .relations
            .iter()
            .flat_map(|r| r.phrase().split(' '))
            .map(String::from),
    );
    for word in &grammar {
        assert!(
            words.contains(word.as_str()),
            "{word:?} not in 300 captions"
        );
    }
    // A word outside the grammar still encodes, as several byte-level tokens.
    let ids = content_ids(&tokenizer, "hexagon");
    assert!(ids.len() > 1, "{ids:?}");
}

#[test]
fn saved_tokenizer_loads_and_frames_with_last_two_ids() {
    let texts = captions(300);
    let config = TokenizerTrainConfig::default();
    let trained = train(&texts, &config);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    save_tokenizer(&trained, &path, Overwrite::Refuse).unwrap();

    let tokenizer = ClipTokenizer::from_file(&path).unwrap();
    let vocab_size = tokenizer.vocab_size();
    assert!(vocab_size <= config.vocab_size, "{vocab_size}");
    assert_eq!(tokenizer.sot_id() as usize, vocab_size - 2);
    assert_eq!(tokenizer.eot_id() as usize, vocab_size - 1);
    assert_eq!(tokenizer.context_length(), 77);

    let text = "a photo of a red circle";
    let ids = tokenizer.encode(text).unwrap();
    assert_eq!(ids.len(), 77);
    let (sot, eot) = (i64::from(tokenizer.sot_id()), i64::from(tokenizer.eot_id()));
    assert_eq!(ids[0], sot);
    assert_eq!(ids[7], eot, "six words, one token each: {ids:?}");
    assert!(ids[1..7].iter().all(|&id| (0..sot).contains(&id)));
    assert!(
        ids[8..].iter().all(|&id| id == eot),
        "padded with end-of-text"
    );

    // The same ids as the in-memory tokenizer, and the tokenizers crate's own post-processor
    // frames the same way.
    let in_memory = ClipTokenizer::from_tokenizer(trained.clone()).unwrap();
    assert_eq!(in_memory.encode(text).unwrap(), ids);
    let framed = trained.encode(text, true).unwrap();
    let framed: Vec<i64> = framed.get_ids().iter().map(|&id| i64::from(id)).collect();
    assert_eq!(framed, ids[..8]);

    // A shorter context truncates and keeps end-of-text.
    let short = tokenizer.with_context_length(4).unwrap();
    let ids = short.encode(text).unwrap();
    assert_eq!((ids.len(), ids[0], ids[3]), (4, sot, eot));
}

#[test]
fn pipeline_and_byte_vocabulary_match_openai_clip() {
    let trained = train(&captions(100), &TokenizerTrainConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    save_tokenizer(&trained, &path, Overwrite::Refuse).unwrap();
    let ours = json_file(&path);
    let clip = json_file(Path::new(CLIP_TOKENIZER));

    for section in [
        "normalizer",
        "pre_tokenizer",
        "decoder",
        "truncation",
        "padding",
    ] {
        assert_eq!(ours[section], clip[section], "{section}");
    }
    for field in [
        "type",
        "dropout",
        "unk_token",
        "continuing_subword_prefix",
        "end_of_word_suffix",
        "fuse_unk",
        "byte_fallback",
        "ignore_merges",
    ] {
        assert_eq!(ours["model"][field], clip["model"][field], "model.{field}");
    }

    // Same post-processor and added tokens up to the ids of the two special tokens.
    let ours_vocab = ours["model"]["vocab"].as_object().unwrap();
    let n = ours_vocab.len() as u64;
    let mut post = clip["post_processor"].clone();
    post["cls"][1] = (n - 2).into();
    post["sep"][1] = (n - 1).into();
    assert_eq!(ours["post_processor"], post);
    let mut added = clip["added_tokens"].clone();
    added[0]["id"] = (n - 2).into();
    added[1]["id"] = (n - 1).into();
    assert_eq!(ours["added_tokens"], added);
    assert_eq!(ours_vocab[START_OF_TEXT], n - 2);
    assert_eq!(ours_vocab[END_OF_TEXT], n - 1);

    // Ids 0..512 are CLIP's: the byte symbols, then the same with `</w>`.
    let clip_vocab = clip["model"]["vocab"].as_object().unwrap();
    let symbols = byte_symbols();
    assert_eq!(symbols.len(), 256);
    for (i, c) in symbols.iter().enumerate() {
        for (token, id) in [(c.to_string(), i), (format!("{c}</w>"), 256 + i)] {
            assert_eq!(ours_vocab[&token], id as u64, "{token}");
            assert_eq!(clip_vocab[&token], id as u64, "{token}");
        }
    }
    // Ids are dense: 0..n, each once.
    let ids: BTreeSet<u64> = ours_vocab.values().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ids, (0..n).collect());
    // Every merge builds a token of the vocabulary.
    for merge in ours["model"]["merges"].as_array().unwrap() {
        let (a, b) = (merge[0].as_str().unwrap(), merge[1].as_str().unwrap());
        assert!(ours_vocab.contains_key(&format!("{a}{b}")), "{a} {b}");
    }
}

#[test]
fn training_is_deterministic() {
    let texts = captions(300);
    let config = TokenizerTrainConfig::default();
    let path = Path::new("tokenizer.json");
    let first = tokenizer_json(&train(&texts, &config), path).unwrap();
    for _ in 0..3 {
        let again = tokenizer_json(&train(&texts, &config), path).unwrap();
        assert!(first == again, "two trainings on the same texts differ");
    }
    // The saved file is that text.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("tokenizer.json");
    save_tokenizer(&train(&texts, &config), &saved, Overwrite::Refuse).unwrap();
    assert!(std::fs::read_to_string(&saved).unwrap() == first);
}

#[test]
fn vocab_size_caps_the_vocabulary() {
    let texts = captions(300);
    let config = TokenizerTrainConfig {
        vocab_size: 530,
        min_frequency: 1,
    };
    let tokenizer = ClipTokenizer::from_tokenizer(train(&texts, &config)).unwrap();
    assert_eq!(tokenizer.vocab_size(), 530);
    assert_eq!(tokenizer.eot_id(), 529);
    // Still round-trips, with more tokens per word.
    let text = &texts[0];
    assert_eq!(
        &tokenizer.decode(&tokenizer.encode(text).unwrap()).unwrap(),
        text
    );

    // No texts: just the byte symbols and the special tokens.
    let empty = train_clip_tokenizer(std::iter::empty::<&str>(), &config).unwrap();
    let empty = ClipTokenizer::from_tokenizer(empty).unwrap();
    assert_eq!(empty.vocab_size(), 514);
    assert_eq!(empty.decode(&empty.encode("Dog").unwrap()).unwrap(), "dog");
}

#[test]
fn bad_vocab_size_is_an_error_naming_the_field() {
    for vocab_size in [0, 258, 513, (1 << 20) + 1] {
        let config = TokenizerTrainConfig {
            vocab_size,
            ..TokenizerTrainConfig::default()
        };
        let error = train_clip_tokenizer(["a cat"].iter(), &config).unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidSetting {
                    setting: "vocab_size",
                    ..
                }
            ),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("vocab_size") && message.contains(&vocab_size.to_string()),
            "{message}"
        );
    }
    assert!(TokenizerTrainConfig::default().validate().is_ok());
    let minimal = TokenizerTrainConfig {
        vocab_size: 514,
        min_frequency: 0,
    };
    assert!(train_clip_tokenizer(["a cat"].iter(), &minimal).is_ok());
}

#[test]
fn save_refuses_to_overwrite_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "keep me").unwrap();
    let trained = train(&captions(20), &TokenizerTrainConfig::default());
    let error = save_tokenizer(&trained, &path, Overwrite::Refuse).unwrap_err();
    assert!(matches!(error, Error::AlreadyExists { .. }), "{error:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    save_tokenizer(&trained, &path, Overwrite::Allow).unwrap();
    assert!(ClipTokenizer::from_file(&path).is_ok());
    // Only the file itself is left in the folder (no temporary files).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let missing = dir.path().join("no/such/dir/tokenizer.json");
    let error = save_tokenizer(&trained, &missing, Overwrite::Refuse).unwrap_err();
    assert!(error.to_string().contains("no/such/dir"), "{error}");
}

#[test]
fn decode_matches_clip_on_the_openai_vocabulary() {
    let tokenizer = ClipTokenizer::from_file(CLIP_TOKENIZER).unwrap();
    let ids = tokenizer.encode("A photo of  a CAT.").unwrap();
    assert_eq!(tokenizer.decode(&ids).unwrap(), "a photo of a cat .");
    // Special-token text inside the caption is skipped, as transformers does.
    let ids = tokenizer.encode("<|endoftext|> hi").unwrap();
    assert_eq!(tokenizer.decode(&ids).unwrap(), "hi");
    // Whatever the padding, what follows the last end-of-text is dropped.
    for padding in [Padding::Zero, Padding::Id(320), Padding::EndOfText] {
        let padded = tokenizer.clone().with_padding(padding);
        let ids = padded.encode("Two dogs").unwrap();
        assert_eq!(padded.decode(&ids).unwrap(), "two dogs", "{padding:?}");
    }
    // Content ids alone decode too.
    let ids = tokenizer.encode("a cat").unwrap();
    assert_eq!(tokenizer.decode(&ids[1..3]).unwrap(), "a cat");
    let error = tokenizer.decode(&[49408]).unwrap_err();
    assert!(
        matches!(error, Error::UnknownTokenId { id: 49408, .. }),
        "{error:?}"
    );
    assert!(tokenizer.decode(&[-1]).is_err());
}
