//! The pattern parser: text to [`Node`], iteratively (an explicit stack of open groups), so a
//! deeply nested pattern cannot overflow the call stack.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::{ErrorKind, PatternError, MAX_NESTING, MAX_REPEAT};

/// A zero-width assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// `^` or `\A`: the start of the value.
    Start,
    /// `$` or `\z`: the end of the value.
    End,
    /// `\b`: an ASCII word character on exactly one side.
    WordBoundary,
    /// `\B`: not a word boundary.
    NotWordBoundary,
}

/// The parsed pattern. Case folding and the `s` flag are already applied: a case-insensitive
/// letter is a [`Node::Class`] of both cases, and `.` says whether it matches `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Empty,
    Char(char),
    /// Sorted, non-overlapping, non-adjacent inclusive ranges.
    Class(Vec<(char, char)>),
    Any {
        newline: bool,
    },
    Look(Look),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Flags {
    fold: bool,
    dot_newline: bool,
}

/// An open group: the alternatives finished so far and the one being read.
struct Frame {
    /// Byte offset of the `(` (0 for the outermost frame).
    open: usize,
    /// Flags in force when the group opened, restored when it closes.
    outer_flags: Flags,
    alternatives: Vec<Node>,
    concat: Vec<Node>,
}

impl Frame {
    fn new(open: usize, outer_flags: Flags) -> Frame {
        Frame {
            open,
            outer_flags,
            alternatives: Vec::new(),
            concat: Vec::new(),
        }
    }

    fn finish(mut self) -> Node {
        let last = concat_node(core::mem::take(&mut self.concat));
        if self.alternatives.is_empty() {
            last
        } else {
            self.alternatives.push(last);
            Node::Alt(self.alternatives)
        }
    }
}

fn concat_node(mut items: Vec<Node>) -> Node {
    match items.len() {
        0 => Node::Empty,
        1 => items.pop().unwrap_or(Node::Empty),
        _ => Node::Concat(items),
    }
}

fn err(offset: usize, kind: ErrorKind) -> PatternError {
    PatternError { offset, kind }
}

/// Reads characters with their byte offsets.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn peek2(&self) -> Option<char> {
        let mut chars = self.text.get(self.pos..)?.chars();
        chars.next();
        chars.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn rest_starts_with(&self, s: &str) -> bool {
        self.text.get(self.pos..).is_some_and(|r| r.starts_with(s))
    }
}

/// Parses `pattern` into its tree.
pub(super) fn parse(pattern: &str) -> Result<Node, PatternError> {
    let mut cur = Cursor {
        text: pattern,
        pos: 0,
    };
    let mut flags = Flags::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut frame = Frame::new(0, flags);
    // What the last token was, for the repetition operators.
    let mut last = Last::Nothing;
    while let Some(c) = cur.peek() {
        let at = cur.pos;
        let previous = core::mem::replace(&mut last, Last::Atom);
        match c {
            '(' => {
                cur.bump();
                if stack.len() >= MAX_NESTING {
                    return Err(err(at, ErrorKind::TooDeep));
                }
                if cur.eat('?') {
                    match group_kind(&mut cur, at)? {
                        GroupKind::Plain => {}
                        GroupKind::SetFlags(f) => {
                            // `(?i)`: flags for the rest of the enclosing group.
                            flags = apply_flags(flags, f);
                            last = Last::Nothing;
                            continue;
                        }
                        GroupKind::ScopedFlags(f) => {
                            let outer = flags;
                            flags = apply_flags(flags, f);
                            stack.push(core::mem::replace(&mut frame, Frame::new(at, outer)));
                            last = Last::Nothing;
                            continue;
                        }
                    }
                }
                stack.push(core::mem::replace(&mut frame, Frame::new(at, flags)));
                last = Last::Nothing;
            }
            ')' => {
                cur.bump();
                let Some(parent) = stack.pop() else {
                    return Err(err(at, ErrorKind::UnopenedGroup));
                };
                flags = frame.outer_flags;
                let group = core::mem::replace(&mut frame, parent).finish();
                frame.concat.push(group);
            }
            '|' => {
                cur.bump();
                let done = concat_node(core::mem::take(&mut frame.concat));
                frame.alternatives.push(done);
                last = Last::Nothing;
            }
            '*' | '+' | '?' | '{' => {
                cur.bump();
                let (min, max) = match c {
                    '*' => (0, None),
                    '+' => (1, None),
                    '?' => (0, Some(1)),
                    _ => counted(&mut cur, at)?,
                };
                // The lazy forms match the same values.
                cur.eat('?');
                match previous {
                    Last::Atom => {}
                    Last::Nothing => return Err(err(at, ErrorKind::NothingToRepeat(c))),
                    Last::Repetition => return Err(err(at, ErrorKind::RepeatedRepetition(c))),
                }
                let Some(operand) = frame.concat.pop() else {
                    return Err(err(at, ErrorKind::NothingToRepeat(c)));
                };
                frame.concat.push(Node::Repeat {
                    node: Box::new(operand),
                    min,
                    max,
                });
                last = Last::Repetition;
            }
            '[' => {
                cur.bump();
                let class = class(&mut cur, at, flags)?;
                frame.concat.push(Node::Class(class));
            }
            '.' => {
                cur.bump();
                frame.concat.push(Node::Any {
                    newline: flags.dot_newline,
                });
            }
            '^' => {
                cur.bump();
                frame.concat.push(Node::Look(Look::Start));
            }
            '$' => {
                cur.bump();
                frame.concat.push(Node::Look(Look::End));
            }
            '\\' => {
                cur.bump();
                let node = match escape(&mut cur, at, false)? {
                    Escaped::Char(c) => literal(c, flags),
                    Escaped::Class(ranges) => Node::Class(ranges),
                    Escaped::Look(look) => Node::Look(look),
                };
                frame.concat.push(node);
            }
            _ => {
                cur.bump();
                frame.concat.push(literal(c, flags));
            }
        }
    }
    if let Some(open) = stack.last().map(|_| frame.open) {
        return Err(err(open, ErrorKind::UnclosedGroup));
    }
    Ok(frame.finish())
}

