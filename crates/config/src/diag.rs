//! Diagnostics: errors and warnings that name the file, where in it, and what was
//! expected.

use std::fmt;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The input is used, but something in it is ignored or suspicious.
    Warning,
    /// The input cannot be used.
    Error,
}

/// Where in a file a diagnostic points.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// The file as a whole.
    File,
    /// A syntax error at a line and column (both 1-based).
    Position { line: usize, column: usize },
    /// A field path such as `workloads[0].tiers[1].start.order` or
    /// `TierSpecification[ExampleTestCase/Role_Web].TierStart.TierSequence`.
    Field(String),
}

/// One error or warning about an input file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        match &self.location {
            Location::File => write!(f, "{}: {sev}: {}", self.file, self.message),
            Location::Position { line, column } => {
                write!(f, "{}:{line}:{column}: {sev}: {}", self.file, self.message)
            }
            Location::Field(path) => {
                write!(f, "{}: {sev}: {path}: {}", self.file, self.message)
            }
        }
    }
}

/// All the errors (and warnings) found in a set of inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The errors, without warnings.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    /// True if any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub(crate) struct Cx {
    pub file: String,
    pub diags: Vec<Diagnostic>,
}

impl Cx {
    pub fn new(file: &str) -> Self {
        Cx {
            file: file.to_string(),
            diags: Vec::new(),
        }
    }

    fn push(&mut self, severity: Severity, location: Location, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity,
            file: self.file.clone(),
            location,
            message: message.into(),
        });
    }

    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, field(path), message);
    }

    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, field(path), message);
    }

    pub fn syntax(&mut self, line: usize, column: usize, message: impl Into<String>) {
        self.push(
            Severity::Error,
            Location::Position { line, column },
            message,
        );
    }

    pub fn file_error(&mut self, message: impl Into<String>) {
        self.push(Severity::Error, Location::File, message);
    }

    pub fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

fn field(path: &str) -> Location {
    if path.is_empty() {
        Location::File
    } else {
        Location::Field(path.to_string())
    }
}
