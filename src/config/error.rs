//! Configuration errors: [`ValueError`] says why one value is refused; [`ConfigError`] adds
//! which key, what value and where it came from.

use std::path::PathBuf;

use super::Source;

/// Why a value is refused. The messages are the ones users see after the key's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not an integer.
    #[error("expected a whole number")]
    NotInteger,
    /// Not a number.
    #[error("expected a number")]
    NotNumber,
    /// A number outside the key's range.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// Smallest accepted value.
        min: String,
        /// Largest accepted value.
        max: String,
    },
    /// Not `true`/`false` (or `1`/`0`, `yes`/`no`, `on`/`off`).
    #[error("expected true or false")]
    NotBool,
    /// No number at the start of a duration.
    #[error("expected a duration like 500ms, 30s, 2m")]
    NotDuration,
    /// A duration without its unit.
    #[error("missing unit: write e.g. 500ms, 30s, 2m")]
    MissingUnit,
    /// A duration with a unit other than ms, s, m, h.
    #[error("unknown unit {0:?}: use ms, s, m or h")]
    UnknownUnit(String),
    /// A duration below the key's minimum.
    #[error("must be at least {0}ms")]
    TooShort(u128),
    /// A duration over a week.
    #[error("must be at most 7 days")]
    TooLong,
    /// Not of the expected form; says what is expected.
    #[error("expected {0}")]
    Expected(&'static str),
    /// Of the right form but breaking a rule of the key, or of two keys together.
    #[error("{0}")]
    Rule(String),
}

/// A configuration error: which key, what value, from where, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value was refused.
    #[error("config key `{key}` = {value:?} (from {origin}): {reason}")]
    Invalid {
        /// The key, `section.name`.
        key: String,
        /// The raw value as given.
        value: String,
        /// Where it came from.
        origin: Source,
        /// Why it was refused.
        reason: ValueError,
    },
    /// A key that does not exist.
    #[error("unknown config key `{key}` (from {origin}){hint}")]
    Unknown {
        /// The key as given.
        key: String,
        /// Where it came from.
        origin: Source,
        /// A "did you mean" hint, possibly empty.
        hint: String,
    },
    /// The file could not be read or is not TOML.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}
