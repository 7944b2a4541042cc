//! The compact encoding of a `GET /v1/config` answer for proxies: the policies that concern a
//! proxy in their sidecar form ([`SidecarPolicy`]: what matching, ordering, timing and the
//! decision need, regexes compiled to pattern programs), as a small versioned binary the filter
//! reads without a JSON parser, a policy validator or a regex compiler (each would be a large
//! part of the Wasm module, which Envoy compiles on every sidecar start).
//!
//! # Format (version 3)
//!
//! All integers are LEB128 varints (`u64`; `priority` zig-zag), a string is its byte length
//! then UTF-8 bytes, an optional value is a byte `0` (absent) or `1` then the value, a list is
//! its length then the items, an enum or a flag is one byte.
//!
//! ```text
//! "BFC" 0x03  version  count  policy*
//! policy   = name selector list(rule) sampling(0 random | 1 request) opt(window) priority
//!            enabled opt(heartbeat_seconds) opt(stored_at_ms)
//! selector = opt(service) opt(namespace) list(key value)                   (pod labels)
//! rule     = opt(match) opt(match) list(name match) opt(caller) fault      (method, path, headers)
//! match    = 0 string (exact) | 1 string (prefix) | 2 length program       (crate::pattern::Program)
//! caller   = opt(namespace) opt(service_account)
//! fault    = ppm start_delay_ms duration_seconds target(0 request | 1 response)
//!            opt(fixed_ms jitter_ms) opt(http_status opt(grpc_status) body list(name value))
//!            reset(flag)
//! window   = start_ms end_ms
//! ```
//!
//! # What a proxy checks
//!
//! Policies are validated once, by the control plane, before it stores them
//! ([`crate::policy::validate`]); it builds the sidecar form from the validated document
//! ([`SidecarPolicy::from_document`]). [`decode`] checks only the wire form's own invariants and
//! the ranges the engine relies on, with the constants the validation uses: a percentage of at
//! most [`crate::policy::PPM_SCALE`] ppm, delays within [`MAX_DELAY_MS`], durations within
//! [`MAX_DURATION_SECONDS`], heartbeats in 1..=[`MAX_HEARTBEAT_SECONDS`], statuses in
//! [`HTTP_STATUSES`] and up to [`MAX_GRPC_STATUS`], at most [`MAX_RULES`] rules and
//! [`MAX_HEADERS`] headers, header names and values an HTTP header may have, an abort body of at
//! most [`MAX_BODY_BYTES`], and every pattern program verified ([`Program::decode`]). It is
//! total: any bytes give an answer or a [`CompactError`] naming the byte offset and what was
//! wrong, never a panic, and it allocates no more than the input's length warrants (every item
//! costs at least one input byte).
//!
//! # Versions and the upgrade order
//!
//! A filter asks for this version with `encoding=compact&compact_version=3` and
//! `accept: application/vnd.boifi.config.v3` ([`MEDIA_TYPE`]); a control plane answers it to
//! those, and version 2 ([`v2`]: whole documents, regexes as text) to filters that ask with
//! `encoding=compact` alone. A control plane older than version 3 ignores `compact_version` and
//! answers version 2, which this filter refuses as malformed ("… version 2 …: this filter reads
//! version 3; upgrade the control plane first"), keeping the set it applied: status shows it
//! pending. So **upgrade the control plane first, then the filters** (docs/API.md).

pub mod v2;

use alloc::string::String;
use alloc::vec::Vec;

use crate::compiled::{
    AbortAction, CallerMatch, CompileError, Matcher, SidecarPolicy, SidecarRule, SidecarSelector,
};
use crate::pattern::{Pattern, Program};
use crate::policy::name::{is_header_name, is_header_value};
use crate::policy::{
    Delay, FaultTarget, Percentage, PolicyDocument, Sampling, Window, HTTP_STATUSES,
    MAX_BODY_BYTES, MAX_DELAY_MS, MAX_DURATION_SECONDS, MAX_GRPC_STATUS, MAX_HEADERS,
    MAX_HEARTBEAT_SECONDS, MAX_RULES,
};
use crate::varint::{self, Cursor, Fault};

/// The first bytes of every compact answer a filter reads: `BFC` and the format version.
pub const MAGIC: &[u8; 4] = b"BFC\x03";

/// The media type of the compact answer (`Content-Type`, and the filters' `accept`).
pub const MEDIA_TYPE: &str = "application/vnd.boifi.config.v3";

