//! [`Captions`]: an image-caption list read from JSON Lines or CSV.
//!
//! - **JSON Lines** (`.jsonl`, `.ndjson`): one object per line with the image path under `"path"`
//!   (or `"image"`) and the caption under `"caption"` (or `"text"`); other keys are ignored, blank
//!   lines are skipped.
//! - **CSV** (`.csv`): a header row naming a `path` (or `image`) column and a `caption` (or
//!   `text`) column, then one row per image; RFC 4180 quoting (`"a, ""quoted"" caption"`, line
//!   breaks inside quotes) is handled by a small parser here; blank lines are skipped.
//!
//! Relative image paths are joined with the image root given to [`Captions::open`]. Every error
//! names the file and the 1-based line (the line where a CSV record starts).

use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dataset::base::{CaptionedImage, ValidateImages, get_item};
use crate::error::{Error, Result};
use crate::json;

const PATH_KEYS: [&str; 2] = ["path", "image"];
const CAPTION_KEYS: [&str; 2] = ["caption", "text"];

/// The layout of a caption file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptionFormat {
    /// One JSON object per line.
    JsonLines,
    /// Comma-separated values with a header row.
    Csv,
}

impl CaptionFormat {
    /// The format for a file extension: `jsonl` / `ndjson` or `csv` (case-insensitive).
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|ext| ext.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("jsonl" | "ndjson") => Ok(Self::JsonLines),
            Some("csv") => Ok(Self::Csv),
            other => Err(Error::DataFormat {
                path: path.to_path_buf(),
                location: "file name".into(),
                expected: "a .jsonl, .ndjson or .csv extension".into(),
                found: format!("{:?}", other.unwrap_or("no extension")),
            }),
        }
    }
}

/// An image-caption list; see the module docs.
#[derive(Debug, Clone)]
pub struct Captions {
    file: PathBuf,
    items: Vec<CaptionedImage>,
}

impl Captions {
    /// Reads `file`, choosing the format from its extension ([`CaptionFormat::from_path`]).
    pub fn open(file: impl AsRef<Path>, image_root: impl AsRef<Path>) -> Result<Self> {
        let file = file.as_ref();
        Self::open_with_format(file, image_root, CaptionFormat::from_path(file)?)
    }

    /// Reads `file` as `format`.
    pub fn open_with_format(
        file: impl AsRef<Path>,
        image_root: impl AsRef<Path>,
        format: CaptionFormat,
    ) -> Result<Self> {
        let file = file.as_ref().to_path_buf();
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        let rows = match format {
            CaptionFormat::JsonLines => parse_jsonl(&file, &text)?,
            CaptionFormat::Csv => parse_csv(&file, &text)?,
        };
        let image_root = image_root.as_ref();
        let items = rows
            .into_iter()
            .map(|(path, caption)| CaptionedImage {
                path: image_root.join(path),
                caption,
            })
            .collect();
        Ok(Self { file, items })
    }

    /// The caption file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The entries, in file order.
    pub fn items(&self) -> &[CaptionedImage] {
        &self.items
    }
}

impl ValidateImages for Captions {
    type Item = CaptionedImage;

    fn image_items(&self) -> &[CaptionedImage] {
        &self.items
    }

    fn image_items_mut(&mut self) -> &mut Vec<CaptionedImage> {
        &mut self.items
    }
}

