//! Typed fields from a parsed JSON object ([`serde_json::Value`]).
//!
//! Why: every `#[derive(Deserialize)]` type read with `serde_json` carries
//! its own copy of the parser's visitor code (pull.json alone was 13 KB of
//! the static agent, docs/size.md). Parsing into `Value` once and picking
//! fields here keeps serde_json's parser, the one instantiation of it, and
//! its messages for malformed text. A missing field or `null` is the field's
//! default, as with `#[serde(default)]`; a wrong type is an error naming the
//! field, never a silent default.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A field of the wrong type, a required one missing, or a value out of
/// range; the message names the field. Callers add what was being read
/// (the file, the manifest) when they turn it into their own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(String);

impl FieldError {
    pub fn new(message: impl Into<String>) -> Self {
        FieldError(message.into())
    }
}

/// What every reader here returns.
pub type Result<T> = std::result::Result<T, FieldError>;

/// One JSON object being read; `what` names it in errors.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    map: &'a Map<String, Value>,
}

/// `v` as an object.
pub fn object<'a>(v: &'a Value, what: &str) -> Result<Object<'a>> {
    match v {
        Value::Object(map) => Ok(Object { map }),
        other => Err(FieldError(format!(
            "{what}: expected an object, found {}",
            kind(other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[inline(never)]
fn wrong(key: &str, expected: &str, found: &Value) -> FieldError {
    FieldError(format!(
        "`{key}`: expected {expected}, found {}",
        kind(found)
    ))
}

impl<'a> Object<'a> {
    /// The value of `key`; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A string field; absent is `None`.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong(key, "a string", other)),
        }
    }

    /// A string field; absent is `""`.
    pub fn string(&self, key: &str) -> Result<String> {
        Ok(self.opt_str(key)?.unwrap_or_default().to_string())
    }

    /// An optional string field.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>> {
        Ok(self.opt_str(key)?.map(str::to_string))
    }

    /// A string field that must be there.
    pub fn required_str(&self, key: &str) -> Result<&'a str> {
        self.opt_str(key)?
            .ok_or_else(|| FieldError(format!("missing field `{key}`")))
    }

    /// A non-negative integer field that must be there.
    pub fn required_u64(&self, key: &str) -> Result<u64> {
        match self.get(key) {
            None => Err(FieldError(format!("missing field `{key}`"))),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| wrong(key, "an unsigned integer", v)),
        }
    }

    /// An object field; absent is `None`.
    pub fn opt_object(&self, key: &str) -> Result<Option<Object<'a>>> {
        self.get(key)
            .map(|v| object(v, &format!("`{key}`")))
            .transpose()
    }

    /// An array field; absent is `None` (some formats tell kinds apart by
    /// which arrays are present).
    pub fn opt_array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(wrong(key, "an array", other)),
        }
    }

    /// A non-negative integer field; absent is 0.
    pub fn u64(&self, key: &str) -> Result<u64> {
        match self.get(key) {
            None => Ok(0),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| wrong(key, "an unsigned integer", v)),
        }
    }

    /// A boolean field; absent is `false`.
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(wrong(key, "a boolean", other)),
        }
    }

    /// An array field; absent is empty.
    pub fn array(&self, key: &str) -> Result<&'a [Value]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(other) => Err(wrong(key, "an array", other)),
        }
    }

    /// An array of strings; absent is empty.
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.array(key)?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong(key, "an array of strings", other)),
            })
            .collect()
    }

    /// An object of small counters (`{"6.1.0": 1}`); absent is empty.
    pub fn counters(&self, key: &str) -> Result<BTreeMap<String, u32>> {
        match self.get(key) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .map(|n| (k.clone(), n))
                        .ok_or_else(|| wrong(key, "counters from 0 to 4294967295", v))
                })
                .collect(),
            Some(other) => Err(wrong(key, "an object", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_default_when_absent_and_refuse_wrong_types() {
        let v: Value = serde_json::from_str(
            r#"{"s":"x","n":7,"b":true,"a":["p","q"],"c":{"k":2},"z":null,"neg":-1,"big":{"k":4294967296}}"#,
        )
        .unwrap();
        let o = object(&v, "t").unwrap();
        assert_eq!(o.string("s").unwrap(), "x");
        assert_eq!(o.string("missing").unwrap(), "");
        assert_eq!(o.opt_string("z").unwrap(), None);
        assert_eq!(o.u64("n").unwrap(), 7);
        assert_eq!(o.u64("z").unwrap(), 0);
        assert!(o.bool("b").unwrap() && !o.bool("missing").unwrap());
        assert_eq!(o.strings("a").unwrap(), ["p", "q"]);
        assert_eq!(o.counters("c").unwrap().get("k"), Some(&2));
        assert_eq!(
            o.string("n").unwrap_err().to_string(),
            "`n`: expected a string, found a number"
        );
        assert_eq!(
            o.u64("neg").unwrap_err().to_string(),
            "`neg`: expected an unsigned integer, found a number"
        );
        assert!(o
            .counters("big")
            .unwrap_err()
            .to_string()
            .starts_with("`big`: expected counters"));
        assert_eq!(
            o.strings("c").unwrap_err().to_string(),
            "`c`: expected an array, found an object"
        );
        assert_eq!(
            object(&Value::Bool(true), "pull.json")
                .unwrap_err()
                .to_string(),
            "pull.json: expected an object, found a boolean"
        );
    }
}
