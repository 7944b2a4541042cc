//! The sidecars seen on `/v1/config`, for `GET /v1/policies/status` (a rollout view like
//! `istioctl proxy-status`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use boifi_core::identity::Identity;

/// At most this many sidecars are remembered; the least recently seen is forgotten first.
pub const MAX_SIDECARS: usize = 10_000;

/// What is known of one sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarRecord {
    /// Its identity as it reported it.
    pub identity: Identity,
    /// The config version it holds: the version it asked with, or the one it was last sent.
    pub version: Option<u64>,
    /// Last request (Unix ms).
    pub last_seen_ms: u64,
}

/// The sidecars, keyed by namespace/pod (or namespace/service when no pod is given).
#[derive(Debug, Default)]
pub struct SidecarRegistry {
    inner: Mutex<HashMap<String, SidecarRecord>>,
}

fn key(identity: &Identity) -> String {
    let ns = identity.namespace.as_deref().unwrap_or("");
    match (&identity.pod, &identity.service) {
        (Some(pod), _) => format!("{ns}/pod/{pod}"),
        (None, Some(service)) => format!("{ns}/service/{service}"),
        (None, None) => {
            let labels: Vec<String> = identity
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{ns}/labels/{}", labels.join(","))
        }
    }
}

impl SidecarRegistry {
    /// Records a config request (or its answer) from `identity`, holding `version`.
    pub fn seen(&self, identity: &Identity, version: Option<u64>, now_ms: u64) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let k = key(identity);
        if !map.contains_key(&k) && map.len() >= MAX_SIDECARS {
            let oldest = map
                .iter()
                .min_by_key(|(_, r)| r.last_seen_ms)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(
            k,
            SidecarRecord {
                identity: identity.clone(),
                version,
                last_seen_ms: now_ms,
            },
        );
    }

    /// Every known sidecar, ordered by namespace, then pod or service.
    pub fn list(&self) -> Vec<SidecarRecord> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let sorted: BTreeMap<&String, &SidecarRecord> = map.iter().collect();
        sorted.into_values().cloned().collect()
    }

    /// How many sidecars are known.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