/// The kind of the previous token: a repetition needs an atom or a group before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Nothing,
    Atom,
    Repetition,
}

fn literal(c: char, flags: Flags) -> Node {
    if flags.fold && c.is_ascii_alphabetic() {
        let (lo, hi) = (c.to_ascii_uppercase(), c.to_ascii_lowercase());
        Node::Class(alloc::vec![(lo, lo), (hi, hi)])
    } else {
        Node::Char(c)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct FlagChange {
    fold: Option<bool>,
    dot_newline: Option<bool>,
}

fn apply_flags(mut flags: Flags, change: FlagChange) -> Flags {
    if let Some(fold) = change.fold {
        flags.fold = fold;
    }
    if let Some(dot) = change.dot_newline {
        flags.dot_newline = dot;
    }
    flags
}

enum GroupKind {
    Plain,
    SetFlags(FlagChange),
    ScopedFlags(FlagChange),
}

/// Reads what follows `(?` of the group opened at byte `at`.
fn group_kind(cur: &mut Cursor, at: usize) -> Result<GroupKind, PatternError> {
    if cur.eat(':') {
        return Ok(GroupKind::Plain);
    }
    if cur.rest_starts_with("=") || cur.rest_starts_with("!") {
        return Err(err(at, ErrorKind::LookAround));
    }
    if cur.rest_starts_with("<=") || cur.rest_starts_with("<!") {
        return Err(err(at, ErrorKind::LookAround));
    }
    if cur.rest_starts_with("P=") || cur.rest_starts_with("P>") {
        return Err(err(at, ErrorKind::Backreference));
    }
    if cur.eat('<') || (cur.rest_starts_with("P<") && cur.eat('P') && cur.eat('<')) {
        group_name(cur, at)?;
        return Ok(GroupKind::Plain);
    }
    let mut change = FlagChange::default();
    let mut on = true;
    loop {
        let flag_at = cur.pos;
        match cur.bump() {
            Some(')') => return Ok(GroupKind::SetFlags(change)),
            Some(':') => return Ok(GroupKind::ScopedFlags(change)),
            Some('-') if on => on = false,
            Some('i') => change.fold = Some(on),
            Some('s') => change.dot_newline = Some(on),
            // Laziness swaps do not change whether a value matches.
            Some('U') => {}
            Some(other) => return Err(err(flag_at, ErrorKind::UnsupportedFlag(other))),
            None => return Err(err(at, ErrorKind::UnclosedGroup)),
        }
    }
}

/// Reads a group name and its closing `>` (names are accepted and ignored).
fn group_name(cur: &mut Cursor, at: usize) -> Result<(), PatternError> {
    let start = cur.pos;
    while let Some(c) = cur.peek() {
        if c == '>' {
            let first_ok = cur
                .text
                .get(start..)
                .and_then(|s| s.chars().next())
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_');
            if cur.pos == start || !first_ok {
                return Err(err(at, ErrorKind::BadGroupName));
            }
            cur.bump();
            return Ok(());
        }
        if !(c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(at, ErrorKind::BadGroupName));
        }
        cur.bump();
    }
    Err(err(at, ErrorKind::BadGroupName))
}

/// Reads `n}`, `n,}` or `n,m}` after a `{` at byte `at`.
fn counted(cur: &mut Cursor, at: usize) -> Result<(u32, Option<u32>), PatternError> {
    let min = number(cur, at)?;
    let max = if cur.eat(',') {
        if cur.peek() == Some('}') {
            None
        } else {
            Some(number(cur, at)?)
        }
    } else {
        Some(min)
    };
    if !cur.eat('}') {
        return Err(err(at, ErrorKind::BadCount));
    }
    if let Some(max) = max {
        if max < min {
            return Err(err(at, ErrorKind::BackwardsCount { min, max }));
        }
    }
    Ok((min, max))
}

fn number(cur: &mut Cursor, at: usize) -> Result<u32, PatternError> {
    let mut value: Option<u32> = None;
    while let Some(d) = cur.peek().and_then(|c| c.to_digit(10)) {
        cur.bump();
        let next = value.unwrap_or(0).saturating_mul(10).saturating_add(d);
        value = Some(next);
    }
    match value {
        None => Err(err(at, ErrorKind::BadCount)),
        Some(n) if n > MAX_REPEAT => Err(err(at, ErrorKind::CountTooLarge(n))),
        Some(n) => Ok(n),
    }
}

enum Escaped {
    Char(char),
    Class(Vec<(char, char)>),
    Look(Look),
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
const SPACE: &[(char, char)] = &[('\t', '\r'), (' ', ' ')];

/// Reads an escape after the `\` at byte `at`.
fn escape(cur: &mut Cursor, at: usize, in_class: bool) -> Result<Escaped, PatternError> {
    let Some(c) = cur.bump() else {
        return Err(err(at, ErrorKind::TrailingBackslash));
    };
    Ok(match c {
        't' => Escaped::Char('\t'),
        'n' => Escaped::Char('\n'),
        'r' => Escaped::Char('\r'),
        'f' => Escaped::Char('\u{c}'),
        'v' => Escaped::Char('\u{b}'),
        'a' => Escaped::Char('\u{7}'),
        'x' => Escaped::Char(hex(cur, at)?),
        'd' => Escaped::Class(DIGIT.to_vec()),
        'w' => Escaped::Class(WORD.to_vec()),
        's' => Escaped::Class(SPACE.to_vec()),
        'D' => Escaped::Class(negate(DIGIT)),
        'W' => Escaped::Class(negate(WORD)),
        'S' => Escaped::Class(negate(SPACE)),
        'A' if !in_class => Escaped::Look(Look::Start),
        'z' if !in_class => Escaped::Look(Look::End),
        'b' if !in_class => Escaped::Look(Look::WordBoundary),
        'B' if !in_class => Escaped::Look(Look::NotWordBoundary),
        '0'..='9' => return Err(err(at, ErrorKind::Backreference)),
        'p' | 'P' => return Err(err(at, ErrorKind::UnicodeClass(c))),
        '<' | '>' => return Err(err(at, ErrorKind::UnsupportedEscape(c))),
        c if c.is_ascii_punctuation() => Escaped::Char(c),
        c => return Err(err(at, ErrorKind::UnsupportedEscape(c))),
    })
}

/// Reads `HH` or `{H...}` after `\x`.
fn hex(cur: &mut Cursor, at: usize) -> Result<char, PatternError> {
    let mut value: u32 = 0;
    if cur.eat('{') {
        let mut digits = 0;
        loop {
            match cur.bump() {
                Some('}') if digits > 0 => break,
                Some(c) if digits < 8 => {
                    let d = c.to_digit(16).ok_or(err(at, ErrorKind::BadHex))?;
                    value = value.saturating_mul(16).saturating_add(d);
                    digits += 1;
                }
                _ => return Err(err(at, ErrorKind::BadHex)),
            }
        }
    } else {
        for _ in 0..2 {
            let d = cur
                .bump()
                .and_then(|c| c.to_digit(16))
                .ok_or(err(at, ErrorKind::BadHex))?;
            value = value * 16 + d;
        }
    }
    char::from_u32(value).ok_or(err(at, ErrorKind::BadHex))
}

/// Reads a class after the `[` at byte `at`, up to and including its `]`.
fn class(cur: &mut Cursor, at: usize, flags: Flags) -> Result<Vec<(char, char)>, PatternError> {
    let negated = cur.eat('^');
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut first = true;
    loop {
        let item_at = cur.pos;
        let Some(c) = cur.bump() else {
            return Err(err(at, ErrorKind::UnclosedClass));
        };
        let start = match c {
            ']' if !first => break,
            '[' => return Err(err(item_at, ErrorKind::NestedClass)),
            '&' | '~' | '-' if cur.peek() == Some(c) => {
                return Err(err(item_at, ErrorKind::ClassSetOperation(c)));
            }
            '\\' => match escape(cur, item_at, true)? {
                Escaped::Char(c) => c,
                Escaped::Class(more) => {
                    ranges.extend(more);
                    first = false;
                    continue;
                }
                // Unreachable: `escape` reads no assertion inside a class.
                Escaped::Look(_) => return Err(err(item_at, ErrorKind::UnsupportedEscape('b'))),
            },
            c => c,
        };
        first = false;
        if cur.peek() == Some('-') && cur.peek2() == Some('-') {
            return Err(err(cur.pos, ErrorKind::ClassSetOperation('-')));
        }
        // A range `a-z`, unless the `-` is the last character before `]`.
        if cur.peek() == Some('-') && !matches!(cur.peek2(), Some(']') | None) {
            cur.bump();
            let end_at = cur.pos;
            let end = match cur.bump() {
                Some('\\') => match escape(cur, end_at, true)? {
                    Escaped::Char(e) => e,
                    _ => return Err(err(item_at, ErrorKind::BadRange)),
                },
                Some('[') => return Err(err(end_at, ErrorKind::NestedClass)),
                Some(e) => e,
                None => return Err(err(at, ErrorKind::UnclosedClass)),
            };
            if end < start {
                return Err(err(item_at, ErrorKind::BackwardsRange { start, end }));
            }
            ranges.push((start, end));
        } else {
            ranges.push((start, start));
        }
    }
    if flags.fold {
        fold_ascii(&mut ranges);
    }
    let ranges = canonical(ranges);
    Ok(if negated { negate(&ranges) } else { ranges })
}

/// Adds the other ASCII case of every ASCII letter the ranges hold.
fn fold_ascii(ranges: &mut Vec<(char, char)>) {
    let mut extra = Vec::new();
    for &(lo, hi) in ranges.iter() {
        for (from_lo, from_hi, shift_up) in [('a', 'z', false), ('A', 'Z', true)] {
            let (l, h) = (lo.max(from_lo), hi.min(from_hi));
            if l <= h {
                let (l, h) = if shift_up {
                    (l.to_ascii_lowercase(), h.to_ascii_lowercase())
                } else {
                    (l.to_ascii_uppercase(), h.to_ascii_uppercase())
                };
                extra.push((l, h));
            }
        }
    }
    ranges.extend(extra);
}

/// Sorts and merges overlapping or adjacent ranges.
pub(super) fn canonical(mut ranges: Vec<(char, char)>) -> Vec<(char, char)> {
    crate::sort::sort_by(&mut ranges, |a, b| a < b);
    let mut out: Vec<(char, char)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if next_char(last.1).is_none_or(|n| lo <= n) => {
                last.1 = last.1.max(hi);
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn next_char(c: char) -> Option<char> {
    match c {
        '\u{d7ff}' => Some('\u{e000}'),
        c => char::from_u32(u32::from(c) + 1),
    }
}

fn prev_char(c: char) -> Option<char> {
    match c {
        '\u{e000}' => Some('\u{d7ff}'),
        c => u32::from(c).checked_sub(1).and_then(char::from_u32),
    }
}

/// The complement of canonical ranges among all `char`s.
fn negate(ranges: &[(char, char)]) -> Vec<(char, char)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    let mut from = Some('\0');
    for &(lo, hi) in ranges {
        if let (Some(f), Some(p)) = (from, prev_char(lo)) {
            if f <= p {
                out.push((f, p));
            }
        }
        from = next_char(hi);
    }
    if let Some(f) = from {
        out.push((f, char::MAX));
    }
    out
}
