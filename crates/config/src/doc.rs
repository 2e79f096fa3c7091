//! Parsing text into documents (JSON values) with the checks that a plain
//! `serde_json::Value` does not make.
//!
//! JSON and YAML both go through [`Doc`], one visitor that builds the value directly
//! (no intermediate YAML tree, which matters for memory on large files) and refuses:
//! - a key given twice in one mapping (serde's default keeps the last one silently,
//!   which would let a second `WorkloadFilterTagValue` change what a workload targets);
//! - numbers that are not finite (`.inf`, `.nan`), which JSON cannot hold and which
//!   would otherwise turn into "missing" and so into a default;
//! - YAML tags (`!!python/object`) and mapping keys that are not scalars.
//!
//! Whole numbers too large for 64 bits are kept as floating point numbers, so that
//! the field's range check reports them ("found number 1.8e19") instead of the parser.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::diag::Cx;

/// The largest workload file read, in bytes. Workload definitions are small (the
/// original README's example is 3 kB); the limit keeps a hostile or mistaken input
/// (a fleet dump, a log file) from taking the machine's memory.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;

/// Builds a [`Value`] while checking for duplicate keys, non-finite numbers and tags.
#[derive(Clone, Copy)]
pub(crate) struct Doc;

impl<'de> DeserializeSeed<'de> for Doc {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn float<E: de::Error>(x: f64) -> Result<Value, E> {
    Number::from_f64(x).map(Value::Number).ok_or_else(|| {
        E::custom(format!(
            "the number {x} is not allowed: numbers must be finite"
        ))
    })
}

impl<'de> Visitor<'de> for Doc {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a document")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(n) => Ok(Value::Number(n.into())),
            Err(_) => float(v as f64),
        }
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        match u64::try_from(v) {
            Ok(n) => Ok(Value::Number(n.into())),
            Err(_) => float(v as f64),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        float(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key_seed(Key)? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!(
                    "duplicate key {k:?}: each key may appear once in a mapping"
                )));
            }
            let v = map.next_value_seed(self)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, _rest): (String, _) = data.variant()?;
        Err(de::Error::custom(format!(
            "unsupported YAML tag !{}: write plain values without tags",
            tag.trim_start_matches('!')
        )))
    }
    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not supported"))
    }
}

/// A mapping key: a string, or a number or boolean written out.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom("a mapping key is empty (null): use a string"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<String, A::Error> {
        Err(de::Error::custom("a mapping key is a list: use a string"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<String, A::Error> {
        Err(de::Error::custom(
            "a mapping key is a mapping: use a string",
        ))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, _data: A) -> Result<String, A::Error> {
        Err(de::Error::custom(
            "a mapping key carries a YAML tag: use a plain string",
        ))
    }
}

/// Text without a leading UTF-8 byte-order mark.
pub(crate) fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Whether the text is JSON rather than YAML: its first significant character opens
/// a JSON object or array *and* what follows is JSON (a quoted key or the closing
/// bracket), so that YAML flow mappings such as `{version: 1, workloads: []}` are
/// read as YAML. Leading blank lines and `#` or `//` comment lines are skipped.
pub(crate) fn looks_json(text: &str) -> bool {
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.starts_with('#') || rest.starts_with("//") {
            rest = rest.split_once('\n').map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let mut chars = rest.chars();
    match chars.next() {
        Some('{') => matches!(chars.as_str().trim_start().chars().next(), Some('"' | '}')),
        Some('[') => {
            let after = chars.as_str().trim_start();
            match after.chars().next() {
                // `[{...` and `[[...` decide by the inner bracket.
                Some('{' | '[') => looks_json(after),
                Some(c) => c == ']' || c == '"' || c == '-' || c.is_ascii_digit(),
                None => false,
            }
        }
        _ => false,
    }
}

/// All JSON values in the text, one after another.
pub(crate) fn parse_json(cx: &mut Cx, text: &str) -> Option<Vec<Value>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut out = Vec::new();
    loop {
        // End of input (after white space) ends the stream.
        match de.end() {
            Ok(()) => return Some(out),
            Err(_) => match Doc.deserialize(&mut de) {
                Ok(v) => out.push(v),
                Err(e) => {
                    cx.syntax(e.line(), e.column(), json_message(&e));
                    return None;
                }
            },
        }
    }
}

/// A JSON syntax error's message without serde's own position suffix.
pub(crate) fn json_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    if msg == "trailing comma" {
        "invalid JSON: trailing comma before this closing bracket (JSON allows no comma after the last element)".to_string()
    } else {
        format!("invalid JSON: {msg}")
    }
}

