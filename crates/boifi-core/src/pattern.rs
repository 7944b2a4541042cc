//! A small linear-time regular-expression engine for policy `regex` matchers.
//!
//! [`Pattern::new`] parses a pattern (iteratively, nesting bounded by [`MAX_NESTING`]) into a
//! tree, compiles it to a Thompson NFA program of at most [`MAX_INSTRUCTIONS`] instructions, and
//! [`Pattern::is_match`] runs that program as a Pike VM: the set of live states advances one
//! character at a time, so a search costs O(program length × value length) whatever the pattern
//! (`(a*)*b` or `^(a+)+$` included), with no recursion on the value and no backtracking.
//!
//! A match may start anywhere in the value (as `Regex::is_match` of the `regex` crate; anchor
//! with `^...$`). Values are matched as `char`s, so non-ASCII literals work.
//!
//! # Syntax
//! - literals, `\` before any ASCII punctuation (`\.` `\\` `\/` `\-` `\*` ...), `\t` `\n` `\r`
//!   `\f` `\v` `\a`, `\xHH`, `\x{H...}`
//! - `.` (any character but `\n`; any character with the `s` flag)
//! - classes `[abc]`, `[a-z0-9_]`, `[^...]`, with escapes inside; `\d` `\w` `\s` `\D` `\W` `\S`
//!   (ASCII meanings: `[0-9]`, `[0-9A-Za-z_]`, `[\t\n\x0B\f\r ]`), also inside classes
//! - anchors `^` `\A` (start of the value), `$` `\z` (end of the value), `\b` `\B` (ASCII word
//!   boundary)
//! - groups `(...)`, `(?:...)`, `(?P<name>...)`, `(?<name>...)` (names are ignored)
//! - alternation `|`; quantifiers `*` `+` `?` `{n}` `{n,}` `{n,m}` (n, m ≤ [`MAX_REPEAT`]) and
//!   their lazy forms (same result for a yes/no match)
//! - flags `(?i)` (ASCII case-insensitive), `(?s)`, `(?-i)`, `(?i:...)`, for the rest of the
//!   enclosing group
//!
//! Everything else (backreferences, look-around, `\p{..}`, nested classes and class set
//! operations, other flags) is an error naming the construct and its byte offset.

use alloc::vec::Vec;
use core::fmt;

mod parse;
mod program;
#[cfg(test)]
mod tests;

use parse::{Look, Node};
pub use program::{Program, ProgramError};

/// Upper bound of a compiled program, in instructions. Each literal, class, `.`, assertion,
/// split and jump is one; a counted repetition copies its operand (`\w{1000}` is 1 000).
pub const MAX_INSTRUCTIONS: usize = 2000;
/// Upper bound of group nesting.
pub const MAX_NESTING: usize = 64;
/// Upper bound of the numbers in `{n,m}`.
pub const MAX_REPEAT: u32 = 1000;

/// Why a pattern was refused: the construct and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    offset: usize,
    kind: ErrorKind,
}

