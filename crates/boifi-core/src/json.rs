//! A small, total JSON reader for the filter's plugin configuration (operators' JSON, a flat
//! object), so the Wasm filter links no general JSON parser: serde_json's deserializer, its
//! float formatting and its messages were a third of the module. Policies and everything the
//! server and the CLI read stay with serde_json; this reads only the filters' configurations
//! ([`crate::wire::PluginConfig`], [`crate::wire::NativeConfig`]).
//!
//! RFC 8259 JSON, with numbers kept as their text (the reader of a field decides what it
//! takes), duplicate keys resolved as serde_json does (the last one wins), and nesting bounded
//! by [`MAX_DEPTH`] so no input can exhaust the stack. Any bytes give a value or a
//! [`JsonError`] with line and column, never a panic.

use alloc::string::String;
use alloc::vec::Vec;

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 32;

/// A JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written (valid JSON number syntax).
    Number(String),
    /// A string, unescaped.
    String(String),
    /// A list.
    Array(Vec<Json>),
    /// An object's members in document order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object (the last one when repeated), `None` for a JSON `null`.
    pub fn field<'v>(members: &'v [(String, Json)], key: &str) -> Option<&'v Json> {
        members
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            // Not `!=`: comparing with `PartialEq` would link the derived deep comparison.
            .filter(|v| !matches!(v, Json::Null))
    }

    /// How an error message names this kind of value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "true/false",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "a list",
            Json::Object(_) => "an object",
        }
    }
}

/// Why bytes are not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in bytes).
    pub column: usize,
    /// What was expected there.
    pub message: &'static str,
}

/// Reads one JSON document (surrounding whitespace allowed).
pub fn parse(bytes: &[u8]) -> Result<Json, JsonError> {
    let mut r = Reader { bytes, pos: 0 };
    let value = r.value(0)?;
    r.blank();
    if r.pos != bytes.len() {
        return Err(r.fail("trailing characters"));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn fail(&self, message: &'static str) -> JsonError {
        let done = self.bytes.get(..self.pos).unwrap_or(self.bytes);
        let line = 1 + done.iter().filter(|b| **b == b'\n').count();
        let column = 1 + done.iter().rev().take_while(|b| **b != b'\n').count();
        JsonError {
            line,
            column,
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn word(&mut self, word: &[u8], value: Json) -> Result<Json, JsonError> {
        if self
            .bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word))
        {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.fail("expected a value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.blank();
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.word(b"true", Json::Bool(true)),
            Some(b'f') => self.word(b"false", Json::Bool(false)),
            Some(b'n') => self.word(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.fail("expected a value")),
            None => Err(self.fail("EOF while parsing a value")),
        }
    }

    fn nested(&self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            Err(self.fail("nested more than 32 levels deep"))
        } else {
            Ok(())
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.sequence(depth, b'}', "expected `,` or `}`", |reader| {
            reader.blank();
            if reader.peek() != Some(b'"') {
                return Err(reader.fail("expected a string key"));
            }
            let key = reader.string()?;
            reader.blank();
            if !reader.eat(b':') {
                return Err(reader.fail("expected `:`"));
            }
            Ok((key, reader.value(depth)?))
        })
        .map(Json::Object)
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.sequence(depth, b']', "expected `,` or `]`", |reader| {
            reader.value(depth)
        })
        .map(Json::Array)
    }

    /// The items of an object or array (the opening bracket is at `pos`), read by `item`
    /// until `close`: the one loop of both, so they nest and fail alike.
    fn sequence<T>(
        &mut self,
        depth: usize,
        close: u8,
        after_item: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<T, JsonError>,
    ) -> Result<Vec<T>, JsonError> {
        self.nested(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.blank();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            self.blank();
            if self.eat(close) {
                return Ok(items);
            }
            if !self.eat(b',') {
                return Err(self.fail(after_item));
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fail("invalid number")),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(self.fail("invalid number"));
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return Err(self.fail("invalid number"));
            }
        }
        // Only ASCII digits, signs, `.` and `e` were consumed.
        let text = self
            .bytes
            .get(start..self.pos)
            .and_then(|b| core::str::from_utf8(b).ok())
            .ok_or_else(|| self.fail("invalid number"))?;
        Ok(Json::Number(String::from(text)))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.fail("invalid \\u escape"))?;
            v = v * 16 + digit;
            self.pos += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.fail("EOF while parsing a string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.fail("EOF while parsing a string"));
                    };
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.fail("invalid escape")),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0x00..=0x1f => {
                    self.pos -= 1;
                    return Err(self.fail("control character in a string"));
                }
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.fail("a string that is not UTF-8"))
    }

    /// After `\u`: one code point, a surrogate pair taken together.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !(self.eat(b'\\') && self.eat(b'u')) {
                return Err(self.fail("lone leading surrogate in a \\u escape"));
            }
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.fail("lone leading surrogate in a \\u escape"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.fail("lone trailing surrogate in a \\u escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn s(text: &str) -> Json {
        Json::String(text.into())
    }

    #[test]
    fn reads_json() {
        let v =
            parse(br#" {"a": [1, -2.5e3, true, null], "b": "x\"\u00e9\ud83d\ude00", "a": {}} "#)
                .unwrap();
        let Json::Object(members) = &v else { panic!() };
        assert_eq!(members.len(), 3);
        assert_eq!(Json::field(members, "a"), Some(&Json::Object(vec![])));
        assert_eq!(Json::field(members, "b"), Some(&s("x\"é😀")));
        assert_eq!(
            members[0].1,
            Json::Array(vec![
                Json::Number("1".into()),
                Json::Number("-2.5e3".into()),
                Json::Bool(true),
                Json::Null
            ])
        );
    }

    #[test]
    fn refuses_what_is_not_json_with_line_and_column() {
        for (text, line, column) in [
            (&b"{"[..], 1, 2),
            (b"{\n  \"a\": 01}", 2, 9),
            (b"[1,]", 1, 4),
            (b"{\"a\" 1}", 1, 6),
            (b"\"\\ud800\"", 1, 8),
            (b"\"\xff\"", 1, 4),
            (b"{} x", 1, 4),
            (b"-", 1, 2),
            (b"1.", 1, 3),
            (b"\"a\nb\"", 1, 3),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(
                (e.line, e.column),
                (line, column),
                "{:?}: {e:?}",
                core::str::from_utf8(text)
            );
        }
        let deep = [b'['; 40];
        assert_eq!(
            parse(&deep).unwrap_err().message,
            "nested more than 32 levels deep"
        );
    }
}
