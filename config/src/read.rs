//! Typed fields from a parsed TOML document, for the node config and the
//! agent's registries.conf reader.
//!
//! Why not serde: the derived `Deserialize` code instantiated for toml's
//! deserializer was ≈ 60 KB of the static agent (docs/size.md); this reads
//! toml's own spanned tree ([`DeTable`]) with a handful of non-generic
//! functions. The messages keep serde's wording (`unknown field`, `invalid
//! type`, `missing field`), and every one carries the span of the key or value
//! it is about, so callers print `file:line:col`.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A value with its place in the text.
pub type Value<'i> = Spanned<DeValue<'i>>;

/// What is wrong, and where (byte offsets into the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub span: Range<usize>,
    pub message: String,
}

impl ReadError {
    fn new(span: Range<usize>, message: String) -> Self {
        ReadError { span, message }
    }

    /// 1-based line and column of the start of the span in `text`.
    pub fn line_col(&self, text: &str) -> (usize, usize) {
        let before = &text[..self.span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        (line, column)
    }
}

/// Parse `text` into its root table; a syntax error keeps toml's message.
pub fn parse(text: &str) -> Result<Table<'_>, ReadError> {
    match DeTable::parse(text) {
        Ok(t) => {
            let span = t.span();
            Ok(Table {
                table: t.into_inner(),
                span,
            })
        }
        Err(e) => Err(ReadError::new(
            e.span().unwrap_or(0..0),
            e.message().trim_end().replace('\n', " "),
        )),
    }
}

/// One TOML table and where it is.
#[derive(Debug)]
pub struct Table<'i> {
    table: DeTable<'i>,
    span: Range<usize>,
}

/// How serde names a value that has the wrong type.
fn unexpected(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("string \"{}\"", s.escape_debug()),
        DeValue::Integer(i) => format!("integer `{}`", i.as_str()),
        DeValue::Float(f) => format!("floating point `{}`", f.as_str()),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(_) => "datetime".to_string(),
        DeValue::Array(_) => "sequence".to_string(),
        DeValue::Table(_) => "map".to_string(),
    }
}

#[inline(never)]
fn invalid_type(v: &Value<'_>, expected: &str) -> ReadError {
    ReadError::new(
        v.span(),
        format!(
            "invalid type: {}, expected {expected}",
            unexpected(v.get_ref())
        ),
    )
}

/// serde's list of what is allowed: `a`, `a` or `b`, one of `a`, `b`, `c`
/// (every caller allows at least one).
pub fn one_of(allowed: &[&str]) -> String {
    match allowed {
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        many => format!("one of `{}`", many.join("`, `")),
    }
}

/// The string in `v`.
pub fn string(v: &Value<'_>) -> Result<String, ReadError> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(invalid_type(v, "a string")),
    }
}

/// The string in `v` as one of an enum's TOML names: `variants` maps each
/// name to its value, in the order an error lists them.
pub fn variant<T: Copy>(v: &Value<'_>, variants: &[(&str, T)]) -> Result<T, ReadError> {
    let s = string(v)?;
    match variants.iter().find(|(name, _)| *name == s) {
        Some((_, value)) => Ok(*value),
        None => Err(unknown_variant(
            v,
            &s,
            &variants.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        )),
    }
}

fn unknown_variant(v: &Value<'_>, got: &str, allowed: &[&str]) -> ReadError {
    ReadError::new(
        v.span(),
        format!("unknown variant `{got}`, expected {}", one_of(allowed)),
    )
}

/// The boolean in `v`.
pub fn boolean(v: &Value<'_>) -> Result<bool, ReadError> {
    match v.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(invalid_type(v, "a boolean")),
    }
}

/// The non-negative integer in `v`, at most `max`.
pub fn unsigned(v: &Value<'_>, max: u64, type_name: &str) -> Result<u64, ReadError> {
    let DeValue::Integer(i) = v.get_ref() else {
        return Err(invalid_type(v, type_name));
    };
    match u64::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ReadError::new(
            v.span(),
            format!(
                "invalid value: integer `{}`, expected {type_name}",
                i.as_str()
            ),
        )),
    }
}

/// The array in `v`.
pub fn array<'a, 'i>(v: &'a Value<'i>) -> Result<&'a [Value<'i>], ReadError> {
    match v.get_ref() {
        DeValue::Array(a) => Ok(a),
        _ => Err(invalid_type(v, "a sequence")),
    }
}

/// The array of strings in `v`.
pub fn strings(v: &Value<'_>) -> Result<Vec<String>, ReadError> {
    array(v)?.iter().map(string).collect()
}

/// The table in `v`; `what` names it in a type error (`struct PullOptions`).
pub fn table<'a, 'i>(v: &'a Value<'i>, what: &str) -> Result<TableRef<'a, 'i>, ReadError> {
    match v.get_ref() {
        DeValue::Table(t) => Ok(TableRef {
            table: t,
            span: (v.span().start, v.span().end),
        }),
        _ => Err(invalid_type(v, what)),
    }
}

impl<'i> Table<'i> {
    /// The root table as a [`TableRef`].
    pub fn root(&self) -> TableRef<'_, 'i> {
        TableRef {
            table: &self.table,
            span: (self.span.start, self.span.end),
        }
    }
}

/// A table being read.
#[derive(Debug, Clone, Copy)]
pub struct TableRef<'a, 'i> {
    table: &'a DeTable<'i>,
    span: (usize, usize),
}

impl<'a, 'i> TableRef<'a, 'i> {
    /// The value of `key`, when present.
    pub fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// Refuse a key outside `allowed`, at the key's place.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<(), ReadError> {
        match self
            .table
            .keys()
            .find(|k| !allowed.contains(&k.get_ref().as_ref()))
        {
            None => Ok(()),
            Some(k) => Err(ReadError::new(
                k.span(),
                format!(
                    "unknown field `{}`, expected {}",
                    k.get_ref(),
                    one_of(allowed)
                ),
            )),
        }
    }

    /// The value of a key that must be there.
    pub fn required(&self, key: &str) -> Result<&'a Value<'i>, ReadError> {
        self.get(key).ok_or_else(|| {
            ReadError::new(self.span.0..self.span.1, format!("missing field `{key}`"))
        })
    }

    /// `read` applied to the value of `key`, when present.
    pub fn opt<T>(
        &self,
        key: &str,
        read: impl FnOnce(&'a Value<'i>) -> Result<T, ReadError>,
    ) -> Result<Option<T>, ReadError> {
        self.get(key).map(read).transpose()
    }

    /// Every key and value, in the order toml keeps them.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a Value<'i>)> {
        self.table.iter().map(|(k, v)| (k.get_ref().as_ref(), v))
    }
}