/// The compact format version filters ask for (`compact_version=3`).
pub const FORMAT_VERSION: u64 = 3;

/// A `/v1/config` answer as proxies get it: the config version and the policies in their
/// sidecar form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SidecarConfig {
    /// The control plane's config version.
    pub version: u64,
    /// The policies that concern the proxy.
    pub policies: Vec<SidecarPolicy>,
}

impl SidecarConfig {
    /// The sidecar form of an answer of documents ([`SidecarPolicy::from_document`]).
    pub fn from_documents(
        version: u64,
        policies: &[PolicyDocument],
    ) -> Result<SidecarConfig, CompileError> {
        Ok(SidecarConfig {
            version,
            policies: SidecarPolicy::from_documents(policies)?,
        })
    }
}

/// Why bytes are not a compact answer a proxy may apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// The bytes are not the format (or another version of it).
    Malformed {
        /// Where reading stopped.
        offset: usize,
        /// What was expected or wrong there.
        what: &'static str,
    },
    /// A well-formed policy with a value no validated policy holds.
    Invalid {
        /// Where the value is.
        offset: usize,
        /// The policy's name.
        policy: String,
        /// The field and its bound.
        what: &'static str,
    },
}

impl CompactError {
    /// Appends the message (what `Display` writes) to `out`, without `core::fmt`: the Wasm
    /// filter logs it and reports it in a refusal.
    pub fn push_message(&self, out: &mut String) {
        match self {
            CompactError::Malformed { offset, .. } => {
                out.push_str("compact config at byte ");
                crate::text::push_decimal(out, *offset as u64);
                out.push_str(": ");
            }
            CompactError::Invalid { offset, policy, .. } => {
                out.push_str("compact config, policy `");
                out.push_str(policy);
                out.push_str("` at byte ");
                crate::text::push_decimal(out, *offset as u64);
                out.push_str(": ");
            }
        }
        out.push_str(self.what());
    }

    /// What was expected or wrong.
    fn what(&self) -> &'static str {
        match self {
            CompactError::Malformed { what, .. } | CompactError::Invalid { what, .. } => what,
        }
    }

    /// Where reading stopped, or where the refused value is.
    pub fn offset(&self) -> usize {
        match self {
            CompactError::Malformed { offset, .. } | CompactError::Invalid { offset, .. } => {
                *offset
            }
        }
    }
}

impl core::fmt::Display for CompactError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut out = String::new();
        self.push_message(&mut out);
        f.write_str(&out)
    }
}

impl From<Fault> for CompactError {
    fn from(fault: Fault) -> CompactError {
        CompactError::Malformed {
            offset: fault.offset,
            what: fault.what,
        }
    }
}

/// Encodes an answer.
pub fn encode(config: &SidecarConfig) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = config.policies.iter().map(encode_policy).collect();
    assemble(config.version, parts.iter().map(Vec::as_slice))
}

/// One policy's part of an answer, so a server can encode each policy once and [`assemble`]
/// the answer of every proxy from the parts.
pub fn encode_policy(policy: &SidecarPolicy) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.policy(policy);
    w.0
}

/// An answer from its version and the [`encode_policy`] parts of its policies.
pub fn assemble<'a>(version: u64, parts: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    assemble_with(MAGIC, version, parts)
}

fn assemble_with<'a>(
    magic: &[u8; 4],
    version: u64,
    parts: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(magic);
    varint::put(&mut out, version);
    varint::put(&mut out, parts.len() as u64);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// Decodes and verifies an answer (total: never panics, whatever the bytes).
pub fn decode(bytes: &[u8]) -> Result<SidecarConfig, CompactError> {
    let mut r = Reader {
        cursor: Cursor::new(bytes),
        policy: "",
    };
    check_magic(bytes)?;
    r.cursor.pos = MAGIC.len();
    let version = r.cursor.uint()?;
    let count = r.cursor.count()?;
    let mut policies = Vec::new();
    for _ in 0..count {
        policies.push(r.policy()?);
    }
    if r.cursor.remaining() > 0 {
        return Err(r.cursor.fail("bytes after the last policy").into());
    }
    Ok(SidecarConfig { version, policies })
}

fn check_magic(bytes: &[u8]) -> Result<(), CompactError> {
    let malformed = |what| CompactError::Malformed { offset: 0, what };
    match bytes.get(..MAGIC.len()) {
        Some(m) if m == MAGIC.as_slice() => Ok(()),
        Some(m) if m == v2::MAGIC.as_slice() => Err(malformed(
            "an answer of compact version 2, from a control plane older than this filter: this filter reads version 3; upgrade the control plane first",
        )),
        _ => Err(malformed(
            "not a compact config answer of version 3 (magic `BFC\\x03`)",
        )),
    }
}

