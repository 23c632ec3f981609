//! Format versions and the error every reader returns.

use serde::{Deserialize, Serialize};

/// The current version of every format in this crate. A reader accepts any version from 1 up to
/// this one; a newer file is refused with [`FormatError::UnsupportedVersion`].
pub const FORMAT_VERSION: u32 = 1;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FormatError {
    /// The bytes are not valid JSON for the expected type.
    #[error("{what}: invalid JSON ({message})")]
    Json {
        /// What was being read (a file name or a description).
        what: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file has a `format_version` this build cannot read.
    #[error("{what}: format_version {found} is not supported (this viewer reads 1..={supported})")]
    UnsupportedVersion {
        /// What was being read.
        what: String,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The file has no `format_version` field.
    #[error("{what}: no `format_version` field")]
    MissingVersion {
        /// What was being read.
        what: String,
    },
    /// A field holds a value the format does not allow.
    #[error("{what}: {message}")]
    Invalid {
        /// What was being read.
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// A format with a version: checked before the body is deserialised, so that a file from a newer
/// trainer gives a clear error instead of a confusing field error.
pub trait Versioned: Sized + for<'de> Deserialize<'de> + Serialize {
    /// Reads one value from JSON bytes, checking `format_version` first.
    fn from_json(bytes: &[u8], what: &str) -> Result<Self, FormatError> {
        parse_versioned(bytes, what, true)
    }

    /// Writes the value as pretty JSON.
    fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Parses JSON bytes as `T` after checking `format_version`; with `version_required` false a
/// missing version is accepted (lines of JSON-lines formats, where it defaults to the current
/// one), a present one is still checked.
pub fn parse_versioned<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str, version_required: bool) -> Result<T, FormatError> {
    let json_error = |e: serde_json::Error| FormatError::Json { what: what.to_owned(), message: e.to_string() };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(json_error)?;
    if version_required || value.get("format_version").is_some() {
        check_version(&value, what)?;
    }
    serde_json::from_value(value).map_err(json_error)
}

/// Reads a JSON-lines file leniently: every non-blank line is parsed with `parse`; a bad line
/// (e.g. the partial last line of a file being written) is reported as one message
/// (`<what> line N: …`) and skipped. Returns the values in file order and the messages.
pub fn read_json_lines<T>(
    bytes: &[u8],
    what: &str,
    parse: impl Fn(&[u8], &str) -> Result<T, FormatError>,
) -> (Vec<T>, Vec<String>) {
    let (mut values, mut errors) = (Vec::new(), Vec::new());
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse(line, &format!("{what} line {}", i + 1)) {
            Ok(v) => values.push(v),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (values, errors)
}

/// Checks the `format_version` field of a parsed JSON object.
pub fn check_version(value: &serde_json::Value, what: &str) -> Result<u32, FormatError> {
    let Some(v) = value.get("format_version") else {
        return Err(FormatError::MissingVersion {
            what: what.to_owned(),
        });
    };
    let Some(found) = v.as_u64() else {
        return Err(FormatError::Invalid {
            what: what.to_owned(),
            message: format!("`format_version` must be a positive integer, found {v}"),
        });
    };
    let found = u32::try_from(found).unwrap_or(u32::MAX);
    if found == 0 || found > FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            what: what.to_owned(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(found)
}

/// The default for `format_version` fields when a value is built in code.
pub fn current_version() -> u32 {
    FORMAT_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_version_is_refused_with_both_numbers_in_the_message() {
        let v: serde_json::Value = serde_json::json!({"format_version": 7});
        let err = check_version(&v, "x.json").unwrap_err();
        assert_eq!(
            err,
            FormatError::UnsupportedVersion {
                what: "x.json".into(),
                found: 7,
                supported: FORMAT_VERSION
            }
        );
        assert!(err.to_string().contains("format_version 7"));
    }

    #[test]
    fn a_missing_or_non_integer_version_is_an_error() {
        assert!(matches!(
            check_version(&serde_json::json!({}), "a"),
            Err(FormatError::MissingVersion { .. })
        ));
        assert!(matches!(
            check_version(&serde_json::json!({"format_version": "1"}), "a"),
            Err(FormatError::Invalid { .. })
        ));
        assert_eq!(
            check_version(&serde_json::json!({"format_version": 1}), "a"),
            Ok(1)
        );
    }
}