impl PatternError {
    /// The byte offset in the pattern where the problem starts.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorKind {
    UnclosedGroup,
    UnopenedGroup,
    UnclosedClass,
    TooDeep,
    NothingToRepeat(char),
    RepeatedRepetition(char),
    BadCount,
    CountTooLarge(u32),
    BackwardsCount { min: u32, max: u32 },
    BadGroupName,
    LookAround,
    UnsupportedFlag(char),
    TrailingBackslash,
    Backreference,
    UnicodeClass(char),
    UnsupportedEscape(char),
    BadHex,
    NestedClass,
    ClassSetOperation(char),
    BadRange,
    BackwardsRange { start: char, end: char },
    TooBig,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.offset;
        match &self.kind {
            ErrorKind::UnclosedGroup => write!(f, "unclosed group `(` at byte {at}"),
            ErrorKind::UnopenedGroup => write!(f, "unopened group `)` at byte {at}"),
            ErrorKind::UnclosedClass => write!(f, "unclosed class `[` at byte {at}"),
            ErrorKind::TooDeep => write!(
                f,
                "group at byte {at} nests deeper than the limit of {MAX_NESTING}"
            ),
            ErrorKind::NothingToRepeat(c) => {
                write!(f, "repetition `{c}` at byte {at} has nothing to repeat")
            }
            ErrorKind::RepeatedRepetition(c) => write!(
                f,
                "repetition `{c}` at byte {at} follows another repetition (group the first one)"
            ),
            ErrorKind::BadCount => write!(
                f,
                "counted repetition at byte {at} is not `{{n}}`, `{{n,}}` or `{{n,m}}` (write a literal `{{` as `\\{{`)"
            ),
            ErrorKind::CountTooLarge(n) => write!(
                f,
                "counted repetition at byte {at}: {n} is more than the limit of {MAX_REPEAT}"
            ),
            ErrorKind::BackwardsCount { min, max } => write!(
                f,
                "counted repetition at byte {at}: the maximum {max} is below the minimum {min}"
            ),
            ErrorKind::BadGroupName => write!(
                f,
                "group name at byte {at} is empty, not closed by `>`, or not made of letters, digits and `_`"
            ),
            ErrorKind::LookAround => {
                write!(f, "look-around at byte {at} is not supported")
            }
            ErrorKind::UnsupportedFlag(c) => {
                write!(f, "flag `{c}` at byte {at} is not supported (only `i` and `s`)")
            }
            ErrorKind::TrailingBackslash => write!(f, "trailing `\\` at byte {at}"),
            ErrorKind::Backreference => write!(
                f,
                "backreference at byte {at} is not supported"
            ),
            ErrorKind::UnicodeClass(c) => write!(
                f,
                "unicode class `\\{c}` at byte {at} is not supported"
            ),
            ErrorKind::UnsupportedEscape(c) => {
                write!(f, "escape `\\{c}` at byte {at} is not supported")
            }
            ErrorKind::BadHex => write!(
                f,
                "escape at byte {at} is not `\\xHH` or `\\x{{H...}}` with a valid character"
            ),
            ErrorKind::NestedClass => write!(
                f,
                "`[` at byte {at} inside a class is not supported (nested classes): write `\\[`"
            ),
            ErrorKind::ClassSetOperation(c) => write!(
                f,
                "class operation `{c}{c}` at byte {at} is not supported: write `\\{c}`"
            ),
            ErrorKind::BadRange => {
                write!(f, "class range at byte {at} does not end in a character")
            }
            ErrorKind::BackwardsRange { start, end } => write!(
                f,
                "class range `{start}-{end}` at byte {at} is backwards"
            ),
            ErrorKind::TooBig => write!(
                f,
                "it compiles to more than the limit of {MAX_INSTRUCTIONS} instructions"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PatternError {}

/// One instruction of the NFA program. Targets are indexes into the program.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inst {
    Char(char),
    /// Sorted, non-overlapping ranges.
    Class(Vec<(char, char)>),
    Any {
        newline: bool,
    },
    Look(Look),
    Split(usize, usize),
    Jmp(usize),
    Match,
}

/// A compiled pattern, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The instructions, and whether every match starts at the start of the value (`^...`,
    /// `^a|^b`): then threads start only there, and the search ends when none is left.
    program: Program,
    /// The characters a match can start with, when that is known (no match is empty and none
    /// starts with `.`): while no thread is alive, the search skips to the next of them.
    first: Option<FirstChars>,
}

/// A set of characters: a bitmap for ASCII, ranges for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FirstChars {
    ascii: u128,
    ranges: Vec<(char, char)>,
}

impl FirstChars {
    fn new(ranges: Vec<(char, char)>) -> FirstChars {
        let ranges = parse::canonical(ranges);
        let mut ascii = 0u128;
        for &(lo, hi) in &ranges {
            for c in u32::from(lo)..=u32::from(hi).min(127) {
                ascii |= 1u128 << c;
            }
        }
        FirstChars { ascii, ranges }
    }

    fn contains(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii & (1u128 << u32::from(c)) != 0
        } else {
            class_contains(&self.ranges, c)
        }
    }
}