/// The config version in the header of a version 3 answer, read without decoding the rest: a
/// proxy that cannot decode an answer can still name the version it refuses. `None` when not
/// even the header is readable. Total.
pub fn peek_version(bytes: &[u8]) -> Option<u64> {
    check_magic(bytes).ok()?;
    let mut cursor = Cursor::new(bytes);
    cursor.pos = MAGIC.len();
    cursor.uint().ok()
}

/// The writer of both versions' encoders (each adds its own parts: [`v2`] in its module).
struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, v: u64) {
        varint::put(&mut self.0, v);
    }

    fn len(&mut self, n: usize) {
        self.uint(n as u64);
    }

    fn flag(&mut self, on: bool) {
        self.0.push(u8::from(on));
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt<T: ?Sized>(&mut self, v: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        self.flag(v.is_some());
        if let Some(v) = v {
            write(self, v);
        }
    }

    fn opt_str(&mut self, s: &Option<String>) {
        self.opt(s.as_deref(), Self::str);
    }

    fn pairs(&mut self, pairs: &[(String, String)]) {
        self.len(pairs.len());
        for (k, v) in pairs {
            self.str(k);
            self.str(v);
        }
    }

    fn matcher(&mut self, m: &Matcher) {
        match m {
            Matcher::Exact(s) => {
                self.0.push(0);
                self.str(s);
            }
            Matcher::Prefix(s) => {
                self.0.push(1);
                self.str(s);
            }
            Matcher::Program(p) => {
                self.0.push(2);
                let mut program = Vec::new();
                p.program().encode(&mut program);
                self.len(program.len());
                self.0.extend_from_slice(&program);
            }
        }
    }

    fn policy(&mut self, p: &SidecarPolicy) {
        self.str(&p.name);
        self.opt_str(&p.selector.service);
        self.opt_str(&p.selector.namespace);
        self.pairs(&p.selector.labels);
        self.len(p.rules.len());
        for rule in &p.rules {
            self.rule(rule);
        }
        self.0.push(match p.sampling {
            Sampling::Random => 0,
            Sampling::Request => 1,
        });
        self.opt(p.window.as_ref(), |w, window| {
            w.uint(window.start_ms);
            w.uint(window.end_ms);
        });
        // Zig-zag, so a negative priority stays short.
        let priority = i64::from(p.priority);
        self.uint(((priority << 1) ^ (priority >> 63)) as u64);
        self.flag(p.enabled);
        self.opt(p.heartbeat_seconds.as_ref(), |w, h| w.uint(*h));
        self.opt(p.stored_at_ms.as_ref(), |w, s| w.uint(*s));
    }

    fn rule(&mut self, rule: &SidecarRule) {
        self.opt(rule.method.as_ref(), Self::matcher);
        self.opt(rule.path.as_ref(), Self::matcher);
        self.len(rule.headers.len());
        for (name, m) in &rule.headers {
            self.str(name);
            self.matcher(m);
        }
        self.opt(rule.source.as_ref(), |w, caller| {
            w.opt_str(&caller.namespace);
            w.opt_str(&caller.service_account);
        });
        self.uint(u64::from(rule.percentage.ppm()));
        self.uint(rule.start_delay_ms);
        self.uint(rule.duration_seconds);
        self.0.push(match rule.target {
            FaultTarget::Request => 0,
            FaultTarget::Response => 1,
        });
        self.opt(rule.delay.as_ref(), |w, d| {
            w.uint(d.fixed_delay_ms);
            w.uint(d.jitter_ms);
        });
        self.opt(rule.abort.as_ref(), |w, a| {
            w.uint(u64::from(a.http_status));
            w.opt(a.grpc_status.as_ref(), |w, g| w.uint(u64::from(*g)));
            w.str(&a.body);
            w.pairs(&a.headers);
        });
        self.flag(rule.reset);
    }
}

struct Reader<'a> {
    cursor: Cursor<'a>,
    /// The name of the policy being read, for [`CompactError::Invalid`].
    policy: &'a str,
}

impl<'a> Reader<'a> {
    /// A value at `offset` outside what validation allows.
    fn invalid(&self, offset: usize, what: &'static str) -> CompactError {
        CompactError::Invalid {
            offset,
            policy: String::from(self.policy),
            what,
        }
    }

