//! Serialization: always writes `apiVersion` and `kind`; the shape is the one
//! [`PolicyDocument::from_value`] reads, so a written document reads back equal.

use alloc::string::String;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use super::*;

/// The optional entries of a map: a field at its default is left out (the reader defaults it).
trait OptionalEntries: SerializeMap {
    fn entry_if<V: Serialize + ?Sized>(
        &mut self,
        write: bool,
        key: &'static str,
        value: &V,
    ) -> Result<(), Self::Error> {
        if write {
            self.serialize_entry(key, value)
        } else {
            Ok(())
        }
    }

    fn entry_some<V: Serialize>(
        &mut self,
        key: &'static str,
        value: Option<&V>,
    ) -> Result<(), Self::Error> {
        match value {
            Some(value) => self.serialize_entry(key, value),
            None => Ok(()),
        }
    }
}

impl<M: SerializeMap> OptionalEntries for M {}

impl Serialize for PolicyDocument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut doc = s.serialize_struct("FaultInjectionPolicy", 5)?;
        doc.serialize_field("apiVersion", API_VERSION)?;
        doc.serialize_field("kind", KIND)?;
        doc.serialize_field("metadata", &self.metadata)?;
        doc.serialize_field("spec", &self.spec)?;
        if let Some(status) = &self.status {
            let status = StatusOut {
                status,
                guards: &self.spec.guards,
            };
            doc.serialize_field("status", &status)?;
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
        map.entry_some("version", self.version.as_ref())?;
        map.entry_some("namespace", self.namespace.as_ref())?;
        map.entry_if(!self.labels.is_empty(), "labels", &self.labels)?;
        map.entry_if(
            !self.annotations.is_empty(),
            "annotations",
            &self.annotations,
        )?;
        map.end()
    }
}

impl Serialize for PolicySpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("selector", &self.selector)?;
        map.serialize_entry("rules", &self.rules)?;
        map.entry_if(self.sampling == Sampling::Request, "sampling", "request")?;
        map.entry_some("window", self.window.as_ref())?;
        map.entry_if(self.priority != 0, "priority", &self.priority)?;
        map.entry_if(!self.enabled, "enabled", &false)?;
        map.entry_some("heartbeat_seconds", self.heartbeat_seconds.as_ref())?;
        map.entry_if(!self.guards.is_empty(), "guards", &self.guards)?;
        map.end()
    }
}

impl Serialize for guard::Guard {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("query", &self.query)?;
        let (key, comparison) = match &self.condition {
            guard::GuardCondition::Success(c) => ("success_condition", c),
            guard::GuardCondition::Failure(c) => ("failure_condition", c),
        };
        map.serialize_entry(key, &alloc::string::ToString::to_string(comparison))?;
        map.serialize_entry("interval_seconds", &self.interval_seconds)?;
        map.serialize_entry("failure_limit", &self.failure_limit)?;
        map.entry_if(
            self.on_error != guard::OnError::Fail,
            "on_error",
            self.on_error.as_str(),
        )?;
        map.end()
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("service", self.service.as_deref().unwrap_or("*"))?;
        map.serialize_entry("namespace", self.namespace.as_deref().unwrap_or("*"))?;
        map.entry_if(!self.labels.is_empty(), "labels", &self.labels)?;
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
        map.entry_some("method", self.method.as_ref())?;
        map.entry_some("path", self.path.as_ref())?;
        map.entry_if(!self.headers.is_empty(), "headers", &self.headers)?;
        map.entry_some("source", self.source.as_ref())?;
        map.end()
    }
}

impl Serialize for SourceMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.entry_some("service", self.service.as_ref())?;
        map.entry_some("namespace", self.namespace.as_ref())?;
        map.entry_some("serviceAccount", self.service_account.as_ref())?;
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
        map.entry_if(
            self.start_delay_ms > 0,
            "start_delay_ms",
            &self.start_delay_ms,
        )?;
        map.entry_if(
            self.duration_seconds > 0,
            "duration_seconds",
            &self.duration_seconds,
        )?;
        map.entry_if(
            self.target != FaultTarget::Request,
            "target",
            self.target.as_str(),
        )?;
        map.entry_some("delay", self.delay.as_ref())?;
        map.entry_some("abort", self.abort.as_ref())?;
        map.entry_if(self.reset, "reset", &true)?;
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
        ppm_number(u64::from(self.0))
    }
}

/// Parts per million as a percentage without its `%`, exact: `10`, `0.5`, `130` (also for
/// values above 100 %, which a message about them shows).
pub(crate) fn ppm_number(ppm: u64) -> String {
    let whole = ppm / 10_000;
    let frac = ppm % 10_000;
    if frac == 0 {
        alloc::format!("{whole}")
    } else {
        let digits = alloc::format!("{frac:04}");
        alloc::format!("{whole}.{}", digits.trim_end_matches('0'))
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
        map.entry_if(self.jitter_ms > 0, "jitter_ms", &self.jitter_ms)?;
        map.end()
    }
}

impl Serialize for Abort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("httpStatus", &self.http_status)?;
        map.entry_some("grpcStatus", self.grpc_status.as_ref())?;
        map.entry_some("body", self.body.as_ref())?;
        map.entry_if(!self.headers.is_empty(), "headers", &self.headers)?;
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
        StatusOut {
            status: self,
            guards: &[],
        }
        .serialize(s)
    }
}

/// A status with the guards its guard state names.
struct StatusOut<'a> {
    status: &'a PolicyStatus,
    guards: &'a [guard::Guard],
}

impl Serialize for StatusOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let status = self.status;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("stored_at_ms", &status.stored_at_ms)?;
        map.entry_some("expires_at_ms", status.expires_at_ms.as_ref())?;
        map.serialize_entry("revision", &status.revision)?;
        if let Some(state) = &status.guard {
            map.serialize_entry(
                "guard",
                &GuardStateOut {
                    state,
                    guards: self.guards,
                },
            )?;
        }
        map.end()
    }
}

/// `status.guard`: `{"state": "tripped", "guard": "<name>", "value": 0.61, "at_ms": …}`.
struct GuardStateOut<'a> {
    state: &'a guard::GuardState,
    guards: &'a [guard::Guard],
}

impl Serialize for GuardStateOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("state", self.state.as_str())?;
        if let guard::GuardState::Tripped(trip) = self.state {
            let name = self.guards.get(trip.guard).map(|g| g.name.as_str());
            map.entry_some("guard", name.as_ref())?;
            // JSON has no NaN or infinity: such a value is written as its PromQL text.
            match trip.value() {
                Some(v) if v.is_finite() => map.serialize_entry("value", &v)?,
                Some(v) => map.serialize_entry("value", &alloc::format!("{v}"))?,
                None => map.serialize_entry("value", &())?,
            }
            map.serialize_entry("at_ms", &trip.at_ms)?;
        }
        map.end()
    }
}
