//! What the Wasm VMs of one Envoy share through proxy-wasm shared data (keyed per `vm_id`):
//! the poller lease, which elects the single VM that long-polls the control plane, and the
//! policy set that VM received, which every other VM compiles for itself.

use alloc::vec::Vec;

use alloc::string::String;
use boifi_core::text::concat;

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
            lease: concat(&["boifi/", plugin, "/poller-lease"]),
            policies: concat(&["boifi/", plugin, "/policies"]),
            seq: concat(&["boifi/", plugin, "/policies-seq"]),
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

/// Proxy-wasm shared data as the lease uses it: a read that returns the value with its CAS
/// token, and a compare-and-set. Envoy has no create-if-absent: a write with no token (`None`,
/// sent as 0) is unconditional, so two VMs that both saw no lease can both write one; the
/// loser finds out at its next renewal (see [`renew_lease`]).
pub trait CasStore {
    /// The value under `key` and its CAS token.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` if the key's token still is `cas` (`None`: unconditionally); false when
    /// another write came first.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// What `me` writes to claim or renew the lease, given what it read: `None` when another live
/// root context holds it.
pub fn lease_claim(
    current: Option<&[u8]>,
    me: u64,
    now_ms: u64,
    stale_after_ms: u64,
) -> Option<Lease> {
    let current = current.and_then(Lease::decode);
    match Lease::view(current, me, now_ms, stale_after_ms) {
        LeaseView::Held => None,
        LeaseView::Mine | LeaseView::Vacant => Some(Lease {
            owner: me,
            heartbeat_ms: now_ms,
        }),
    }
}

/// Claims or renews the lease under `key` for `me`. True when `me` holds it now; false when
/// another live holder has it or a concurrent write won the compare-and-swap. Renewing on
/// every poll makes a lost race visible: the VM whose write was overwritten sees a live lease
/// that is not its own and stops polling.
pub fn renew_lease(
    store: &impl CasStore,
    key: &str,
    me: u64,
    now_ms: u64,
    stale_after_ms: u64,
) -> bool {
    let (bytes, cas) = store.get(key);
    match lease_claim(bytes.as_deref(), me, now_ms, stale_after_ms) {
        Some(lease) => store.set(key, &lease.encode(), cas),
        None => false,
    }
}

/// Gives the lease up if `me` holds it (so another VM takes over at once, not after it goes
/// stale).
pub fn release_lease(store: &impl CasStore, key: &str, me: u64) {
    if let (Some(bytes), cas) = store.get(key) {
        if Lease::decode(&bytes).is_some_and(|l| l.owner == me) {
            store.set(key, &Lease::VACANT.encode(), cas);
        }
    }
}

/// A policy set as the poller publishes it: a sequence number (changes on every publication),
/// the control plane's config version, the raw `/v1/config` body, and the names of its
/// policies the poller stopped applying (their heartbeat bound lapsed): every VM leaves them
/// out, so none re-encodes a reduced answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Publication sequence number.
    pub seq: u64,
    /// The control plane's config version.
    pub version: u64,
    /// The compact `/v1/config` answer.
    pub body: Vec<u8>,
    /// Names of the body's policies left out.
    pub lapsed: Vec<String>,
}

