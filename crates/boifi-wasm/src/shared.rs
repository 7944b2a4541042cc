//! What the Wasm VMs of one Envoy share through proxy-wasm shared data (keyed per `vm_id`):
//! the poller lease, which elects the single VM that long-polls the control plane, and the
//! policy set that VM received, which every other VM compiles for itself.

use alloc::vec::Vec;

use alloc::format;
use alloc::string::String;

/// The shared-data keys of one plugin. Shared data is per `vm_id`, and several plugins (e.g.
/// two WasmPlugins with different identities or control planes) may share a VM, so every key
/// carries the plugin name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKeys {
    /// The poller lease ([`Lease`]).
    pub lease: String,
    /// The published policy set ([`Published`]).
    pub policies: String,
    /// The publication sequence number alone (8 bytes), so the per-request freshness check
    /// copies 8 bytes, not the whole set.
    pub seq: String,
}

impl SharedKeys {
    /// The keys of the plugin named `plugin` (Envoy's `plugin_name` property).
    pub fn for_plugin(plugin: &str) -> SharedKeys {
        SharedKeys {
            lease: format!("boifi/{plugin}/poller-lease"),
            policies: format!("boifi/{plugin}/policies"),
            seq: format!("boifi/{plugin}/policies-seq"),
        }
    }
}

/// Who polls, and when it last showed it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// A random id of the owning root context (0: nobody).
    pub owner: u64,
    /// Host time of the owner's last heartbeat, ms.
    pub heartbeat_ms: u64,
}

/// How a root context sees the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseView {
    /// This root context holds it.
    Mine,
    /// Another, live root context holds it.
    Held,
    /// Nobody holds it, or its holder stopped renewing it: claim it.
    Vacant,
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

impl Lease {
    /// The released lease.
    pub const VACANT: Lease = Lease {
        owner: 0,
        heartbeat_ms: 0,
    };

    /// 16 bytes: owner, heartbeat (little-endian).
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let (a, b) = out.split_at_mut(8);
        a.copy_from_slice(&self.owner.to_le_bytes());
        b.copy_from_slice(&self.heartbeat_ms.to_le_bytes());
        out
    }

    /// The inverse of [`Lease::encode`]; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        (bytes.len() == 16).then_some(())?;
        Some(Lease {
            owner: u64_at(bytes, 0)?,
            heartbeat_ms: u64_at(bytes, 8)?,
        })
    }

    /// How `me` sees `current` at `now_ms`, given how long a silent owner keeps the lease.
    pub fn view(current: Option<Lease>, me: u64, now_ms: u64, stale_after_ms: u64) -> LeaseView {
        match current {
            Some(l) if l.owner == me && me != 0 => LeaseView::Mine,
            Some(l) if l.owner != 0 && now_ms.saturating_sub(l.heartbeat_ms) < stale_after_ms => {
                LeaseView::Held
            }
            _ => LeaseView::Vacant,
        }
    }
}

/// A policy set as the poller publishes it: a sequence number (changes on every publication),
/// the control plane's config version, and the raw `/v1/config` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Publication sequence number.
    pub seq: u64,
    /// The control plane's config version.
    pub version: u64,
    /// The `ConfigResponse` JSON.
    pub body: Vec<u8>,
}

impl Published {
    /// `seq`, `version` (8 bytes each, little-endian), then the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.body.len());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// The inverse of [`Published::encode`].
    pub fn decode(bytes: &[u8]) -> Option<Published> {
        Some(Published {
            seq: u64_at(bytes, 0)?,
            version: u64_at(bytes, 8)?,
            body: bytes.get(16..)?.to_vec(),
        })
    }
}

/// Reads an 8-byte sequence number.
pub fn decode_seq(bytes: &[u8]) -> Option<u64> {
    (bytes.len() == 8).then(|| u64_at(bytes, 0)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_plugin() {
        let (a, b) = (SharedKeys::for_plugin("a"), SharedKeys::for_plugin("b"));
        assert_ne!(a.lease, b.lease);
        assert_ne!(a.policies, b.policies);
        assert_ne!(a.seq, b.seq);
        assert_ne!(a.seq, a.policies);
    }

    #[test]
    fn lease_round_trips_and_rejects_other_bytes() {
        let l = Lease {
            owner: 42,
            heartbeat_ms: 1_700_000_000_000,
        };
        assert_eq!(Lease::decode(&l.encode()), Some(l));
        assert_eq!(Lease::decode(b"short"), None);
        assert_eq!(Lease::decode(&[0u8; 17]), None);
    }

    #[test]
    fn lease_view_model() {
        let held = Some(Lease {
            owner: 1,
            heartbeat_ms: 1_000,
        });
        assert_eq!(Lease::view(held, 1, 99_999, 10), LeaseView::Mine);
        assert_eq!(Lease::view(held, 2, 1_500, 1_000), LeaseView::Held);
        assert_eq!(Lease::view(held, 2, 2_000, 1_000), LeaseView::Vacant);
        assert_eq!(Lease::view(None, 2, 0, 1_000), LeaseView::Vacant);
        assert_eq!(
            Lease::view(Some(Lease::VACANT), 2, 0, 1_000),
            LeaseView::Vacant
        );
        // A clock that went backwards does not make a live owner look stale.
        assert_eq!(Lease::view(held, 2, 500, 1_000), LeaseView::Held);
        // Nobody may claim to be owner 0.
        assert_eq!(
            Lease::view(Some(Lease::VACANT), 0, 0, 1_000),
            LeaseView::Vacant
        );
    }

    #[test]
    fn published_round_trips() {
        let p = Published {
            seq: 3,
            version: 17,
            body: br#"{"version":17,"policies":[]}"#.to_vec(),
        };
        assert_eq!(Published::decode(&p.encode()), Some(p));
        assert_eq!(Published::decode(&[1, 2, 3]), None);
        assert_eq!(decode_seq(&9u64.to_le_bytes()), Some(9));
        assert_eq!(decode_seq(&[1]), None);
    }
}
