//! The JSON layer of G3's descriptor and inventory: a parsed tree that keeps every key in input
//! order (so duplicates can be refused, in maps too), strict field extraction (unknown fields and
//! wrong types refused) and the two compact writers (keys by UTF-16 code units for the
//! descriptor, declared order by the caller for the inventory) with serde_json's string escapes.
//!
//! Lexing, UTF-8, escapes, number classification and the nesting limit (128) are serde_json's, the
//! same parser the real crate uses, so what parses and what each number becomes agree with it.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value. Numbers are classified as serde_json does: non-negative integers that fit
/// are `U64`, negative ones that fit are `I64`, everything else (fractions, exponents, `-0`,
/// integers out of range) is `F64`.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// Any other number.
    F64(f64),
    /// A string, unescaped.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, keys in input order (after [`parse`], keys are unique).
    Obj(Vec<(String, Json)>),
}

/// Why JSON bytes do not fit a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON (serde_json's message).
    Syntax(String),
    /// An object has the same key twice (the key).
    DuplicateKey(String),
    /// A field the schema does not know (its path).
    UnknownField(String),
    /// A required field is absent (its path).
    MissingField(String),
    /// A field has the wrong JSON type or an out-of-range number.
    WrongType {
        /// The field's path.
        path: String,
        /// What the schema wants.
        expected: &'static str,
    },
    /// A string field holds a value outside its closed set (an enum variant or tag).
    UnknownVariant {
        /// The field's path.
        path: String,
        /// The value found.
        value: String,
    },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax(msg) => write!(f, "not valid JSON: {msg}"),
            JsonError::DuplicateKey(k) => write!(f, "duplicate object key '{}'", k.escape_debug()),
            JsonError::UnknownField(p) => write!(f, "unknown field '{}'", p.escape_debug()),
            JsonError::MissingField(p) => write!(f, "missing field '{}'", p.escape_debug()),
            JsonError::WrongType { path, expected } => {
                write!(f, "field '{}' must be {expected}", path.escape_debug())
            }
            JsonError::UnknownVariant { path, value } => {
                write!(f, "field '{}' has an unknown value '{}'", path.escape_debug(), value.escape_debug())
            }
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(if v >= 0 { Json::U64(v as u64) } else { Json::I64(v) })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Json>()? {
            items.push(v);
        }
        Ok(Json::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            items.push((k, v));
        }
        Ok(Json::Obj(items))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

/// Parses one JSON document (nothing but whitespace after it) and refuses duplicate keys in any
/// object at any depth.
pub fn parse(bytes: &[u8]) -> Result<Json, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Json::deserialize(&mut de).map_err(|e| JsonError::Syntax(e.to_string()))?;
    de.end().map_err(|e| JsonError::Syntax(e.to_string()))?;
    check_unique_keys(&value)?;
    Ok(value)
}

/// serde_json's nesting limit bounds the recursion here.
fn check_unique_keys(value: &Json) -> Result<(), JsonError> {
    match value {
        Json::Arr(items) => items.iter().try_for_each(check_unique_keys),
        Json::Obj(items) => {
            let mut keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort_unstable();
            if let Some(w) = keys.windows(2).find(|w| w.first() == w.get(1)) {
                return Err(JsonError::DuplicateKey(w.first().copied().unwrap_or_default().to_string()));
            }
            items.iter().try_for_each(|(_, v)| check_unique_keys(v))
        }
        _ => Ok(()),
    }
}

/// The fields of one object being extracted; whatever is not taken is an unknown field.
pub(crate) struct Fields<'a> {
    path: String,
    items: &'a [(String, Json)],
    taken: Vec<bool>,
}

impl<'a> Fields<'a> {
    /// The fields of `value`, which must be an object.
    pub(crate) fn of(value: &'a Json, path: &str) -> Result<Fields<'a>, JsonError> {
        match value {
            Json::Obj(items) => {
                Ok(Fields { path: path.to_string(), items, taken: alloc::vec![false; items.len()] })
            }
            _ => Err(wrong(path, "an object")),
        }
    }

    /// The path of field `key`.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Takes `key` if present.
    pub(crate) fn opt(&mut self, key: &str) -> Option<&'a Json> {
        let i = self.items.iter().position(|(k, _)| k == key)?;
        if let Some(t) = self.taken.get_mut(i) {
            *t = true;
        }
        self.items.get(i).map(|(_, v)| v)
    }