impl Published {
    /// `seq`, `version`, the number of lapsed names, then each name's length and bytes (the
    /// numbers 8 bytes each, little-endian), then the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.body.len());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.lapsed.len() as u64).to_le_bytes());
        for name in &self.lapsed {
            out.extend_from_slice(&(name.len() as u64).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// The inverse of [`Published::encode`].
    pub fn decode(bytes: &[u8]) -> Option<Published> {
        let count = u64_at(bytes, 16)?;
        let mut at = 24usize;
        let mut lapsed = Vec::new();
        for _ in 0..count {
            let len = usize::try_from(u64_at(bytes, at)?).ok()?;
            let start = at.checked_add(8)?;
            let end = start.checked_add(len)?;
            let name = core::str::from_utf8(bytes.get(start..end)?).ok()?;
            lapsed.push(String::from(name));
            at = end;
        }
        Some(Published {
            seq: u64_at(bytes, 0)?,
            version: u64_at(bytes, 8)?,
            body: bytes.get(at..)?.to_vec(),
            lapsed,
        })
    }
}

/// Reads an 8-byte sequence number.
pub fn decode_seq(bytes: &[u8]) -> Option<u64> {
    (bytes.len() == 8).then(|| u64_at(bytes, 0)).flatten()
}

/// Envoy's shared data as a model for tests: every write gets a fresh token; a write with a
/// token succeeds only if it is still current; a write without one always succeeds.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct ModelStore {
    data: core::cell::RefCell<alloc::collections::BTreeMap<String, (Vec<u8>, u32)>>,
    next_cas: core::cell::Cell<u32>,
}

#[cfg(test)]
impl CasStore for ModelStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.data.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut data = self.data.borrow_mut();
        if let (Some(want), Some((_, have))) = (cas, data.get(key)) {
            if want != *have {
                return false;
            }
        }
        self.next_cas.set(self.next_cas.get() + 1);
        data.insert(key.into(), (value.to_vec(), self.next_cas.get()));
        true
    }
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

    /// What a VM read: the value and its CAS token.
    type Read = (Option<Vec<u8>>, Option<u32>);

    fn holders(store: &ModelStore) -> Option<u64> {
        store
            .get("lease")
            .0
            .and_then(|b| Lease::decode(&b))
            .map(|l| l.owner)
    }

    #[test]
    fn racing_claims_converge_to_one_poller_after_one_renewal() {
        // VMs claim at start in every interleaving of their read and write steps (reads can all
        // happen before any write: the race the host cannot prevent); then each renews once, in
        // a random order. Exactly one must still believe it polls: the lease's owner.
        let mut rng = boifi_core::rng::XorShift64Star::new(11);
        for round in 0..2_000 {
            let store = ModelStore::default();
            let n = 2 + (rng.next_u64() % 4) as usize;
            let ids: Vec<u64> = (0..n as u64).map(|i| 100 + i).collect();
            // Each VM's claim is a read, then a write based on that read.
            let mut reads: Vec<Option<Read>> = vec![None; n];
            let mut claimed = vec![false; n];
            let mut steps: Vec<usize> = (0..n).flat_map(|i| [i, i]).collect();
            for i in (1..steps.len()).rev() {
                steps.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            for vm in steps {
                match reads[vm].take() {
                    None => reads[vm] = Some(store.get("lease")),
                    Some((bytes, cas)) => {
                        claimed[vm] = lease_claim(bytes.as_deref(), ids[vm], 0, 15_000)
                            .is_some_and(|l| store.set("lease", &l.encode(), cas));
                    }
                }
            }
            assert!(claimed.iter().any(|c| *c), "round {round}: nobody claimed");
            let mut order: Vec<usize> = (0..n).filter(|i| claimed[*i]).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let still: Vec<u64> = order
                .into_iter()
                .filter(|&vm| renew_lease(&store, "lease", ids[vm], 1_000, 15_000))
                .map(|vm| ids[vm])
                .collect();
            assert_eq!(still.len(), 1, "round {round}: pollers {still:?}");
            assert_eq!(holders(&store), still.first().copied());
        }
    }

    #[test]
    fn a_released_or_stale_lease_is_taken_over() {
        let store = ModelStore::default();
        assert!(renew_lease(&store, "lease", 1, 0, 15_000));
        assert!(
            !renew_lease(&store, "lease", 2, 14_999, 15_000),
            "owner is live"
        );
        assert!(
            renew_lease(&store, "lease", 2, 15_000, 15_000),
            "owner went silent"
        );
        assert!(
            !renew_lease(&store, "lease", 1, 15_001, 15_000),
            "the old owner steps down"
        );
        release_lease(&store, "lease", 1);
        assert_eq!(holders(&store), Some(2), "only the owner can release");
        release_lease(&store, "lease", 2);
        assert!(
            renew_lease(&store, "lease", 3, 15_002, 15_000),
            "released: free at once"
        );
    }

    #[test]
    fn published_round_trips() {
        let p = Published {
            seq: 3,
            version: 17,
            body: br#"{"version":17,"policies":[]}"#.to_vec(),
            lapsed: Vec::new(),
        };
        assert_eq!(Published::decode(&p.encode()), Some(p));
        let lapsed = Published {
            seq: 4,
            version: 17,
            body: b"BFC\x03body".to_vec(),
            lapsed: alloc::vec!["guarded".into(), "other".into()],
        };
        let bytes = lapsed.encode();
        assert_eq!(Published::decode(&bytes), Some(lapsed));
        // A name cut short is no publication.
        assert_eq!(Published::decode(bytes.get(..30).unwrap()), None);
        assert_eq!(Published::decode(&[1, 2, 3]), None);
        assert_eq!(decode_seq(&9u64.to_le_bytes()), Some(9));
        assert_eq!(decode_seq(&[1]), None);
    }
}