impl Dataset<CaptionedImage> for Captions {
    fn get(&self, index: usize) -> std::result::Result<CaptionedImage, DatasetError> {
        get_item(&self.items, index)
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

fn format_error(file: &Path, location: String, expected: &str, found: String) -> Error {
    Error::DataFormat {
        path: file.to_path_buf(),
        location,
        expected: expected.to_string(),
        found,
    }
}

fn parse_jsonl(file: &Path, text: &str) -> Result<Vec<(String, String)>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|error| {
            format_error(
                file,
                format!("line {line_no}"),
                "a JSON object",
                format!("invalid JSON ({error})"),
            )
        })?;
        let Value::Object(object) = &value else {
            return Err(format_error(
                file,
                format!("line {line_no}"),
                "a JSON object",
                json::short(&value),
            ));
        };
        let field = |keys: [&str; 2]| -> Result<String> {
            let Some((key, value)) = keys
                .iter()
                .find_map(|key| object.get(*key).map(|value| (*key, value)))
            else {
                return Err(format_error(
                    file,
                    format!("line {line_no}"),
                    &format!("a `{}` (or `{}`) key", keys[0], keys[1]),
                    json::short(&value),
                ));
            };
            match value {
                Value::String(text) => Ok(text.clone()),
                other => Err(format_error(
                    file,
                    format!("line {line_no}, key `{key}`"),
                    "a string",
                    json::short(other),
                )),
            }
        };
        let path = field(PATH_KEYS)?;
        let caption = field(CAPTION_KEYS)?;
        rows.push((path, caption));
    }
    Ok(rows)
}

/// Splits CSV text into records of fields, each with the 1-based line it starts on.
fn csv_records(file: &Path, text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start_line = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted_field = false;
        loop {
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if field.is_empty() && !quoted_field => {
                    quoted_field = true;
                    let quote_line = line;
                    loop {
                        match chars.next() {
                            None => {
                                return Err(format_error(
                                    file,
                                    format!("line {quote_line}"),
                                    "a closing quote",
                                    "the end of the file".into(),
                                ));
                            }
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                    match chars.peek() {
                        None | Some(',' | '\n' | '\r') => {}
                        Some(c) => {
                            return Err(format_error(
                                file,
                                format!("line {line}"),
                                "a comma or line end after a closing quote",
                                format!("{c:?}"),
                            ));
                        }
                    }
                }
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted_field = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some(c) => field.push(c),
            }
        }
        let blank = fields.len() == 1 && fields[0].is_empty() && !quoted_field;
        if !blank {
            records.push((start_line, fields));
        }
    }
    Ok(records)
}

fn parse_csv(file: &Path, text: &str) -> Result<Vec<(String, String)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = csv_records(file, text)?;
    let Some(((header_line, header), rows)) = records.split_first() else {
        return Err(Error::EmptyDataset {
            path: file.to_path_buf(),
            what: "header row",
        });
    };
    let column = |keys: [&str; 2]| -> Result<usize> {
        header
            .iter()
            .position(|name| keys.contains(&name.trim()))
            .ok_or_else(|| {
                format_error(
                    file,
                    format!("line {header_line} (header)"),
                    &format!("a `{}` (or `{}`) column", keys[0], keys[1]),
                    format!("{header:?}"),
                )
            })
    };
    let path_column = column(PATH_KEYS)?;
    let caption_column = column(CAPTION_KEYS)?;
    rows.iter()
        .map(|(line, fields)| {
            if fields.len() != header.len() {
                return Err(format_error(
                    file,
                    format!("line {line}"),
                    &format!("{} fields like the header", header.len()),
                    format!("{} fields", fields.len()),
                ));
            }
            Ok((fields[path_column].clone(), fields[caption_column].clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(usize, Vec<String>)> {
        csv_records(Path::new("t.csv"), text).unwrap()
    }

    #[test]
    fn csv_quotes_commas_and_line_breaks() {
        let got =
            records("path,caption\r\na.png,\"a cat, \"\"sitting\"\"\non a mat\"\n\nb.png,dog\n");
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1],
            (
                2,
                vec!["a.png".into(), "a cat, \"sitting\"\non a mat".into()]
            )
        );
        assert_eq!(got[2], (5, vec!["b.png".into(), "dog".into()]));
    }

    #[test]
    fn csv_unclosed_quote_names_its_line() {
        let error = csv_records(Path::new("t.csv"), "path,caption\na.png,\"open\n").unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn csv_empty_quoted_field_is_a_field() {
        assert_eq!(records("\"\"\n"), vec![(1, vec![String::new()])]);
    }
}
