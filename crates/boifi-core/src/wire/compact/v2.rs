//! Version 2 of the compact encoding (magic `BFC\x02`, [`MEDIA_TYPE`]): whole policy
//! documents, regexes as pattern text. A control plane still answers it to filters that ask
//! with `encoding=compact` alone (filters older than version 3), so it can be upgraded before
//! them; filters no longer read it (their module would carry the policy validation and the
//! regex compiler again).
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

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::super::ConfigResponse;
use super::Writer;
use crate::policy::{FaultTarget, PolicyDocument, Rule, Sampling, StringMatch};

/// The first bytes of a version 2 answer.
pub const MAGIC: &[u8; 4] = b"BFC\x02";

/// The media type of a version 2 answer.
pub const MEDIA_TYPE: &str = "application/vnd.boifi.config.v2";

/// Encodes a response in version 2.
pub fn encode(response: &ConfigResponse) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = response.policies.iter().map(encode_policy).collect();
    assemble(response.version, parts.iter().map(Vec::as_slice))
}

/// One policy's part of a version 2 response (see [`super::encode_policy`]).
pub fn encode_policy(policy: &PolicyDocument) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.document(policy);
    w.0
}

/// A version 2 response from its version and the [`encode_policy`] parts of its policies.
pub fn assemble<'a>(version: u64, parts: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    super::assemble_with(MAGIC, version, parts)
}

/// The version 2 parts of the shared writer ([`super::Writer`]).
impl Writer {
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

    fn document(&mut self, p: &PolicyDocument) {
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
            self.document_rule(rule);
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

    fn document_rule(&mut self, rule: &Rule) {
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