    /// A number, refused with `what` when above `max`.
    fn at_most(&mut self, max: u64, what: &'static str) -> Result<u64, CompactError> {
        let at = self.cursor.pos;
        let v = self.cursor.uint()?;
        if v > max {
            return Err(self.invalid(at, what));
        }
        Ok(v)
    }

    /// A list length, refused with `what` when above `max`.
    fn count_at_most(&mut self, max: usize, what: &'static str) -> Result<usize, CompactError> {
        let at = self.cursor.pos;
        let n = self.cursor.count()?;
        if n > max {
            return Err(self.invalid(at, what));
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<String, CompactError> {
        Ok(String::from(self.cursor.text()?))
    }

    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, CompactError>,
    ) -> Result<Option<T>, CompactError> {
        if self.cursor.flag()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_str(&mut self) -> Result<Option<String>, CompactError> {
        self.opt(Self::str)
    }

    /// One of `n` kinds (a byte below `n`), refused with `what`.
    fn kind(&mut self, n: u8, what: &'static str) -> Result<u8, CompactError> {
        let b = self.cursor.byte()?;
        if b >= n {
            return Err(self.cursor.fail_at(self.cursor.pos - 1, what).into());
        }
        Ok(b)
    }

    fn matcher(&mut self) -> Result<Matcher, CompactError> {
        let kind = self.kind(3, "a string match other than exact, prefix or program")?;
        if kind < 2 {
            // Exact and prefix share one string read.
            let text = self.str()?;
            return Ok(if kind == 0 {
                Matcher::Exact(text)
            } else {
                Matcher::Prefix(text)
            });
        }
        let bytes = self.cursor.bytes()?;
        let start = self.cursor.pos - bytes.len();
        let program = Program::decode(bytes).map_err(|e| CompactError::Malformed {
            offset: start + e.offset(),
            what: e.what(),
        })?;
        Ok(Matcher::Program(Pattern::from_program(program)))
    }

    /// A header name a rule matches: an HTTP token, lower-case.
    fn header_name(&mut self, what: &'static str) -> Result<&'a str, CompactError> {
        let at = self.cursor.pos;
        let name = self.cursor.text()?;
        if !is_header_name(name) || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(self.invalid(at, what));
        }
        Ok(name)
    }

    fn policy(&mut self) -> Result<SidecarPolicy, CompactError> {
        self.policy = self.cursor.text()?;
        // Filled in place, as a rule is ([`Reader::rule`]): one drop path on a refusal.
        let mut policy = SidecarPolicy {
            name: String::from(self.policy),
            selector: SidecarSelector::default(),
            enabled: false,
            priority: 0,
            sampling: Sampling::Random,
            window: None,
            stored_at_ms: None,
            heartbeat_seconds: None,
            rules: Vec::new(),
        };
        policy.selector.service = self.opt_str()?;
        policy.selector.namespace = self.opt_str()?;
        policy.selector.labels = self.pairs()?;
        let count = self.count_at_most(MAX_RULES, "spec.rules: more than the limit of 64")?;
        for _ in 0..count {
            policy.rules.push(self.rule()?);
        }
        if self.kind(2, "spec.sampling: neither random nor request")? == 1 {
            policy.sampling = Sampling::Request;
        }
        policy.window = self.opt(|r| {
            Ok(Window {
                start_ms: r.cursor.uint()?,
                end_ms: r.cursor.uint()?,
            })
        })?;
        let at = self.cursor.pos;
        let zigzag = self.cursor.uint()?;
        policy.priority = i32::try_from(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
            .map_err(|_| self.invalid(at, "spec.priority: beyond 32 bits"))?;
        policy.enabled = self.cursor.flag()?;
        policy.heartbeat_seconds = self.opt(|r| {
            // 1..=86400 as one check: 0 wraps to the largest number.
            let at = r.cursor.pos;
            let seconds = r.cursor.uint()?;
            if seconds.wrapping_sub(1) >= MAX_HEARTBEAT_SECONDS {
                return Err(r.invalid(at, "spec.heartbeat_seconds: outside 1..=86400"));
            }
            Ok(seconds)
        })?;
        policy.stored_at_ms = self.opt(|r| Ok(r.cursor.uint()?))?;
        Ok(policy)
    }

    fn pairs(&mut self) -> Result<Vec<(String, String)>, CompactError> {
        let n = self.cursor.count()?;
        let mut pairs = Vec::new();
        for _ in 0..n {
            // Both read before either is copied: a refused value drops nothing.
            let key = self.cursor.text()?;
            let value = self.cursor.text()?;
            pairs.push((String::from(key), String::from(value)));
        }
        Ok(pairs)
    }

    fn rule(&mut self) -> Result<SidecarRule, CompactError> {
        // Filled in place: on a refusal only the rule is dropped, one drop path for every
        // field read after the first (the Wasm module's size).
        let mut rule = SidecarRule {
            method: self.opt(Self::matcher)?,
            path: None,
            headers: Vec::new(),
            source: None,
            percentage: Percentage::NEVER,
            start_delay_ms: 0,
            duration_seconds: 0,
            target: FaultTarget::Request,
            delay: None,
            abort: None,
            reset: false,
        };
        rule.path = self.opt(Self::matcher)?;
        let n = self.count_at_most(MAX_HEADERS, "match.headers: more than the limit of 32")?;
        for _ in 0..n {
            let name =
                self.header_name("match.headers: a name that is not a lower-case header name")?;
            let matcher = self.matcher()?;
            rule.headers.push((String::from(name), matcher));
        }
        rule.source = self.opt(|r| {
            Ok(CallerMatch {
                namespace: r.opt_str()?,
                service_account: r.opt_str()?,
            })
        })?;
        let at = self.cursor.pos;
        let ppm = self.cursor.uint()?;
        rule.percentage = u32::try_from(ppm)
            .ok()
            .and_then(Percentage::from_ppm)
            .ok_or_else(|| self.invalid(at, "fault.percentage: above 1000000 ppm (100 %)"))?;
        rule.start_delay_ms = self.at_most(
            MAX_DELAY_MS,
            "fault.start_delay_ms: above the cap of 300000 ms",
        )?;
        rule.duration_seconds = self.at_most(
            MAX_DURATION_SECONDS,
            "fault.duration_seconds: above the limit of 2592000",
        )?;
        if self.kind(2, "fault.target: neither request nor response")? == 1 {
            rule.target = FaultTarget::Response;
        }
        rule.delay = self.opt(|r| {
            Ok(Delay {
                fixed_delay_ms: r.at_most(
                    MAX_DELAY_MS,
                    "fault.delay.fixed_delay_ms: above the cap of 300000 ms",
                )?,
                jitter_ms: r.at_most(
                    MAX_DELAY_MS,
                    "fault.delay.jitter_ms: above the cap of 300000 ms",
                )?,
            })
        })?;
        rule.abort = self.opt(Self::abort)?;
        rule.reset = self.cursor.flag()?;
        Ok(rule)
    }

    fn abort(&mut self) -> Result<AbortAction, CompactError> {
        let at = self.cursor.pos;
        let status = self.cursor.uint()?;
        let http_status = u16::try_from(status)
            .ok()
            .filter(|s| HTTP_STATUSES.contains(s))
            .ok_or_else(|| self.invalid(at, "fault.abort.httpStatus: outside 200..=599"))?;
        let grpc_status = self.opt(|r| {
            let g = r.at_most(
                u64::from(MAX_GRPC_STATUS),
                "fault.abort.grpcStatus: outside 0..=16",
            )?;
            Ok(g as u8)
        })?;
        let at = self.cursor.pos;
        let body = self.cursor.text()?;
        if body.len() > MAX_BODY_BYTES {
            return Err(self.invalid(at, "fault.abort.body: longer than the limit of 16384 bytes"));
        }
        // Filled in place, as a rule is ([`Reader::rule`]): one drop path on a refusal.
        let mut abort = AbortAction {
            http_status,
            grpc_status,
            body: String::from(body),
            headers: Vec::new(),
        };
        let n = self.count_at_most(
            MAX_HEADERS,
            "fault.abort.headers: more than the limit of 32",
        )?;
        for _ in 0..n {
            let at = self.cursor.pos;
            let name = self
                .header_name("fault.abort.headers: a name that is not a lower-case header name")?;
            if name.starts_with(':') {
                return Err(self.invalid(at, "fault.abort.headers: a pseudo-header"));
            }
            let at = self.cursor.pos;
            let value = self.cursor.text()?;
            if !is_header_value(value) {
                return Err(self.invalid(
                    at,
                    "fault.abort.headers: a value with a control character (CR, LF or NUL)",
                ));
            }
            abort
                .headers
                .push((String::from(name), String::from(value)));
        }
        Ok(abort)
    }
}

#[cfg(test)]
mod tests;
