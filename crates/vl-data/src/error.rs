//! The one error type of `vl-data` and its `Result` alias.
//!
//! Every variant that comes from a file names that file, and every variant that comes from a
//! config field names the field; the underlying error (I/O, JSON, image decoding, tokenizer) is kept
//! as the [`std::error::Error::source`] rather than pasted into the message, so print the whole
//! chain (e.g. with `anyhow`'s `{:#}`) to see it.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while reading tokenizers, configs and images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read (missing, unreadable, not UTF-8 where text is expected).
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A JSON file is not valid JSON.
    #[error("{} is not valid JSON", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },

    /// The `tokenizers` crate refused the `tokenizer.json`.
    #[error("cannot build a tokenizer from {}: {source}", path.display())]
    TokenizerLoad {
        /// The `tokenizer.json`.
        path: PathBuf,
        /// The `tokenizers` crate's error.
        #[source]
        source: tokenizers::Error,
    },

    /// The tokenizer does not know a special token that CLIP needs.
    #[error("tokenizer {} has no {role} token {token:?}", path.display())]
    MissingSpecialToken {
        /// The `tokenizer.json`.
        path: PathBuf,
        /// What the token is for: `"start-of-text"`, `"end-of-text"` or `"padding"`.
        role: &'static str,
        /// The token text that was looked up, e.g. `<|endoftext|>`.
        token: String,
    },

    /// Encoding a text failed inside the `tokenizers` crate.
    #[error("cannot tokenize the text {text:?}")]
    Encode {
        /// The start of the text (at most 64 characters).
        text: String,
        /// The `tokenizers` crate's error.
        #[source]
        source: tokenizers::Error,
    },

    /// Decoding token ids back to text failed inside the `tokenizers` crate.
    #[error("cannot decode {n_ids} token ids")]
    Decode {
        /// How many ids were given.
        n_ids: usize,
        /// The `tokenizers` crate's error.
        #[source]
        source: tokenizers::Error,
    },

    /// A token id is not in the tokenizer's vocabulary.
    #[error("token id {id} is not in the vocabulary (expected 0..{vocab_size})")]
    UnknownTokenId {
        /// The id.
        id: i64,
        /// The vocabulary size.
        vocab_size: usize,
    },

    /// Training a BPE tokenizer failed inside the `tokenizers` crate (reading the texts,
    /// normalising, pre-tokenizing or assembling the trained model).
    #[error("cannot train the BPE tokenizer")]
    TokenizerTrain {
        /// The `tokenizers` crate's error.
        #[source]
        source: tokenizers::Error,
    },

    /// A tokenizer could not be serialized to its `tokenizer.json` text.
    #[error("cannot serialize the tokenizer for {}", path.display())]
    TokenizerSave {
        /// The file it was to be written to.
        path: PathBuf,
        /// The `tokenizers` crate's error.
        #[source]
        source: tokenizers::Error,
    },

    /// A numeric setting is outside the range it must be in.
    #[error("invalid {setting}: expected {expected}, found {found}")]
    InvalidSetting {
        /// The setting, e.g. `context_length` or `crop_height`.
        setting: &'static str,
        /// What was expected, e.g. `at least 2`.
        expected: String,
        /// The value that was given.
        found: String,
    },

    /// A config file has a field of the wrong JSON type or shape.
    #[error("{}: field `{field}` should be {expected}, found {found}", path.display())]
    ConfigField {
        /// The config file.
        path: PathBuf,
        /// The field, dotted from the root, e.g. `crop_size.height`.
        field: String,
        /// What the field should hold, e.g. `a positive integer`.
        expected: String,
        /// What it holds, as JSON (shortened).
        found: String,
    },

    /// A config file has a well-typed field whose value this crate does not support.
    #[error("{}: field `{field}` has the unsupported value {found} (supported: {expected})", path.display())]
    UnsupportedConfigValue {
        /// The config file.
        path: PathBuf,
        /// The field, dotted from the root.
        field: String,
        /// What is supported.
        expected: String,
        /// The value found, as JSON.
        found: String,
    },

    /// A required field is missing from a config file.
    #[error("{}: missing field `{field}`", path.display())]
    MissingConfigField {
        /// The config file.
        path: PathBuf,
        /// The field, dotted from the root.
        field: String,
    },

    /// A file's content is not a PNG, JPEG or WebP image (whatever its extension says).
    #[error("{} is not a PNG, JPEG or WebP image", path.display())]
    UnknownImageFormat {
        /// The file.
        path: PathBuf,
        /// The `image` crate's format-detection error.
        #[source]
        source: image::ImageError,
    },

    /// An image file was recognised but could not be decoded.
    #[error("cannot decode the image {}", path.display())]
    ImageDecode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },

    /// An image has a zero width or height.
    #[error("image {} is empty ({width}x{height})", path.display())]
    EmptyImage {
        /// The file, or `<memory>` for an in-memory image.
        path: PathBuf,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },

    /// Images of different sizes cannot be stacked into one batch (center cropping is off).
    #[error(
        "image {} has size {found:?} after preprocessing, expected {expected:?} like the first image",
        path.display()
    )]
    BatchShapeMismatch {
        /// The offending file.
        path: PathBuf,
        /// `[channels, height, width]` of the first image.
        expected: [usize; 3],
        /// `[channels, height, width]` of this image.
        found: [usize; 3],
    },

    /// A data-set file (split file, caption list) has an entry of the wrong shape or type.
    #[error("{}: {location}: expected {expected}, found {found}", path.display())]
    DataFormat {
        /// The data-set file.
        path: PathBuf,
        /// Where in the file: a JSON path such as `train[3][1]`, or `line 4` (1-based).
        location: String,
        /// What should be there, e.g. `a non-negative integer label`.
        expected: String,
        /// What is there (shortened).
        found: String,
    },

    /// A CoOp split file has no entry for the requested split.
    #[error("{}: missing split `{split}`", path.display())]
    MissingSplit {
        /// The split file.
        path: PathBuf,
        /// The split that was asked for: `train`, `val` or `test`.
        split: &'static str,
    },

    /// A data set has no items (an image folder without class folders or images, an empty list).
    #[error("{} holds no {what}", path.display())]
    EmptyDataset {
        /// The folder or file.
        path: PathBuf,
        /// What was looked for, e.g. `class folders with images`.
        what: &'static str,
    },

    /// An item index is past the end of a data set.
    #[error("index {index} is out of range for a data set of {len} items")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The number of items.
        len: usize,
    },

    /// An item's label is not among the classes a split or mapping knows.
    #[error("label {label} is not one of the {n_known} known classes")]
    UnknownLabel {
        /// The label.
        label: usize,
        /// How many labels the mapping knows.
        n_known: usize,
    },

    /// An output file exists and overwriting it was not allowed.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
}
