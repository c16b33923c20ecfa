//! The errors services report; the API turns them into HTTP answers, the CLI into
//! messages and exit codes.

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input that breaks a rule; `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{what} not found")]
    NotFound { what: String },
    /// The request clashes with current state (duplicate number, last admin, …).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        /// The request field that clashes, when one does (`number` for a duplicate).
        field: Option<&'static str>,
    },
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    Unauthorized {
        code: &'static str,
        message: String,
        /// The request field that was wrong (`code` for a second factor), when one was.
        field: Option<&'static str>,
    },
    #[error("database error: {0}")]
    Store(#[from] sqlx::Error),
    /// Reading or writing a file under `data_dir` failed (logged where it happened).
    #[error("{0}")]
    Files(String),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn conflict_on(
        code: &'static str,
        field: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            field: Some(field),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }
}
