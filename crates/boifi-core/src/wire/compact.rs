//! The compact encoding of [`ConfigResponse`] for sidecars: the same answer as the JSON form of
//! `GET /v1/config`, as a small versioned binary the filter reads without a JSON parser (the
//! JSON reader and its messages would be most of the Wasm module's size, and Envoy compiles
//! the whole module on every sidecar start). The server sends it when the query says
//! `encoding=compact`; JSON stays the default.
//!
//! # Format (version 2)
//!
//! All integers are LEB128 varints (`u64`; `priority` zig-zag), a string is its byte length
//! then UTF-8 bytes, an optional value is a byte `0` (absent) or `1` then the value, a list
//! or map is its length then the items (maps in key order), an enum is one byte.
//!
//! ```text
//! "BFC" 0x02  version  count  policy*
//! policy   = name opt(version) opt(namespace) map(labels) map(annotations)
//!            selector list(rule) sampling opt(window) priority enabled
//!            opt(heartbeat_seconds) opt(status)
//! selector = opt(service) opt(namespace) map(labels)
//! rule     = opt(match) opt(match) list(name match) opt(source) fault      (method, path, headers)
//! match    = kind(0 exact | 1 prefix | 2 regex) string
//! source   = opt(service) opt(namespace) opt(service account)
//! fault    = ppm start_delay_ms duration_seconds target(0 request | 1 response)
//!            opt(fixed_ms jitter_ms) opt(http_status opt(grpc_status) opt(body) map(headers))
//!            reset(flag)
//! window   = start_ms end_ms;  status = stored_at_ms opt(expires_at_ms) revision
//! ```
//!
//! # Versions
//!
//! Version 1 (magic `BFC\x01`) is version 2 without `heartbeat_seconds`, `target` and
//! `reset`. [`encode`] writes only version 2: version 1 cannot carry a response-phase fault, a
//! reset or a heartbeat, so a server that sent it would have a filter apply such a policy as
//! something else. [`decode`] reads both: a version 1 answer (from a server older than the
//! filter) holds only what version 1 can say, read with those fields at their defaults, which
//! is exactly what that server meant. A filter older than the server reads only version 1: it
//! treats a version 2 answer as malformed (its log names the magic it expected), keeps the set
//! it applied, and status shows it pending. So the filters are upgraded first, then the
//! server (docs/API.md).
//!
//! [`decode`] is total: any bytes give a response or a [`CompactError`] naming the offset and
//! what was wrong, never a panic, and it allocates no more than the input's length warrants
//! (every item costs at least one input byte). Every policy it decodes goes through
//! [`validate`], the validation the JSON/YAML reader runs, so an answer holds nothing a
//! document could not (a delay above the cap, a status outside its range, a regex that does
//! not compile); a refused policy is named with every problem's field path.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::ConfigResponse;
use crate::policy::validate::{self, validate};
use crate::policy::{
    Abort, Delay, Fault, FaultTarget, FieldError, FieldErrorKind, HeaderMatch, Metadata,
    PolicyDocument, PolicySpec, PolicyStatus, RequestMatch, Rule, Sampling, Selector, SourceMatch,
    StringMatch, ValidationErrors, Window,
};

/// The first bytes of every compact answer this crate writes: `BFC` and the format version.
pub const MAGIC: &[u8; 4] = b"BFC\x02";

/// The first bytes of a version 1 answer, which [`decode`] still reads (an older server's).
pub const MAGIC_V1: &[u8; 4] = b"BFC\x01";

/// The media type of the compact answer (`Content-Type`).
pub const MEDIA_TYPE: &str = "application/vnd.boifi.config.v2";

/// Why bytes are not a compact `ConfigResponse` a sidecar may apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// The bytes are not the format.
    #[error("compact config at byte {offset}: {what}")]
    Malformed {
        /// Where reading stopped.
        offset: usize,
        /// What was expected or wrong there.
        what: &'static str,
    },
    /// A policy in the format that [`validate`] refuses, as the JSON reader would.
    #[error("compact config, policy `{name}` at byte {offset}: {errors}")]
    Invalid {
        /// Where the policy starts.
        offset: usize,
        /// Its name.
        name: String,
        /// Every problem, with its field path.
        errors: ValidationErrors,
    },
}

