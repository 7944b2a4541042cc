//! [`Program`]: a compiled pattern as bytes, so a control plane compiles each regex once and a
//! proxy only verifies and runs it (the parser and compiler stay out of the filter).
//!
//! # Encoding
//!
//! Integers are LEB128 varints, characters their scalar value as one.
//!
//! ```text
//! program = flags(bit 0: anchored) count inst{count}
//! inst    = 0 char | 1 count (lo hi){count} | 2 (any but \n) | 3 (any) | 4 look(0 ^ | 1 $ | 2 \b | 3 \B)
//!         | 5 split(target target) | 6 jmp(target) | 7 match
//! ```
//!
//! # Why a verified program is safe to run
//!
//! [`Program::decode`] accepts only what the VM can run without a check failing: at most
//! [`MAX_INSTRUCTIONS`] instructions, every jump and split target inside the program, the last
//! instruction `match` (so the next instruction after a character test or an assertion always
//! exists), class ranges of valid `char`s, each ordered (`lo ≤ hi`) and after the one before.
//! Such a program cannot loop and cannot read out of bounds, however its jumps are arranged:
//! the Pike VM adds each state at most once per position of the value (a state already in the
//! set is skipped), so a search costs O(program length × value length), the bound
//! [`super::Pattern::is_match`] has for a pattern it compiled itself. A hostile program can only
//! match differently, never cost more.

use alloc::vec::Vec;
use core::fmt;

use super::parse::Look;
use super::{Inst, MAX_INSTRUCTIONS};
use crate::varint::{self, Cursor, Fault};

/// A compiled pattern: its instructions, and whether every match starts at the start of the
/// value. Built by [`super::Pattern::new`] or by [`Program::decode`]; run by the
/// [`super::Pattern`] that [`super::Pattern::from_program`] makes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub(super) insts: Vec<Inst>,
    pub(super) anchored: bool,
}

/// Why bytes are not a program: the byte offset and what was wrong there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramError {
    offset: usize,
    what: &'static str,
}

impl ProgramError {
    /// The byte offset in the program's bytes where the problem is.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What was wrong there.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pattern program at byte {}: {}", self.offset, self.what)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ProgramError {}

impl From<Fault> for ProgramError {
    fn from(fault: Fault) -> ProgramError {
        ProgramError {
            offset: fault.offset,
            what: fault.what,
        }
    }
}

const CHAR: u8 = 0;
const CLASS: u8 = 1;
const ANY_BUT_NEWLINE: u8 = 2;
const ANY: u8 = 3;
const LOOK: u8 = 4;
const SPLIT: u8 = 5;
const JMP: u8 = 6;
const MATCH: u8 = 7;

impl Program {
    /// The number of instructions (at most [`MAX_INSTRUCTIONS`]).
    pub fn len(&self) -> usize {
        self.insts.len()
    }

    /// Never true for a compiled or decoded program (it ends in `match`).
    pub fn is_empty(&self) -> bool {
        self.insts.is_empty()
    }

    /// Appends the program's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.anchored));
        varint::put(out, self.insts.len() as u64);
        for inst in &self.insts {
            match inst {
                Inst::Char(c) => {
                    out.push(CHAR);
                    varint::put(out, u64::from(u32::from(*c)));
                }
                Inst::Class(ranges) => {
                    out.push(CLASS);
                    varint::put(out, ranges.len() as u64);
                    for &(lo, hi) in ranges {
                        varint::put(out, u64::from(u32::from(lo)));
                        varint::put(out, u64::from(u32::from(hi)));
                    }
                }
                Inst::Any { newline: false } => out.push(ANY_BUT_NEWLINE),
                Inst::Any { newline: true } => out.push(ANY),
                Inst::Look(look) => {
                    out.push(LOOK);
                    out.push(match look {
                        Look::Start => 0,
                        Look::End => 1,
                        Look::WordBoundary => 2,
                        Look::NotWordBoundary => 3,
                    });
                }
                Inst::Split(a, b) => {
                    out.push(SPLIT);
                    varint::put(out, *a as u64);
                    varint::put(out, *b as u64);
                }
                Inst::Jmp(to) => {
                    out.push(JMP);
                    varint::put(out, *to as u64);
                }
                Inst::Match => out.push(MATCH),
            }
        }
    }

