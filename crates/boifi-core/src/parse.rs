//! A small walker over `serde_json::Value` that reads typed fields and collects every problem
//! with its path, instead of stopping at the first one as serde's derive would.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::{Map, Value};

use crate::policy::error::{FieldError, FieldErrorKind};

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Collects field errors while a document is read.
#[derive(Debug, Default)]
pub(crate) struct Walker {
    pub(crate) errors: Vec<FieldError>,
}

impl Walker {
    pub(crate) fn error(&mut self, path: impl Into<String>, kind: FieldErrorKind) {
        self.errors.push(FieldError {
            path: path.into(),
            kind,
        });
    }

    /// A number with a fractional part where a whole number belongs.
    pub(crate) fn fraction(&mut self, path: &str) {
        self.error(
            path,
            FieldErrorKind::WrongType {
                expected: "a whole number",
                found: "a fraction",
            },
        );
    }

    /// A whole number outside `range` (written as the message shows it).
    pub(crate) fn out_of_range(&mut self, path: &str, value: String, range: &'static str) {
        self.error(path, FieldErrorKind::OutOfRange { value, range });
    }

    fn wrong_type(&mut self, path: &str, expected: &'static str, value: &Value) {
        self.error(
            path,
            FieldErrorKind::WrongType {
                expected,
                found: type_name(value),
            },
        );
    }

    /// Reads an object and reports every key that is not in `allowed`.
    pub(crate) fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => {
                for key in map.keys() {
                    if !allowed.contains(&key.as_str()) {
                        self.error(join(path, key), FieldErrorKind::UnknownField);
                    }
                }
                Some(map)
            }
            other => {
                self.wrong_type(path, "an object", other);
                None
            }
        }
    }

    /// A present, non-null field.
    pub(crate) fn field<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
        map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn required<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Value> {
        let found = Self::field(map, key);
        if found.is_none() {
            self.error(join(path, key), FieldErrorKind::Missing);
        }
        found
    }

    pub(crate) fn string(&mut self, value: &Value, path: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    pub(crate) fn array<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.wrong_type(path, "a list", other);
                None
            }
        }
    }

    /// The value of a check (one of `policy::validate`'s), or `None` with its problem
    /// reported at `path`.
    pub(crate) fn check<T>(&mut self, path: &str, result: Result<T, FieldErrorKind>) -> Option<T> {
        result.map_err(|kind| self.error(path, kind)).ok()
    }

    /// Reports the problems of a map's check, each at `path` or at the key it concerns;
    /// whether there were none.
    pub(crate) fn keyed(
        &mut self,
        path: &str,
        problems: Vec<(Option<&str>, FieldErrorKind)>,
    ) -> bool {
        let clean = problems.is_empty();
        for (key, kind) in problems {
            match key {
                None => self.error(path, kind),
                Some(key) => self.error(join(path, key), kind),
            }
        }
        clean
    }

    /// An optional field read with `read` at `path.key`: `Some(None)` when absent or null,
    /// `None` when present and wrong.
    pub(crate) fn optional<T>(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        read: impl FnOnce(&mut Self, &Value, &str) -> Option<T>,
    ) -> Option<Option<T>> {
        match Walker::field(map, key) {
            None => Some(None),
            Some(v) => read(self, v, &join(path, key)).map(Some),
        }
    }

    /// A whole number within `0..=max`.
    pub(crate) fn integer(
        &mut self,
        value: &Value,
        path: &str,
        max: u64,
        range: &'static str,
    ) -> Option<u64> {
        match value {
            Value::Number(n) => match whole_u64(n) {
                Some(v) if v <= max => Some(v),
                _ => {
                    if n.as_f64().is_some_and(|f| f >= 0.0 && !is_whole(f)) {
                        self.fraction(path);
                    } else {
                        self.out_of_range(path, n.to_string(), range);
                    }
                    None
                }
            },
            other => {
                self.wrong_type(path, "a whole number", other);
                None
            }
        }
    }

    /// A whole number that passes `check` (`range` is what a negative number is told).
    pub(crate) fn bounded_integer(
        &mut self,
        value: &Value,
        path: &str,
        range: &'static str,
        check: fn(u64) -> Result<(), FieldErrorKind>,
    ) -> Option<u64> {
        let n = self.integer(value, path, u64::MAX, range)?;
        self.check(path, check(n)).map(|()| n)
    }

    /// A map of string to string.
    pub(crate) fn string_map(
        &mut self,
        value: &Value,
        path: &str,
    ) -> Option<alloc::collections::BTreeMap<String, String>> {
        let Value::Object(map) = value else {
            self.wrong_type(path, "an object", value);
            return None;
        };
        let mut out = alloc::collections::BTreeMap::new();
        for (key, item) in map {
            if let Some(s) = self.string(item, &join(path, key)) {
                out.insert(key.clone(), s);
            }
        }
        Some(out)
    }
}

/// `n` as a `u64` if it is a whole number, with or without a fraction part: `5` and `5.0` are
/// the same JSON number (RFC 8259 section 6), and JSON Schema's `integer` admits both.
pub(crate) fn whole_u64(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        // Whole and within `0..2^64`, so the cast is exact.
        (is_whole(f) && (0.0..18_446_744_073_709_551_616.0).contains(&f)).then_some(f as u64)
    })
}

/// `n` as an `i64` if it is a whole number, with or without a fraction part.
pub(crate) fn whole_i64(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        // Whole and within `-2^63..2^63`, so the cast is exact.
        let range = -9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0;
        (is_whole(f) && range.contains(&f)).then_some(f as i64)
    })
}

/// True for a finite number with no fraction part (`%` rather than `fract`, which `core` lacks).
pub(crate) fn is_whole(f: f64) -> bool {
    f.is_finite() && f % 1.0 == 0.0
}