impl CompactError {
    /// Where reading stopped, or where the refused policy starts.
    pub fn offset(&self) -> usize {
        match self {
            CompactError::Malformed { offset, .. } | CompactError::Invalid { offset, .. } => {
                *offset
            }
        }
    }
}

/// Encodes a response in the compact form.
pub fn encode(response: &ConfigResponse) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = response.policies.iter().map(encode_policy).collect();
    assemble(response.version, parts.iter().map(Vec::as_slice))
}

/// One policy's part of a compact response, so a server can encode each policy once and
/// [`assemble`] the answer of every sidecar from the parts.
pub fn encode_policy(policy: &PolicyDocument) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.policy(policy);
    w.0
}

/// A compact response from its version and the [`encode_policy`] parts of its policies.
pub fn assemble<'a>(version: u64, parts: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(16));
    w.0.extend_from_slice(MAGIC);
    w.uint(version);
    w.len(parts.len());
    for part in parts {
        w.0.extend_from_slice(part);
    }
    w.0
}

/// Decodes a compact response and validates each policy (total: never panics, whatever the
/// bytes).
pub fn decode(bytes: &[u8]) -> Result<ConfigResponse, CompactError> {
    let mut r = Reader {
        bytes,
        pos: 0,
        v1: false,
    };
    r.v1 =
        match format_version(bytes) {
            Some(FormatVersion::V1) => true,
            Some(FormatVersion::V2) => false,
            None => return Err(r.fail(
                "not a compact config answer of version 2 or 1 (magic `BFC\\x02` or `BFC\\x01`)",
            )),
        };
    r.pos = MAGIC.len();
    let version = r.uint()?;
    let mut policies = Vec::new();
    for _ in 0..r.uint()? {
        policies.push(r.policy()?);
    }
    if r.pos != bytes.len() {
        return Err(r.fail("bytes after the last policy"));
    }
    Ok(ConfigResponse { version, policies })
}

/// The config version in the header of a compact answer (the magic, then the version), read
/// without decoding the rest: a sidecar that cannot decode an answer can still name the version
/// it refuses. `None` when not even the header is readable. Total.
pub fn peek_version(bytes: &[u8]) -> Option<u64> {
    format_version(bytes)?;
    Reader {
        bytes,
        pos: MAGIC.len(),
        v1: false,
    }
    .uint()
    .ok()
}

/// The format versions [`decode`] reads.
enum FormatVersion {
    V1,
    V2,
}

