//! LEB128 varints and a byte cursor: the one reader and writer of the integers in the compact
//! config encoding ([`crate::wire::compact`]) and in pattern programs ([`crate::pattern::Program`]).

use alloc::vec::Vec;

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Why reading stopped: the byte offset and what was wrong there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) offset: usize,
    pub(crate) what: &'static str,
}

/// A position in bytes being read; every read is checked.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    /// A fault at the current position.
    pub(crate) fn fail(&self, what: &'static str) -> Fault {
        self.fail_at(self.pos, what)
    }

    pub(crate) fn fail_at(&self, offset: usize, what: &'static str) -> Fault {
        Fault { offset, what }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, Fault> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.fail("the bytes end early"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn uint(&mut self) -> Result<u64, Fault> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                break;
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.fail_at(start, "a number longer than 64 bits"))
    }

    /// A byte that is `0` or `1`.
    pub(crate) fn flag(&mut self) -> Result<bool, Fault> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.fail_at(self.pos - 1, "a flag other than 0 or 1")),
        }
    }

    /// A length-prefixed run of bytes, borrowed.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Fault> {
        let start = self.pos;
        let len = self.uint()?;
        let all: &'a [u8] = self.bytes;
        let slice = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .and_then(|end| all.get(self.pos..end))
            .ok_or_else(|| self.fail_at(start, "a length longer than the bytes left"))?;
        self.pos += slice.len();
        Ok(slice)
    }

    /// A length-prefixed UTF-8 string, borrowed.
    pub(crate) fn text(&mut self) -> Result<&'a str, Fault> {
        let start = self.pos;
        let bytes = self.bytes()?;
        core::str::from_utf8(bytes).map_err(|_| self.fail_at(start, "a string that is not UTF-8"))
    }

    /// A count of items that each take at least one byte: refused when more than the bytes
    /// left, so no reader allocates more than its input warrants.
    pub(crate) fn count(&mut self) -> Result<usize, Fault> {
        let start = self.pos;
        let n = self.uint()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.remaining())
            .ok_or_else(|| self.fail_at(start, "a count larger than the bytes left"))
    }
}
