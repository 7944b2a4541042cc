//! Serialization: always writes `apiVersion` and `kind`; the shape is the one
//! [`PolicyDocument::from_value`] reads, so a written document reads back equal.

use alloc::string::String;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use super::*;

impl Serialize for PolicyDocument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut doc = s.serialize_struct("FaultInjectionPolicy", 5)?;
        doc.serialize_field("apiVersion", API_VERSION)?;
        doc.serialize_field("kind", KIND)?;
        doc.serialize_field("metadata", &self.metadata)?;
        doc.serialize_field("spec", &self.spec)?;
        if let Some(status) = &self.status {
            doc.serialize_field("status", status)?;
        } else {
            doc.skip_field("status")?;
        }
        doc.end()
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        if let Some(version) = &self.version {
            map.serialize_entry("version", version)?;
        }
        if let Some(namespace) = &self.namespace {
            map.serialize_entry("namespace", namespace)?;
        }
        if !self.labels.is_empty() {
            map.serialize_entry("labels", &self.labels)?;
        }
        if !self.annotations.is_empty() {
            map.serialize_entry("annotations", &self.annotations)?;
        }
        map.end()
    }
}

impl Serialize for PolicySpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("selector", &self.selector)?;
        map.serialize_entry("rules", &self.rules)?;
        if self.sampling == Sampling::Request {
            map.serialize_entry("sampling", "request")?;
        }
        if let Some(window) = &self.window {
            map.serialize_entry("window", window)?;
        }
        if self.priority != 0 {
            map.serialize_entry("priority", &self.priority)?;
        }
        if !self.enabled {
            map.serialize_entry("enabled", &false)?;
        }
        map.end()
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("service", self.service.as_deref().unwrap_or("*"))?;
        map.serialize_entry("namespace", self.namespace.as_deref().unwrap_or("*"))?;
        if !self.labels.is_empty() {
            map.serialize_entry("labels", &self.labels)?;
        }
        map.end()
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("match", &self.matches)?;
        map.serialize_entry("fault", &self.fault)?;
        map.end()
    }
}

impl Serialize for RequestMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(method) = &self.method {
            map.serialize_entry("method", method)?;
        }
        if let Some(path) = &self.path {
            map.serialize_entry("path", path)?;
        }
        if !self.headers.is_empty() {
            map.serialize_entry("headers", &self.headers)?;
        }
        if let Some(source) = &self.source {
            map.serialize_entry("source", source)?;
        }
        map.end()
    }
}

impl Serialize for SourceMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(service) = &self.service {
            map.serialize_entry("service", service)?;
        }
        if let Some(namespace) = &self.namespace {
            map.serialize_entry("namespace", namespace)?;
        }
        if let Some(account) = &self.service_account {
            map.serialize_entry("serviceAccount", account)?;
        }
        map.end()
    }
}

impl StringMatch {
    /// The field name of this kind of match and its text.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            StringMatch::Exact(t) => ("exact", t),
            StringMatch::Prefix(t) => ("prefix", t),
            StringMatch::Regex(t) => ("regex", t),
        }
    }
}

impl Serialize for StringMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (kind, text) = self.parts();
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(kind, text)?;
        map.end()
    }
}

impl Serialize for HeaderMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (kind, text) = self.value.parts();
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry(kind, text)?;
        map.end()
    }
}

impl Serialize for Fault {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("percentage", &self.percentage)?;
        if self.start_delay_ms > 0 {
            map.serialize_entry("start_delay_ms", &self.start_delay_ms)?;
        }
        if self.duration_seconds > 0 {
            map.serialize_entry("duration_seconds", &self.duration_seconds)?;
        }
        if let Some(delay) = &self.delay {
            map.serialize_entry("delay", delay)?;
        }
        if let Some(abort) = &self.abort {
            map.serialize_entry("abort", abort)?;
        }
        map.end()
    }
}

impl Serialize for Percentage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole percentages stay integers, as legacy files wrote them.
        if self.0.is_multiple_of(10_000) {
            s.serialize_u32(self.0 / 10_000)
        } else {
            s.serialize_f64(f64::from(self.0) / 10_000.0)
        }
    }
}

impl Percentage {
    /// The number without its `%`: `10`, `0.5`, `0.0001` (what a policy's `percentage` reads).
    pub fn number(self) -> String {
        let whole = self.0 / 10_000;
        let frac = self.0 % 10_000;
        if frac == 0 {
            alloc::format!("{whole}")
        } else {
            let digits = alloc::format!("{frac:04}");
            alloc::format!("{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl core::fmt::Display for Percentage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}%", self.number())
    }
}

impl Serialize for Delay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("fixed_delay_ms", &self.fixed_delay_ms)?;
        if self.jitter_ms > 0 {
            map.serialize_entry("jitter_ms", &self.jitter_ms)?;
        }
        map.end()
    }
}

impl Serialize for Abort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("httpStatus", &self.http_status)?;
        if let Some(grpc) = self.grpc_status {
            map.serialize_entry("grpcStatus", &grpc)?;
        }
        if let Some(body) = &self.body {
            map.serialize_entry("body", body)?;
        }
        if !self.headers.is_empty() {
            map.serialize_entry("headers", &self.headers)?;
        }
        map.end()
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let start: String = crate::time::format_rfc3339(self.start_ms);
        let end: String = crate::time::format_rfc3339(self.end_ms);
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("start", &start)?;
        map.serialize_entry("end", &end)?;
        map.end()
    }
}

impl Serialize for PolicyStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("stored_at_ms", &self.stored_at_ms)?;
        if let Some(expires) = self.expires_at_ms {
            map.serialize_entry("expires_at_ms", &expires)?;
        }
        map.serialize_entry("revision", &self.revision)?;
        map.end()
    }
}