impl Pattern {
    /// Parses and compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        let node = parse::parse(pattern)?;
        let mut compiler = Compiler { prog: Vec::new() };
        compiler.node(&node)?;
        compiler.push(Inst::Match)?;
        Ok(Pattern::from_program(Program {
            insts: compiler.prog,
            anchored: anchored_at_start(&node),
        }))
    }

    /// The pattern that runs `program` (compiled by [`Pattern::new`], or verified by
    /// [`Program::decode`]).
    pub fn from_program(program: Program) -> Pattern {
        let first = first_chars(&program.insts);
        Pattern { program, first }
    }

    /// The compiled program, to encode ([`Program::encode`]).
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The number of instructions of the compiled program (at most [`MAX_INSTRUCTIONS`]).
    pub fn instructions(&self) -> usize {
        self.program.len()
    }

    /// Whether the pattern matches somewhere in `value`.
    pub fn is_match(&self, value: &str) -> bool {
        self.search(value, &mut 0)
    }

    /// The instruction visits [`Pattern::is_match`] makes on `value`: at most
    /// (2 × [`Pattern::instructions`] + 1) × (characters + 2), whatever the program (for tests
    /// and fuzzing of that bound).
    pub fn cost(&self, value: &str) -> u64 {
        let mut steps = 0;
        self.search(value, &mut steps);
        steps
    }

    /// The Pike VM. `steps` counts instruction visits (at most 2 × program length per
    /// character, plus one round for the end).
    fn search(&self, value: &str, steps: &mut u64) -> bool {
        let n = self.program.insts.len();
        let anchored = self.program.anchored;
        let mut current = SparseSet::new(n);
        let mut next = SparseSet::new(n);
        let mut stack: Vec<usize> = Vec::new();
        let mut chars = value.chars();
        let mut prev: Option<char> = None;
        let mut at: Option<char> = chars.next();
        loop {
            if anchored && prev.is_some() && current.dense.is_empty() {
                return false;
            }
            if let (Some(first), true) = (&self.first, current.dense.is_empty()) {
                // No thread alive: no match can start before the next possible first character.
                while let Some(c) = at.filter(|&c| !first.contains(c)) {
                    *steps += 1;
                    prev = Some(c);
                    at = chars.next();
                }
                if at.is_none() {
                    return false;
                }
            }
            // Unanchored: a new thread starts at every position.
            let ctx = Context { prev, at };
            if (prev.is_none() || !anchored) && self.add(&mut current, &mut stack, 0, ctx, steps) {
                return true;
            }
            let Some(c) = at else {
                return false;
            };
            let after = chars.next();
            let ctx = Context {
                prev: Some(c),
                at: after,
            };
            for &pc in current.dense.iter() {
                *steps += 1;
                let advances = match self.program.insts.get(pc) {
                    Some(Inst::Char(x)) => *x == c,
                    Some(Inst::Class(ranges)) => class_contains(ranges, c),
                    Some(Inst::Any { newline }) => *newline || c != '\n',
                    _ => false,
                };
                if advances && self.add(&mut next, &mut stack, pc + 1, ctx, steps) {
                    return true;
                }
            }
            core::mem::swap(&mut current, &mut next);
            next.clear();
            prev = Some(c);
            at = after;
        }
    }

    /// Adds the state `start` and every state reachable from it without reading a character.
    /// Returns true when that reaches `Match`.
    fn add(
        &self,
        set: &mut SparseSet,
        stack: &mut Vec<usize>,
        start: usize,
        ctx: Context,
        steps: &mut u64,
    ) -> bool {
        stack.clear();
        stack.push(start);
        while let Some(pc) = stack.pop() {
            if !set.insert(pc) {
                continue;
            }
            *steps += 1;
            match self.program.insts.get(pc) {
                Some(Inst::Match) => return true,
                Some(Inst::Jmp(to)) => stack.push(*to),
                Some(Inst::Split(a, b)) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Some(Inst::Look(look)) if ctx.holds(*look) => stack.push(pc + 1),
                _ => {}
            }
        }
        false
    }
}

/// The characters the instructions reachable from the start without reading consume, or
/// `None` when `Match` or `.` is among them (assertions are assumed to hold).
fn first_chars(prog: &[Inst]) -> Option<FirstChars> {
    let mut seen = alloc::vec![false; prog.len()];
    let mut stack = alloc::vec![0usize];
    let mut ranges = Vec::new();
    while let Some(pc) = stack.pop() {
        match seen.get_mut(pc) {
            Some(s) if !*s => *s = true,
            _ => continue,
        }
        match prog.get(pc)? {
            Inst::Char(c) => ranges.push((*c, *c)),
            Inst::Class(r) => ranges.extend_from_slice(r),
            Inst::Any { .. } | Inst::Match => return None,
            Inst::Look(_) => stack.push(pc + 1),
            Inst::Jmp(to) => stack.push(*to),
            Inst::Split(a, b) => {
                stack.push(*a);
                stack.push(*b);
            }
        }
    }
    Some(FirstChars::new(ranges))
}

/// Whether every match of `node` must start at the start of the value.
fn anchored_at_start(node: &Node) -> bool {
    let mut node = node;
    // Iterative along the leftmost path; alternatives recurse, bounded by the tree's depth.
    loop {
        match node {
            Node::Look(Look::Start) => return true,
            Node::Concat(items) => match items.first() {
                Some(first) => node = first,
                None => return false,
            },
            Node::Alt(alternatives) => return alternatives.iter().all(anchored_at_start),
            Node::Repeat {
                node: inner, min, ..
            } if *min > 0 => node = inner,
            _ => return false,
        }
    }
}

