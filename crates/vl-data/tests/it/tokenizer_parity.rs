//! Token-id parity with transformers' `CLIPTokenizerFast` and open_clip's `tokenize`.
//!
//! Fixtures: `tests/fixtures/clip_tokenizer/` (CLIP's `tokenizer.json` and
//! `tokenizer_config.json`) and `tests/fixtures/tokenizer_cases.json` (texts with the ids both
//! Python tokenizers gave, written by `tests/fixtures/make_fixtures.py`).

use std::path::PathBuf;

use serde::Deserialize;
use vl_data::{ClipTokenizer, Padding};

#[derive(Deserialize)]
struct Cases {
    context_length: usize,
    bos: u32,
    eos: u32,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    hf_ids: Vec<i64>,
    open_clip_ids: Vec<i64>,
    agree: bool,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases() -> Cases {
    let text = std::fs::read_to_string(fixtures().join("tokenizer_cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn ids_equal_hf_clip_tokenizer_fast_for_every_case() {
    let cases = cases();
    let tok = ClipTokenizer::from_dir(fixtures().join("clip_tokenizer")).unwrap();
    assert_eq!(tok.context_length(), cases.context_length);
    assert_eq!((tok.sot_id(), tok.eot_id()), (cases.bos, cases.eos));
    assert_eq!(tok.vocab_size(), 49408);
    assert_eq!(tok.padding(), Padding::EndOfText);

    let texts: Vec<&str> = cases.cases.iter().map(|c| c.text.as_str()).collect();
    let batch = tok.encode_batch(&texts).unwrap();
    let mut mismatches = Vec::new();
    for (i, case) in cases.cases.iter().enumerate() {
        let single = tok.encode(&case.text).unwrap();
        assert_eq!(
            batch.row(i).unwrap(),
            single.as_slice(),
            "batch vs single: {:?}",
            case.text
        );
        if single != case.hf_ids {
            mismatches.push(format!(
                "{:?}\n  ours {:?}\n  hf   {:?}",
                case.text, single, case.hf_ids
            ));
        }
    }
    println!(
        "tokenizer parity: {} / {} cases equal hf_ids",
        cases.cases.len() - mismatches.len(),
        cases.cases.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn zero_padding_equals_open_clip_where_tokenizers_agree() {
    let cases = cases();
    let tok = ClipTokenizer::from_file(fixtures().join("clip_tokenizer/tokenizer.json"))
        .unwrap()
        .with_padding(Padding::Zero);
    let mut checked = 0;
    for case in cases.cases.iter().filter(|c| c.agree) {
        assert_eq!(
            tok.encode(&case.text).unwrap(),
            case.open_clip_ids,
            "{:?}",
            case.text
        );
        checked += 1;
    }
    println!("open_clip parity: {checked} agreeing cases equal open_clip_ids");
    assert!(checked >= 300, "only {checked} agreeing cases");
}

#[test]
fn truncation_keeps_end_of_text_on_long_captions() {
    let cases = cases();
    let eos = i64::from(cases.eos);
    let tok = ClipTokenizer::from_file(fixtures().join("clip_tokenizer/tokenizer.json")).unwrap();
    // Rows filled to the last position: end-of-text last, no padding before it.
    let full: Vec<&Case> = cases
        .cases
        .iter()
        .filter(|c| c.hf_ids.len() == 77 && c.hf_ids[76] == eos && c.hf_ids[75] != eos)
        .collect();
    assert!(full.len() >= 8, "only {} full-length cases", full.len());
    for case in full {
        let ids = tok.encode(&case.text).unwrap();
        assert_eq!(ids[76], eos, "{:?}", case.text);
        assert_eq!(ids, case.hf_ids, "{:?}", case.text);
    }
}