    /// Reads and verifies a program that is all of `bytes` (total: any bytes give a program
    /// the VM runs safely, or an error naming the offset and the problem).
    pub fn decode(bytes: &[u8]) -> Result<Program, ProgramError> {
        let mut cursor = Cursor::new(bytes);
        let anchored = match cursor.byte()? {
            0 => false,
            1 => true,
            _ => return Err(cursor.fail_at(0, "flags other than 0 or 1").into()),
        };
        let count_at = cursor.pos;
        let count = cursor.count()?;
        // 1..=MAX_INSTRUCTIONS as one comparison (0 wraps to the largest number), one refusal.
        if count.wrapping_sub(1) >= MAX_INSTRUCTIONS {
            let what = if count == 0 {
                "a program without instructions"
            } else {
                "more instructions than the limit of 2000"
            };
            return Err(cursor.fail_at(count_at, what).into());
        }
        let mut insts = Vec::new();
        for _ in 0..count {
            insts.push(instruction(&mut cursor, count)?);
        }
        if insts.last() != Some(&Inst::Match) {
            return Err(cursor
                .fail("a last instruction other than `match` (a step could leave the program)")
                .into());
        }
        if cursor.remaining() > 0 {
            return Err(cursor.fail("bytes after the last instruction").into());
        }
        Ok(Program { insts, anchored })
    }
}

/// One instruction of a program of `count` instructions.
fn instruction(cursor: &mut Cursor<'_>, count: usize) -> Result<Inst, Fault> {
    let at = cursor.pos;
    Ok(match cursor.byte()? {
        CHAR => Inst::Char(character(cursor)?),
        CLASS => {
            let n = cursor.count()?;
            let mut ranges: Vec<(char, char)> = Vec::new();
            for _ in 0..n {
                let range_at = cursor.pos;
                let lo = character(cursor)?;
                let hi = character(cursor)?;
                if hi < lo {
                    return Err(
                        cursor.fail_at(range_at, "a class range whose end is below its start")
                    );
                }
                if ranges.last().is_some_and(|&(_, before)| lo <= before) {
                    return Err(cursor.fail_at(
                        range_at,
                        "a class range that does not come after the range before it",
                    ));
                }
                ranges.push((lo, hi));
            }
            Inst::Class(ranges)
        }
        ANY_BUT_NEWLINE => Inst::Any { newline: false },
        ANY => Inst::Any { newline: true },
        LOOK => Inst::Look(match cursor.byte()? {
            0 => Look::Start,
            1 => Look::End,
            2 => Look::WordBoundary,
            3 => Look::NotWordBoundary,
            _ => {
                return Err(
                    cursor.fail_at(cursor.pos - 1, "an assertion other than ^, $, \\b or \\B")
                )
            }
        }),
        SPLIT => Inst::Split(target(cursor, count)?, target(cursor, count)?),
        JMP => Inst::Jmp(target(cursor, count)?),
        MATCH => Inst::Match,
        _ => return Err(cursor.fail_at(at, "an instruction kind other than 0 to 7")),
    })
}

fn character(cursor: &mut Cursor<'_>) -> Result<char, Fault> {
    let at = cursor.pos;
    let v = cursor.uint()?;
    u32::try_from(v)
        .ok()
        .and_then(char::from_u32)
        .ok_or_else(|| cursor.fail_at(at, "a character that is not a Unicode scalar value"))
}

fn target(cursor: &mut Cursor<'_>, count: usize) -> Result<usize, Fault> {
    let at = cursor.pos;
    let v = cursor.uint()?;
    usize::try_from(v)
        .ok()
        .filter(|t| *t < count)
        .ok_or_else(|| cursor.fail_at(at, "a jump target past the end of the program"))
}