/// The characters around the current position.
#[derive(Debug, Clone, Copy)]
struct Context {
    prev: Option<char>,
    at: Option<char>,
}

impl Context {
    fn holds(self, look: Look) -> bool {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        match look {
            Look::Start => self.prev.is_none(),
            Look::End => self.at.is_none(),
            Look::WordBoundary => word(self.prev) != word(self.at),
            Look::NotWordBoundary => word(self.prev) == word(self.at),
        }
    }
}

fn class_contains(ranges: &[(char, char)], c: char) -> bool {
    // Ranges are sorted: find the first that ends at or after `c`.
    let i = ranges.partition_point(|&(_, hi)| hi < c);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= c)
}

/// A set of program indexes with O(1) insert, membership and clear, iterated in insertion
/// order.
#[derive(Debug)]
struct SparseSet {
    dense: Vec<usize>,
    sparse: Vec<usize>,
}

impl SparseSet {
    fn new(capacity: usize) -> SparseSet {
        SparseSet {
            dense: Vec::with_capacity(capacity),
            sparse: alloc::vec![0; capacity],
        }
    }

    /// Inserts `i`; false when it was already there (or out of range).
    fn insert(&mut self, i: usize) -> bool {
        let Some(slot) = self.sparse.get_mut(i) else {
            return false;
        };
        if self.dense.get(*slot) == Some(&i) {
            return false;
        }
        *slot = self.dense.len();
        self.dense.push(i);
        true
    }

    fn clear(&mut self) {
        self.dense.clear();
    }
}

struct Compiler {
    prog: Vec<Inst>,
}

impl Compiler {
    fn push(&mut self, inst: Inst) -> Result<usize, PatternError> {
        if self.prog.len() >= MAX_INSTRUCTIONS {
            return Err(PatternError {
                offset: 0,
                kind: ErrorKind::TooBig,
            });
        }
        self.prog.push(inst);
        Ok(self.prog.len() - 1)
    }

    fn patch(&mut self, at: usize, inst: Inst) {
        if let Some(slot) = self.prog.get_mut(at) {
            *slot = inst;
        }
    }

    /// Compiles `node`; recursion depth is bounded by the tree's, which the parser bounds.
    fn node(&mut self, node: &Node) -> Result<(), PatternError> {
        match node {
            Node::Empty => {}
            Node::Char(c) => {
                self.push(Inst::Char(*c))?;
            }
            Node::Class(ranges) => {
                self.push(Inst::Class(ranges.clone()))?;
            }
            Node::Any { newline } => {
                self.push(Inst::Any { newline: *newline })?;
            }
            Node::Look(look) => {
                self.push(Inst::Look(*look))?;
            }
            Node::Concat(items) => {
                for item in items {
                    self.node(item)?;
                }
            }
            Node::Alt(alternatives) => {
                // split L1, next; L1: a; jmp end; next: split L2, ...; last: z; end:
                let mut jumps = Vec::new();
                let count = alternatives.len();
                for (i, alternative) in alternatives.iter().enumerate() {
                    if i + 1 < count {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.node(alternative)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        let next = self.prog.len();
                        self.patch(split, Inst::Split(split + 1, next));
                    } else {
                        self.node(alternative)?;
                    }
                }
                let end = self.prog.len();
                for jump in jumps {
                    self.patch(jump, Inst::Jmp(end));
                }
            }
            Node::Repeat { node, min, max } => self.repeat(node, *min, *max)?,
        }
        Ok(())
    }

    fn repeat(&mut self, node: &Node, min: u32, max: Option<u32>) -> Result<(), PatternError> {
        match max {
            None if min == 0 => {
                // L: split L+1, end; x; jmp L; end:
                let split = self.push(Inst::Split(0, 0))?;
                self.node(node)?;
                self.push(Inst::Jmp(split))?;
                let end = self.prog.len();
                self.patch(split, Inst::Split(split + 1, end));
            }
            None => {
                // x{min-1}, then L: x; split L, end
                for _ in 1..min {
                    self.node(node)?;
                }
                let start = self.prog.len();
                self.node(node)?;
                let split = self.push(Inst::Split(0, 0))?;
                self.patch(split, Inst::Split(start, split + 1));
            }
            Some(max) => {
                for _ in 0..min {
                    self.node(node)?;
                }
                // Each optional copy: split next, end; x
                let mut splits = Vec::new();
                for _ in min..max {
                    splits.push(self.push(Inst::Split(0, 0))?);
                    self.node(node)?;
                }
                let end = self.prog.len();
                for split in splits {
                    self.patch(split, Inst::Split(split + 1, end));
                }
            }
        }
        Ok(())
    }
}
