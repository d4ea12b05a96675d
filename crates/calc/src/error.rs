//! Errors of the expression language. Every failure is a value, never a panic.

/// What kind of failure happened; stable for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The expression does not follow the grammar.
    Parse,
    /// The expression refers to names that no statement defines.
    UndefinedName,
    /// The statement is part of a cycle of definitions.
    Cycle,
    /// The name is defined by two statements with different expressions.
    DuplicateDefinition,
    /// A name the statement refers to failed.
    DependencyFailed,
    /// Division (or `//`, `%`, a negative power) by zero.
    DivisionByZero,
    /// A value outgrew the exact range (numerator or denominator above 10^36).
    Overflow,
    /// A function the language does not have.
    UnknownFunction,
    /// A function got the wrong number or kind of arguments.
    BadArguments,
    /// A power whose exponent is not an integer.
    NonIntegerExponent,
    /// `sqrt` of a number that is not a perfect square of a rational.
    InexactSqrt,
    /// An input or exponent limit was exceeded (see the `MAX_*` constants).
    LimitExceeded,
}

/// An evaluation or parse failure, with what is needed to tell the model how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    /// The expression does not follow the grammar; `column` is 1-based, in characters of the
    /// line the expression came from.
    #[error("parse error at column {column}: {message}")]
    Parse { column: usize, message: String },
    /// The expression refers to names that are not defined.
    #[error("undefined name{}: {}", if .names.len() == 1 { "" } else { "s" }, .names.join(", "))]
    UndefinedName { names: Vec<String> },
    /// The names form a cycle; the first name is repeated at the end (`a -> b -> a`).
    #[error("cycle: {}", .cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
    /// The name is defined twice with different expressions.
    #[error("`{name}` is defined twice, on lines {first_line} and {second_line}")]
    DuplicateDefinition {
        name: String,
        first_line: usize,
        second_line: usize,
    },
    /// Names the statement uses failed, so it was not evaluated.
    #[error("depends on failed {}", .names.join(", "))]
    DependencyFailed { names: Vec<String> },
    #[error("division by zero")]
    DivisionByZero,
    #[error(
        "number too large: exact values are limited to 36 digits in numerator and denominator"
    )]
    Overflow,
    #[error(
        "unsupported function `{name}` (available: {})",
        crate::expr::FUNCTION_NAMES
    )]
    UnknownFunction { name: String },
    #[error("{function}: {message}")]
    BadArguments { function: String, message: String },
    #[error("exponent {exponent} is not an integer (only integer powers are exact; use sqrt for square roots)")]
    NonIntegerExponent { exponent: String },
    #[error("sqrt({value}) is not exact")]
    InexactSqrt { value: String },
    #[error("limit exceeded: {message}")]
    LimitExceeded { message: String },
}

impl CalcError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Parse { .. } => ErrorKind::Parse,
            Self::UndefinedName { .. } => ErrorKind::UndefinedName,
            Self::Cycle { .. } => ErrorKind::Cycle,
            Self::DuplicateDefinition { .. } => ErrorKind::DuplicateDefinition,
            Self::DependencyFailed { .. } => ErrorKind::DependencyFailed,
            Self::DivisionByZero => ErrorKind::DivisionByZero,
            Self::Overflow => ErrorKind::Overflow,
            Self::UnknownFunction { .. } => ErrorKind::UnknownFunction,
            Self::BadArguments { .. } => ErrorKind::BadArguments,
            Self::NonIntegerExponent { .. } => ErrorKind::NonIntegerExponent,
            Self::InexactSqrt { .. } => ErrorKind::InexactSqrt,
            Self::LimitExceeded { .. } => ErrorKind::LimitExceeded,
        }
    }

    pub(crate) fn parse(column: usize, message: impl Into<String>) -> Self {
        Self::Parse {
            column,
            message: message.into(),
        }
    }

    pub(crate) fn limit(message: impl Into<String>) -> Self {
        Self::LimitExceeded {
            message: message.into(),
        }
    }

    pub(crate) fn bad_args(function: &str, message: impl Into<String>) -> Self {
        Self::BadArguments {
            function: function.to_string(),
            message: message.into(),
        }
    }
}