    /// Takes `key`, which must be present.
    pub(crate) fn req(&mut self, key: &str) -> Result<&'a Json, JsonError> {
        self.opt(key).ok_or_else(|| JsonError::MissingField(self.path_of(key)))
    }

    /// Takes `key` as a string.
    pub(crate) fn str(&mut self, key: &str) -> Result<&'a str, JsonError> {
        let v = self.req(key)?;
        as_str(v, &self.path_of(key))
    }

    /// Takes `key` as a string or `null` (the key itself is required).
    pub(crate) fn str_or_null(&mut self, key: &str) -> Result<Option<&'a str>, JsonError> {
        match self.req(key)? {
            Json::Null => Ok(None),
            v => as_str(v, &self.path_of(key)).map(Some),
        }
    }

    /// Takes `key` as an unsigned 64-bit integer.
    pub(crate) fn u64(&mut self, key: &str) -> Result<u64, JsonError> {
        let v = self.req(key)?;
        as_u64(v, &self.path_of(key))
    }

    /// Takes `key` as an unsigned 32-bit integer.
    pub(crate) fn u32(&mut self, key: &str) -> Result<u32, JsonError> {
        let path = self.path_of(key);
        u32::try_from(self.u64(key)?).map_err(|_| wrong(&path, "an unsigned 32-bit integer"))
    }

    /// Takes `key` as a boolean.
    pub(crate) fn bool(&mut self, key: &str) -> Result<bool, JsonError> {
        match self.req(key)? {
            Json::Bool(b) => Ok(*b),
            _ => Err(wrong(&self.path_of(key), "a boolean")),
        }
    }

    /// Takes `key` as an array.
    pub(crate) fn arr(&mut self, key: &str) -> Result<&'a [Json], JsonError> {
        match self.req(key)? {
            Json::Arr(items) => Ok(items),
            _ => Err(wrong(&self.path_of(key), "an array")),
        }
    }

    /// Takes `key` as an object's entries.
    pub(crate) fn obj(&mut self, key: &str) -> Result<&'a [(String, Json)], JsonError> {
        match self.req(key)? {
            Json::Obj(items) => Ok(items),
            _ => Err(wrong(&self.path_of(key), "an object")),
        }
    }

    /// Every field must have been taken.
    pub(crate) fn done(self) -> Result<(), JsonError> {
        match self.taken.iter().position(|t| !t) {
            Some(i) => {
                let key = self.items.get(i).map(|(k, _)| k.as_str()).unwrap_or_default();
                Err(JsonError::UnknownField(self.path_of(key)))
            }
            None => Ok(()),
        }
    }
}

/// `value` (at `path`) as one of `variants`, returned as its index.
pub(crate) fn variant(value: &Json, path: &str, variants: &[&str]) -> Result<usize, JsonError> {
    let s = as_str(value, path)?;
    variants
        .iter()
        .position(|v| *v == s)
        .ok_or_else(|| JsonError::UnknownVariant { path: path.to_string(), value: s.to_string() })
}

/// A wrong-type error.
pub(crate) fn wrong(path: &str, expected: &'static str) -> JsonError {
    JsonError::WrongType { path: path.to_string(), expected }
}

/// `value` as a string.
pub(crate) fn as_str<'a>(value: &'a Json, path: &str) -> Result<&'a str, JsonError> {
    match value {
        Json::Str(s) => Ok(s),
        _ => Err(wrong(path, "a string")),
    }
}

/// `value` as an unsigned 64-bit integer (serde_json's `u64`: an integer token that fits).
pub(crate) fn as_u64(value: &Json, path: &str) -> Result<u64, JsonError> {
    match value {
        Json::U64(n) => Ok(*n),
        _ => Err(wrong(path, "an unsigned integer")),
    }
}

/// Appends `s` as a JSON string with serde_json's escapes.
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    // Serialising a string cannot fail.
    out.extend_from_slice(&serde_json::to_vec(s).unwrap_or_default());
}

