//! Everything the command line prints goes through here: one place that makes text
//! safe for a terminal and that treats a closed pipe as the end of the output.
//!
//! Names, ids, tag keys and reasons come from files, stores and clouds that someone
//! else may write. A control character in one of them (`"Bogus\u{1b}[2J"`) must not
//! reach the terminal raw, where it could clear the screen, move the cursor, or hide
//! the text around it. [`sanitize`] writes such characters as visible escapes.
//!
//! `ec2-scheduler status ... | head -1` closes the pipe early; that is not an error:
//! [`out`] reports it as [`CliError::Closed`], which the entry point turns into a
//! quiet exit.

use std::borrow::Cow;
use std::io::{self, Write};

use crate::error::{CliError, Result};

/// Whether a character must not be printed raw: C0 and C1 control characters
/// (except line feed and tab), DEL, and the Unicode controls that reorder or hide
/// text (bidirectional overrides and isolates, zero-width and BOM characters).
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `text` with every unsafe character written as `\u{..}`; borrowed when there is none.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes text for people to standard output, sanitized.
///
/// # Errors
/// [`CliError::Closed`] when the reader went away; other write errors as they are.
pub fn out(text: impl AsRef<str>) -> Result {
    write_stdout(&sanitize(text.as_ref()))
}

/// Writes a document (JSON, YAML) to standard output exactly as given: it is data
/// for a program or a file, and its serializer has already escaped the control
/// characters that the format requires escaped.
///
/// # Errors
/// As [`out`].
pub fn data(text: impl AsRef<str>) -> Result {
    write_stdout(text.as_ref())
}

fn write_stdout(text: &str) -> Result {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(CliError::Closed),
        Err(e) => Err(CliError::Stdout(e)),
    }
}

/// Writes a line to standard error, sanitized. Errors are ignored: there is nowhere
/// left to report them.
pub fn note(text: impl AsRef<str>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr
        .write_all(sanitize(text.as_ref()).as_bytes())
        .and_then(|()| stderr.write_all(b"\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_made_visible() {
        assert_eq!(sanitize("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(sanitize("Bogus\u{1b}[2J"), "Bogus\\u{1b}[2J");
        assert_eq!(sanitize("a\rb\u{7f}c\u{9b}"), "a\\u{d}b\\u{7f}c\\u{9b}");
        assert_eq!(sanitize("x\u{202e}y"), "x\\u{202e}y");
        assert!(matches!(sanitize("ok"), Cow::Borrowed(_)));
    }
}
