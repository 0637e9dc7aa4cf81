//! [`TokenizeCaptions`]: a Burn `Dataset` wrapper that tokenizes each caption when it is fetched,
//! so tokenization runs on the data loader's workers and a caption the tokenizer refuses becomes
//! a `DatasetError` (which the loader reports) instead of a failure inside a batcher, which Burn
//! gives no way to report.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use serde::{Deserialize, Serialize};

use crate::dataset::base::{CaptionedImage, ImageItem};
use crate::tokenizer::ClipTokenizer;

/// A captioned image with its caption's token ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenizedCaption {
    /// The image file.
    pub path: PathBuf,
    /// The caption text, as listed.
    pub caption: String,
    /// [`ClipTokenizer::encode`] of the caption: `context_length` ids framed with start- and
    /// end-of-text and padded.
    pub input_ids: Vec<i64>,
}

impl ImageItem for TokenizedCaption {
    fn image_path(&self) -> &Path {
        &self.path
    }
}

/// Wraps a data set of [`CaptionedImage`]s and tokenizes each caption on `get` with a
/// [`ClipTokenizer`]; wrap the result in [`DecodeImages`](crate::dataset::DecodeImages) to decode
/// the images as well.
#[derive(Debug, Clone)]
pub struct TokenizeCaptions<D> {
    inner: D,
    tokenizer: ClipTokenizer,
    _item: PhantomData<fn() -> CaptionedImage>,
}

impl<D: Dataset<CaptionedImage>> TokenizeCaptions<D> {
    /// Wraps `inner`, tokenizing with `tokenizer` (its context length and padding apply).
    pub fn new(inner: D, tokenizer: ClipTokenizer) -> Self {
        Self {
            inner,
            tokenizer,
            _item: PhantomData,
        }
    }

    /// The wrapped data set.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }
}

impl<D: Dataset<CaptionedImage>> Dataset<TokenizedCaption> for TokenizeCaptions<D> {
    fn get(&self, index: usize) -> Result<TokenizedCaption, DatasetError> {
        let CaptionedImage { path, caption } = self.inner.get(index)?;
        let input_ids = self.tokenizer.encode(&caption).map_err(DatasetError::new)?;
        Ok(TokenizedCaption {
            path,
            caption,
            input_ids,
        })
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}