/// Appends a scalar (never an array or object) compactly, numbers as serde_json prints them.
fn write_scalar(value: &Json, out: &mut Vec<u8>) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::U64(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Json::I64(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Json::F64(x) => out.extend_from_slice(&serde_json::to_vec(x).unwrap_or_default()),
        Json::Str(s) => write_str(s, out),
        Json::Arr(_) | Json::Obj(_) => {}
    }
}

/// How object keys are ordered when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyOrder {
    /// By UTF-16 code units (RFC 8785; the descriptor's canonical form).
    Utf16,
    /// By UTF-8 bytes (a `BTreeMap<String, _>`, as serde_json writes maps).
    Bytes,
}

/// Appends `value` compactly with object keys in `order`.
pub(crate) fn write(value: &Json, order: KeyOrder, out: &mut Vec<u8>) {
    match value {
        Json::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, order, out);
            }
            out.push(b']');
        }
        Json::Obj(items) => {
            let mut sorted: Vec<&(String, Json)> = items.iter().collect();
            match order {
                KeyOrder::Utf16 => sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16())),
                KeyOrder::Bytes => sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes())),
            }
            write_entries(sorted.into_iter().map(|(k, v)| (k.as_str(), v)), order, out);
        }
        scalar => write_scalar(scalar, out),
    }
}

/// Appends an object whose entries are given in their final order.
pub(crate) fn write_entries<'a>(
    entries: impl Iterator<Item = (&'a str, &'a Json)>,
    order: KeyOrder,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        write(v, order, out);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(bytes: &str) -> Result<Json, JsonError> {
        parse(bytes.as_bytes())
    }

    #[test]
    fn duplicates_are_refused_at_every_depth() {
        assert!(code(r#"{"a":1,"b":{"c":[{"d":1}]}}"#).is_ok());
        assert_eq!(code(r#"{"a":1,"a":1}"#), Err(JsonError::DuplicateKey("a".into())));
        assert_eq!(code(r#"{"x":[{"k":1,"j":2,"k":3}]}"#), Err(JsonError::DuplicateKey("k".into())));
        // Escapes are decoded before comparing.
        assert_eq!(code(r#"{"k":1,"\u006b":2}"#), Err(JsonError::DuplicateKey("k".into())));
    }

    #[test]
    fn numbers_are_classified_like_serde_json() {
        assert_eq!(code("18446744073709551615"), Ok(Json::U64(u64::MAX)));
        assert_eq!(code("-5"), Ok(Json::I64(-5)));
        assert!(matches!(code("-0"), Ok(Json::F64(_))));
        assert!(matches!(code("1.0"), Ok(Json::F64(_))));
        assert!(matches!(code("18446744073709551616"), Ok(Json::F64(_))));
        assert!(matches!(code("1 2"), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn writers_sort_and_escape() {
        let v = code(r#"{"b":"\u00e9\n","a":[1,-2,true,null],"😀":0,"ﬀ":1}"#).unwrap();
        let mut out = Vec::new();
        write(&v, KeyOrder::Bytes, &mut out);
        assert_eq!(out, "{\"a\":[1,-2,true,null],\"b\":\"é\\n\",\"ﬀ\":1,\"😀\":0}".as_bytes());
        out.clear();
        // U+1F600 is a surrogate pair (0xD83D...), before U+FB00 in UTF-16.
        write(&v, KeyOrder::Utf16, &mut out);
        assert_eq!(out, "{\"a\":[1,-2,true,null],\"b\":\"é\\n\",\"😀\":0,\"ﬀ\":1}".as_bytes());
    }

    #[test]
    fn fields_find_unknown_missing_and_wrong_types() {
        let v = code(r#"{"a":"x","n":5,"extra":1}"#).unwrap();
        let mut f = Fields::of(&v, "top").unwrap();
        assert_eq!(f.str("a"), Ok("x"));
        assert_eq!(f.u32("n"), Ok(5));
        assert_eq!(f.str("missing"), Err(JsonError::MissingField("top.missing".into())));
        assert_eq!(f.done(), Err(JsonError::UnknownField("top.extra".into())));
        let mut f = Fields::of(&v, "").unwrap();
        assert!(matches!(f.bool("a"), Err(JsonError::WrongType { .. })));
    }
}
