//! Workarounds for two bugs of `tokenizers` 1.0.0-rc.3 that break CLIP's `tokenizer.json`.
//!
//! 1. **Regex `Split`s are never compiled.** The JSON reader (`tk-serialize`,
//!    `from_json/pre_tokenizers.rs::read_split`) builds every `Split` with `Split::native`, which
//!    only works for the GPT-family patterns its state machine recognises. Any other regex —
//!    CLIP's `<\|startoftext\|>|…|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` among them — loads, then
//!    fails at the first `encode` ("this `Split` pattern needs a system-regex backend"), even
//!    with the `regex` feature on. [`compiled_pre_tokenizer`] rebuilds those splits with
//!    `Split::new`, which compiles them with the `fancy-regex` backend.
//! 2. **Single-atom words lose the end-of-word suffix.** `PipelineBPE::prove_fold`
//!    (`models/bpe/model.rs`) marks every one-atom vocabulary entry as "its own encoding", so a
//!    one-byte word such as `a`, `.` or `7` comes out as the bare atom (`a`, id 64) instead of
//!    `a</w>` (id 320) that BPE with `end_of_word_suffix` produces. [`SingleAtomWords`] gives the
//!    right id for those words; multi-atom words go through the merge loop, which is correct.
//!
//! Because of (2) [`crate::ClipTokenizer`] runs the pipeline stages itself (special tokens,
//! normalizers, pre-tokenizer, model) instead of calling `PipelineTokenizer::encode`. Remove this
//! module, and that loop, once a `tokenizers` release fixes both.

use std::collections::HashMap;

use serde_json::Value;
use tokenizers::SplitDelimiterBehavior;
use tokenizers::pipeline::PipelinePreTokenizer;
use tokenizers::pre_tokenizers::sequence::PipelineSequence;
use tokenizers::pre_tokenizers::split::{Search, Split, SplitPattern};

/// A copy of `pre` in which every regex `Split` that cannot run is compiled.
pub(crate) fn compiled_pre_tokenizer(
    pre: &PipelinePreTokenizer,
) -> Result<PipelinePreTokenizer, tokenizers::Error> {
    Ok(match pre {
        PipelinePreTokenizer::Split(split) if is_uncompiled(split) => PipelinePreTokenizer::Split(
            Split::new(split.pattern.clone(), split.behavior, split.invert)?,
        ),
        PipelinePreTokenizer::Sequence(seq) => PipelinePreTokenizer::Sequence(
            PipelineSequence::new(
                seq.pre_tokenizers()
                    .iter()
                    .map(compiled_pre_tokenizer)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        ),
        other => other.clone(),
    })
}

/// A `Split` that can only split through a regex engine it was never given.
fn is_uncompiled(split: &Split) -> bool {
    let native_route = split.grammar().is_some()
        && !split.invert
        && split.behavior == SplitDelimiterBehavior::Isolated;
    matches!(split.search, Search::Unavailable)
        && matches!(split.pattern, SplitPattern::Regex(_))
        && !native_route
}

/// The correct ids of one-atom words for a BPE model with an end-of-word suffix.
#[derive(Debug, Clone)]
pub(crate) struct SingleAtomWords {
    byte_level: bool,
    /// Atom (as spelled in the vocabulary) → id of `atom + suffix`.
    ids: HashMap<String, u32>,
}

impl SingleAtomWords {
    /// Reads the model section of a (canonical or legacy) `tokenizer.json`; `None` when the
    /// model is not a BPE with a non-empty `end_of_word_suffix`.
    pub(crate) fn from_doc(doc: &Value) -> Option<Self> {
        let model = doc.get("model")?;
        if model.get("type").and_then(Value::as_str).is_some_and(|t| t != "BPE") {
            return None;
        }
        let suffix = model
            .get("end_of_word_suffix")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())?;
        let byte_level = model.get("byte_level").and_then(Value::as_bool).unwrap_or(false)
            || has_byte_level_pre_tokenizer(doc.get("pre_tokenizer"));
        let ids = model
            .get("vocab")?
            .as_object()?
            .iter()
            .filter_map(|(token, id)| {
                let stem = token.strip_suffix(suffix)?;
                let mut chars = stem.chars();
                let (Some(_), None) = (chars.next(), chars.next()) else {
                    return None;
                };
                Some((stem.to_owned(), u32::try_from(id.as_u64()?).ok()?))
            })
            .collect();
        Some(Self { byte_level, ids })
    }

    /// The id of `word + suffix` if `word` is a single atom (one byte for byte-level models,
    /// one character otherwise) and that token exists.
    pub(crate) fn id(&self, word: &str) -> Option<u32> {
        let mut buf = [0u8; 4];
        let atom: &str = if self.byte_level {
            match word.as_bytes() {
                &[b] => byte_to_unicode(b).encode_utf8(&mut buf),
                _ => return None,
            }
        } else {
            let mut chars = word.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c.encode_utf8(&mut buf),
                _ => return None,
            }
        };
        self.ids.get(atom).copied()
    }
}

/// Whether a legacy `pre_tokenizer` (before canonicalisation) contains a `ByteLevel` step.
fn has_byte_level_pre_tokenizer(pre: Option<&Value>) -> bool {
    let Some(pre) = pre else { return false };
    match pre.get("type").and_then(Value::as_str) {
        Some("ByteLevel") => true,
        Some("Sequence") => pre
            .get("pretokenizers")
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(|p| has_byte_level_pre_tokenizer(Some(p)))),
        _ => false,
    }
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other 68 bytes to
/// `U+0100 + n` in increasing byte order.
fn byte_to_unicode(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(0x100 + n).unwrap_or(char::REPLACEMENT_CHARACTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_unicode_matches_gpt2_table() {
        assert_eq!(byte_to_unicode(b'a'), 'a');
        assert_eq!(byte_to_unicode(b' '), 'Ġ'); // U+0120
        assert_eq!(byte_to_unicode(0), 'Ā'); // U+0100
        assert_eq!(byte_to_unicode(b'\n'), 'Ċ'); // U+010A
        assert_eq!(byte_to_unicode(0x7F), 'ġ'); // U+0121
        assert_eq!(byte_to_unicode(0xAD), 'Ń'); // U+0143
        assert_eq!(byte_to_unicode(0xFF), 'ÿ');
    }

    #[test]
    fn single_atom_lookup_needs_a_suffix_model() {
        let doc = serde_json::json!({"model": {"type": "BPE", "end_of_word_suffix": "</w>",
            "vocab": {"a": 0, "a</w>": 1, "ab</w>": 2, "Ġ</w>": 3}},
            "pre_tokenizer": {"type": "ByteLevel"}});
        let words = SingleAtomWords::from_doc(&doc).unwrap();
        assert_eq!(words.id("a"), Some(1));
        assert_eq!(words.id(" "), Some(3));
        assert_eq!(words.id("ab"), None);
        let no_suffix = serde_json::json!({"model": {"type": "BPE", "vocab": {"a": 0}}});
        assert!(SingleAtomWords::from_doc(&no_suffix).is_none());
    }
}