fn format_version(bytes: &[u8]) -> Option<FormatVersion> {
    let magic = bytes.get(..MAGIC.len())?;
    if magic == MAGIC.as_slice() {
        Some(FormatVersion::V2)
    } else if magic == MAGIC_V1.as_slice() {
        Some(FormatVersion::V1)
    } else {
        None
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
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

    fn map(&mut self, map: &BTreeMap<String, String>) {
        self.len(map.len());
        for (k, v) in map {
            self.str(k);
            self.str(v);
        }
    }

    fn string_match(&mut self, m: &StringMatch) {
        let (kind, s) = match m {
            StringMatch::Exact(s) => (0, s),
            StringMatch::Prefix(s) => (1, s),
            StringMatch::Regex(s) => (2, s),
        };
        self.0.push(kind);
        self.str(s);
    }

    fn policy(&mut self, p: &PolicyDocument) {
        let m = &p.metadata;
        self.str(&m.name);
        self.opt_str(&m.version);
        self.opt_str(&m.namespace);
        self.map(&m.labels);
        self.map(&m.annotations);
        let s = &p.spec;
        self.opt_str(&s.selector.service);
        self.opt_str(&s.selector.namespace);
        self.map(&s.selector.labels);
        self.len(s.rules.len());
        for rule in &s.rules {
            self.rule(rule);
        }
        self.0.push(match s.sampling {
            Sampling::Random => 0,
            Sampling::Request => 1,
        });
        self.opt(s.window.as_ref(), |w, window| {
            w.uint(window.start_ms);
            w.uint(window.end_ms);
        });
        // Zig-zag, so a negative priority stays short.
        let priority = i64::from(s.priority);
        self.uint(((priority << 1) ^ (priority >> 63)) as u64);
        self.flag(s.enabled);
        self.opt(s.heartbeat_seconds.as_ref(), |w, h| w.uint(*h));
        self.opt(p.status.as_ref(), |w, status| {
            w.uint(status.stored_at_ms);
            w.opt(status.expires_at_ms.as_ref(), |w, e| w.uint(*e));
            w.uint(status.revision);
        });
    }

    fn rule(&mut self, rule: &Rule) {
        let m = &rule.matches;
        self.opt(m.method.as_ref(), Self::string_match);
        self.opt(m.path.as_ref(), Self::string_match);
        self.len(m.headers.len());
        for h in &m.headers {
            self.str(&h.name);
            self.string_match(&h.value);
        }
        self.opt(m.source.as_ref(), |w, source| {
            w.opt_str(&source.service);
            w.opt_str(&source.namespace);
            w.opt_str(&source.service_account);
        });
        let f = &rule.fault;
        self.uint(u64::from(f.percentage.ppm()));
        self.uint(f.start_delay_ms);
        self.uint(f.duration_seconds);
        self.0.push(match f.target {
            FaultTarget::Request => 0,
            FaultTarget::Response => 1,
        });
        self.opt(f.delay.as_ref(), |w, d| {
            w.uint(d.fixed_delay_ms);
            w.uint(d.jitter_ms);
        });
        self.opt(f.abort.as_ref(), |w, a| {
            w.uint(u64::from(a.http_status));
            w.opt(a.grpc_status.as_ref(), |w, g| w.uint(u64::from(*g)));
            w.opt_str(&a.body);
            w.map(&a.headers);
        });
        self.flag(f.reset);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// A version 1 answer: without the fields version 2 added.
    v1: bool,
}

impl<'a> Reader<'a> {
    fn fail(&self, what: &'static str) -> CompactError {
        self.fail_at(self.pos, what)
    }

    fn fail_at(&self, offset: usize, what: &'static str) -> CompactError {
        CompactError::Malformed { offset, what }
    }

    /// A number narrowed by a `validate` check, refused at `path` when it fails (the policy's
    /// offset and name are filled in by [`Reader::policy`]).
    fn checked<T>(
        &mut self,
        path: impl FnOnce() -> String,
        check: impl FnOnce(u64) -> Result<T, FieldErrorKind>,
    ) -> Result<T, CompactError> {
        let v = self.uint()?;
        check(v).map_err(|kind| CompactError::Invalid {
            offset: 0,
            name: String::new(),
            errors: ValidationErrors(alloc::vec![FieldError { path: path(), kind }]),
        })
    }

    fn byte(&mut self) -> Result<u8, CompactError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.fail("the answer ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    fn uint(&mut self) -> Result<u64, CompactError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(self.fail("a number longer than 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.fail("a number longer than 64 bits"))
    }

    fn flag(&mut self) -> Result<bool, CompactError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.fail_at(self.pos - 1, "a flag other than 0 or 1")),
        }
    }

    fn str(&mut self) -> Result<String, CompactError> {
        self.text().map(String::from)
    }

    /// A string, borrowed from the answer.
    fn text(&mut self) -> Result<&'a str, CompactError> {
        let start = self.pos;
        let len = self.uint()?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.fail_at(start, "a string longer than the answer"))?;
        let bytes: &'a [u8] = self.bytes;
        let text = bytes
            .get(self.pos..end)
            .and_then(|b| core::str::from_utf8(b).ok())
            .ok_or_else(|| self.fail("a string that is not UTF-8"))?;
        self.pos = end;
        Ok(text)
    }

    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, CompactError>,
    ) -> Result<Option<T>, CompactError> {
        if self.flag()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_str(&mut self) -> Result<Option<String>, CompactError> {
        self.opt(Self::str)
    }

    fn map(&mut self) -> Result<BTreeMap<String, String>, CompactError> {
        let mut map = BTreeMap::new();
        for _ in 0..self.uint()? {
            let k = self.str()?;
            let v = self.str()?;
            if map.insert(k, v).is_some() {
                return Err(self.fail("a map with a repeated key"));
            }
        }
        Ok(map)
    }

    fn string_match(&mut self) -> Result<StringMatch, CompactError> {
        match self.byte()? {
            0 => self.str().map(StringMatch::Exact),
            1 => self.str().map(StringMatch::Prefix),
            2 => self.str().map(StringMatch::Regex),
            _ => Err(self.fail_at(
                self.pos - 1,
                "a string match other than exact, prefix or regex",
            )),
        }
    }

    /// One policy, validated; a refusal names it and where it starts.
    fn policy(&mut self) -> Result<PolicyDocument, CompactError> {
        let at = self.pos;
        let name = self.text()?;
        let refused = |errors| CompactError::Invalid {
            offset: at,
            name: String::from(name),
            errors,
        };
        match self.policy_after_name(name) {
            Ok(policy) => validate(&policy).map(|()| policy).map_err(refused),
            Err(CompactError::Invalid { errors, .. }) => Err(refused(errors)),
            Err(malformed) => Err(malformed),
        }
    }

    fn policy_after_name(&mut self, name: &str) -> Result<PolicyDocument, CompactError> {
        let metadata = Metadata {
            name: String::from(name),
            version: self.opt_str()?,
            namespace: self.opt_str()?,
            labels: self.map()?,
            annotations: self.map()?,
        };
        let selector = Selector {
            service: self.opt_str()?,
            namespace: self.opt_str()?,
            labels: self.map()?,
        };
        let mut rules = Vec::new();
        for index in 0..self.uint()? {
            rules.push(self.rule(index)?);
        }
        let sampling = match self.byte()? {
            0 => Sampling::Random,
            1 => Sampling::Request,
            _ => {
                return Err(self.fail_at(self.pos - 1, "spec.sampling: neither random nor request"))
            }
        };
        let window = self.opt(|r| {
            Ok(Window {
                start_ms: r.uint()?,
                end_ms: r.uint()?,
            })
        })?;
        let priority = self.checked(
            || String::from("spec.priority"),
            |zigzag| validate::priority(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64)),
        )?;
        let enabled = self.flag()?;
        let heartbeat_seconds = if self.v1 { None } else { self.opt(Self::uint)? };
        let status = self.opt(|r| {
            Ok(PolicyStatus {
                stored_at_ms: r.uint()?,
                expires_at_ms: r.opt(Self::uint)?,
                revision: r.uint()?,
                guard: None,
            })
        })?;
        Ok(PolicyDocument {
            metadata,
            spec: PolicySpec {
                selector,
                rules,
                sampling,
                window,
                priority,
                enabled,
                heartbeat_seconds,
                guards: Vec::new(),
            },
            status,
        })
    }

    fn rule(&mut self, index: u64) -> Result<Rule, CompactError> {
        let method = self.opt(Self::string_match)?;
        let path = self.opt(Self::string_match)?;
        let mut headers = Vec::new();
        for _ in 0..self.uint()? {
            headers.push(HeaderMatch {
                name: self.str()?,
                value: self.string_match()?,
            });
        }
        let source = self.opt(|r| {
            Ok(SourceMatch {
                service: r.opt_str()?,
                namespace: r.opt_str()?,
                service_account: r.opt_str()?,
            })
        })?;
        let fault = || alloc::format!("spec.rules[{index}].fault");
        let percentage = self.checked(
            || alloc::format!("{}.percentage", fault()),
            validate::percentage,
        )?;
        let start_delay_ms = self.uint()?;
        let duration_seconds = self.uint()?;
        let target = if self.v1 {
            FaultTarget::Request
        } else {
            match self.byte()? {
                0 => FaultTarget::Request,
                1 => FaultTarget::Response,
                _ => {
                    return Err(
                        self.fail_at(self.pos - 1, "fault.target: neither request nor response")
                    )
                }
            }
        };
        let delay = self.opt(|r| {
            Ok(Delay {
                fixed_delay_ms: r.uint()?,
                jitter_ms: r.uint()?,
            })
        })?;
        let abort = self.opt(|r| r.abort(|| alloc::format!("{}.abort", fault())))?;
        let reset = !self.v1 && self.flag()?;
        Ok(Rule {
            matches: RequestMatch {
                method,
                path,
                headers,
                source,
            },
            fault: Fault {
                percentage,
                start_delay_ms,
                duration_seconds,
                target,
                delay,
                abort,
                reset,
            },
        })
    }

    fn abort(&mut self, path: impl Fn() -> String) -> Result<Abort, CompactError> {
        let http_status = self.checked(
            || alloc::format!("{}.httpStatus", path()),
            validate::http_status,
        )?;
        let grpc_status = self.opt(|r| {
            r.checked(
                || alloc::format!("{}.grpcStatus", path()),
                validate::grpc_status,
            )
        })?;
        let body = self.opt_str()?;
        let headers = self.map()?;
        Ok(Abort {
            http_status,
            grpc_status,
            body,
            headers,
        })
    }
}

#[cfg(test)]
mod tests;