/// The tags of YAML's core schema, which only say how to read a scalar or collection.
const CORE_TAGS: &[&str] = &["str", "int", "float", "bool", "null", "seq", "map"];

/// The first `!!` tag outside the core schema, with its line and column (1-based).
///
/// The YAML parser resolves `!!name` to `tag:yaml.org,2002:name` and then ignores
/// the tags it does not know, so `!!python/object:os.system {...}` would arrive as a
/// plain mapping. The text is scanned for them instead: a tag is a token that starts
/// with `!` (no plain scalar can), outside quotes and comments.
fn global_tag(text: &str) -> Option<(usize, usize, String)> {
    for (n, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut quote: Option<char> = None;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let prev = if i == 0 { ' ' } else { chars[i - 1] };
            let token_start = prev.is_whitespace() || "[{,:-?".contains(prev);
            match quote {
                Some('"') if c == '\\' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '#' && prev.is_whitespace() => break,
                None if (c == '"' || c == '\'') && token_start => quote = Some(c),
                None if c == '!' && token_start && chars.get(i + 1) == Some(&'!') => {
                    let tag: String = chars[i + 2..]
                        .iter()
                        .take_while(|c| !c.is_whitespace() && !",[]{}".contains(**c))
                        .collect();
                    if !CORE_TAGS.contains(&tag.as_str()) {
                        return Some((n + 1, i + 1, tag));
                    }
                }
                None => {}
            }
            i += 1;
        }
    }
    None
}

/// All YAML documents in the text (empty documents are left out).
pub(crate) fn parse_yaml(cx: &mut Cx, text: &str) -> Option<Vec<Value>> {
    if let Some((line, column, tag)) = global_tag(text) {
        cx.syntax(
            line,
            column,
            format!("invalid YAML: unsupported YAML tag !!{tag}: write plain values without tags"),
        );
        return None;
    }
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        match Doc.deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(v) => out.push(v),
            Err(e) => {
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                match e.location() {
                    Some(l) => cx.syntax(l.line(), l.column(), format!("invalid YAML: {msg}")),
                    None => cx.file_error(format!("invalid YAML: {msg}")),
                }
                return None;
            }
        }
    }
    Some(out)
}

/// Reads bytes as UTF-8 text, or says where the first byte that is not UTF-8 is.
///
/// # Errors
/// A message with the byte offset, line and column of the first invalid byte.
pub fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        // Columns count characters; the prefix is valid UTF-8 by construction.
        let column = std::str::from_utf8(&before[line_start..])
            .map_or(at - line_start, |s| s.chars().count())
            + 1;
        format!(
            "not UTF-8 text: invalid byte 0x{:02X} at byte offset {at} (line {line}, column {column}); save the file as UTF-8",
            bytes[at]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_told_from_yaml_flow_mappings() {
        assert!(looks_json(r#"{"a": 1}"#));
        assert!(looks_json("\n  # note\n// c\n[{\"a\": 1}]"));
        assert!(looks_json("[]"));
        assert!(looks_json("{}"));
        assert!(!looks_json("{version: 1, workloads: []}"));
        assert!(!looks_json("# c\n{version: 1}"));
        assert!(!looks_json("[{a: 1}]"));
        assert!(!looks_json("version: 1"));
        assert!(!looks_json(""));
    }

    #[test]
    fn global_tags_are_found_outside_quotes_and_comments() {
        assert_eq!(
            global_tag("a: 1\nb: !!python/object:os.system {x: 1}"),
            Some((2, 4, "python/object:os.system".into()))
        );
        assert_eq!(global_tag("- !!binary aGk="), Some((1, 3, "binary".into())));
        assert_eq!(global_tag("a: !!str 5\nb: [!!int 3]"), None);
        assert_eq!(global_tag("a: \"x !!y\" # !!z\nb: 'q !!r'\nc: d!!e"), None);
    }

    #[test]
    fn utf8_errors_name_the_offset() {
        assert_eq!(utf8(b"ok").unwrap(), "ok");
        let e = utf8(b"a: 1\nb: \xff\n").unwrap_err();
        assert!(
            e.contains("0xFF at byte offset 8 (line 2, column 4)"),
            "{e}"
        );
    }
}
