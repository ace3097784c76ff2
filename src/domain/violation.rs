//! Field-level validation failures, gathered so a caller learns every bad field at once.

use std::fmt;

/// One field that failed validation, named by its path in the request (`article.title`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `article.authors[2]`.
    pub field: String,
    /// What is wrong with it, in words a partner developer understands.
    pub description: String,
}

/// Every field violation found in one input; never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records that `field` is invalid because of `description`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// A single violation.
    pub fn one(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut violations = Self::default();
        violations.add(field, description);
        violations
    }

    /// Adds every violation of `other`, after these.
    pub fn extend(&mut self, other: Violations) {
        self.0.extend(other.0);
    }

    /// Both values, or every violation of either: a request checked field by field is
    /// answered with all its bad fields at once, not the first alone.
    pub fn both<A, B>(a: Result<A, Self>, b: Result<B, Self>) -> Result<(A, B), Self> {
        match (a, b) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            (a, b) => {
                let mut all = Self::default();
                all.extend(a.err().unwrap_or_default());
                all.extend(b.err().unwrap_or_default());
                Err(all)
            }
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The recorded violations, in the order found.
    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.0.iter()
    }

    /// Keeps the value when no violation was recorded, else returns them all.
    pub fn into_result<T>(self, value: T) -> Result<T, Self> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}
