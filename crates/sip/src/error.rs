//! Why a message was refused, in words fit for a `400` reason phrase or a log line.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bytes are not a SIP message (or one the stack cannot frame).
    Malformed,
    /// A SIP version other than 2.0 (`505`).
    Version,
    /// Larger than the stack accepts (`513`).
    TooLarge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    /// What was wrong, e.g. `To: unbalanced quotes in the display name`.
    pub message: String,
}

impl ParseError {
    pub fn malformed(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Malformed,
            message: message.into(),
        }
    }

    pub(crate) fn in_header(name: &str, message: impl fmt::Display) -> Self {
        Self::malformed(format!("{name}: {message}"))
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}
