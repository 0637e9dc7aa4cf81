//! Small typed accessors over `serde_json::Value` for the foreign config files this crate reads
//! (`preprocessor_config.json`, `open_clip_config.json`, `tokenizer_config.json`).
//!
//! Each accessor takes the file path and the dotted field name, so a wrong type becomes an
//! [`Error::ConfigField`] that names both, with the expected and the found value. A JSON `null`
//! counts as "absent" everywhere, as it does for the Python readers.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Reads and parses a JSON file.
pub(crate) fn read(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The JSON text of `value`, cut to about 60 characters for error messages.
pub(crate) fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 60 {
        text
    } else {
        let mut cut: String = text.chars().take(57).collect();
        cut.push_str("...");
        cut
    }
}

/// One JSON object of a config file, with the file path and the object's dotted prefix kept for
/// error messages.
#[derive(Clone)]
pub(crate) struct Obj<'a> {
    path: &'a Path,
    prefix: String,
    map: &'a serde_json::Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// The root object of a file; any other JSON value is a [`Error::ConfigField`] on `<root>`.
    pub(crate) fn root(path: &'a Path, value: &'a Value) -> Result<Self> {
        match value {
            Value::Object(map) => Ok(Self {
                path,
                prefix: String::new(),
                map,
            }),
            other => Err(Error::ConfigField {
                path: path.to_path_buf(),
                field: "<root>".to_owned(),
                expected: "a JSON object".to_owned(),
                found: short(other),
            }),
        }
    }

    /// The dotted name of `key` inside this object.
    pub(crate) fn field_name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// The value of `key`, with `null` read as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A type error on `key`.
    pub(crate) fn type_error(&self, key: &str, expected: &str, found: &Value) -> Error {
        Error::ConfigField {
            path: self.path.to_path_buf(),
            field: self.field_name(key),
            expected: expected.to_owned(),
            found: short(found),
        }
    }

    /// An unsupported-value error on `key`.
    pub(crate) fn unsupported(&self, key: &str, supported: &str, found: &Value) -> Error {
        Error::UnsupportedConfigValue {
            path: self.path.to_path_buf(),
            field: self.field_name(key),
            expected: supported.to_owned(),
            found: short(found),
        }
    }

    /// A missing-field error on `key`.
    pub(crate) fn missing(&self, key: &str) -> Error {
        Error::MissingConfigField {
            path: self.path.to_path_buf(),
            field: self.field_name(key),
        }
    }

    /// The nested object at `key`.
    pub(crate) fn object(&self, key: &str) -> Result<Option<Self>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Self {
                path: self.path,
                prefix: self.field_name(key),
                map,
            })),
            Some(other) => Err(self.type_error(key, "a JSON object", other)),
        }
    }

    /// A boolean field.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.type_error(key, "true or false", other)),
        }
    }

    /// A string field.
    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.type_error(key, "a string", other)),
        }
    }

    /// A strictly positive integer field that fits in `u32`.
    pub(crate) fn positive_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => positive_u32(v)
                .map(Some)
                .ok_or_else(|| self.type_error(key, "a positive integer", v)),
        }
    }

    /// A finite number field.
    pub(crate) fn number(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => finite(v)
                .map(Some)
                .ok_or_else(|| self.type_error(key, "a number", v)),
        }
    }

    /// A list of exactly three numbers; with `allow_scalar`, a single number stands for all three.
    pub(crate) fn triple(&self, key: &str, allow_scalar: bool) -> Result<Option<[f32; 3]>> {
        let expected = if allow_scalar {
            "a number or a list of 3 numbers"
        } else {
            "a list of 3 numbers"
        };
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) if items.len() == 3 => {
                let mut out = [0f32; 3];
                for (o, item) in out.iter_mut().zip(items) {
                    *o = finite(item).ok_or_else(|| {
                        self.type_error(key, expected, &Value::Array(items.clone()))
                    })? as f32;
                }
                Ok(Some(out))
            }
            Some(v @ Value::Number(_)) if allow_scalar => {
                let x = finite(v).ok_or_else(|| self.type_error(key, expected, v))? as f32;
                Ok(Some([x; 3]))
            }
            Some(other) => Err(self.type_error(key, expected, other)),
        }
    }
}

/// `value` as a strictly positive `u32`, if it is an integral JSON number in range.
pub(crate) fn positive_u32(value: &Value) -> Option<u32> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
}

fn finite(value: &Value) -> Option<f64> {
    value.as_f64().filter(|x| x.is_finite())
}
