//! Which service a request in a shared proxy (an Istio ambient waypoint, an ingress gateway) is
//! for, read per request from what Envoy names the request's path through the proxy.
//!
//! A sidecar serves one workload, so the policies that concern it are known once per set. A
//! shared proxy serves many services, so the target service is decided per request, from a name
//! Istio gives the part of Envoy's configuration that serves it (see `docs/design/ambient.md`
//! §1, verified with Envoy 1.40):
//! - a waypoint: the filter chain of `main_internal` the request arrived on,
//!   `inbound-vip|<port>|<protocol>|<fqdn>` (proxy-wasm property `xds.filter_chain_name`,
//!   dynamic-module attribute `XdsFilterChainName`). It names the service VIP the caller
//!   addressed, and no route or later filter can change it.
//! - a gateway: the cluster the request was routed to, `outbound|<port>|<subset>|<fqdn>`
//!   (`xds.cluster_name`, `XdsClusterName`); a gateway's filter chains are not per service.
//!
//! `<fqdn>` is `<service>.<namespace>.svc.<cluster domain>`. Anything else (a ServiceEntry host,
//! the chain names of Istio before 1.24, an unrouted request, bytes that are not such a name) is
//! no destination, and no policy applies to the request.

use crate::identity::{Identity, ProxyKind};

/// Which name of the request's path through Envoy the host reads for its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationSource {
    /// The downstream filter chain's name (`xds.filter_chain_name`; dynamic-module attribute 66).
    FilterChainName,
    /// The upstream cluster's name (`xds.cluster_name`; dynamic-module attribute 57).
    ClusterName,
}

impl ProxyKind {
    /// Where a filter in this kind of proxy reads a request's destination; `None` for a sidecar,
    /// whose destination is itself.
    pub fn destination_source(self) -> Option<DestinationSource> {
        match self {
            ProxyKind::Sidecar => None,
            ProxyKind::Waypoint => Some(DestinationSource::FilterChainName),
            ProxyKind::Gateway => Some(DestinationSource::ClusterName),
        }
    }
}

/// The service a request in a shared proxy is for. Borrowed from the bytes the host handed over,
/// so parsing allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination<'a> {
    /// The service's name.
    pub service: &'a str,
    /// The service's namespace.
    pub namespace: &'a str,
}

/// Upper bound of a name boifi reads as a destination (a longer one is none).
pub const MAX_DESTINATION_NAME_BYTES: usize = 1024;

impl<'a> Destination<'a> {
    /// The destination `name` gives in a proxy of `kind`: for a waypoint the filter chain name
    /// `inbound-vip|<port>|<protocol>|<fqdn>`, for a gateway the cluster name
    /// `outbound|<port>|<subset>|<fqdn>` (the subset may be empty), where `<fqdn>` is
    /// `<service>.<namespace>.svc.<domain>`. `<port>` is a decimal port (1..=65535), the
    /// service and namespace are DNS labels (lower-case letters, digits, `-`; at most 63 bytes),
    /// the domain is not empty. Anything else — a sidecar, another prefix, not UTF-8, a missing
    /// or extra part — is `None`. Total: no input panics.
    pub fn parse(kind: ProxyKind, name: &'a [u8]) -> Option<Destination<'a>> {
        if name.len() > MAX_DESTINATION_NAME_BYTES {
            return None;
        }
        let prefix = match kind.destination_source()? {
            DestinationSource::FilterChainName => "inbound-vip",
            DestinationSource::ClusterName => "outbound",
        };
        let text = core::str::from_utf8(name).ok()?;
        let mut parts = text.split('|');
        let (Some(first), Some(port), Some(middle), Some(fqdn), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        // A waypoint's chain names its protocol; a gateway's cluster may have no subset.
        let middle_ok = match kind {
            ProxyKind::Waypoint => !middle.is_empty(),
            _ => true,
        };
        if first != prefix || !is_port(port) || !middle_ok {
            return None;
        }
        let mut labels = fqdn.split('.');
        let (Some(service), Some(namespace), Some("svc")) =
            (labels.next(), labels.next(), labels.next())
        else {
            return None;
        };
        let domain_ok = labels
            .clone()
            .next()
            .is_some_and(|_| labels.all(|l| !l.is_empty()));
        (is_dns_label(service) && is_dns_label(namespace) && domain_ok)
            .then_some(Destination { service, namespace })
    }

    /// The identity policies are compiled for when a shared proxy of `kind` serves this
    /// destination: its service and namespace, no pod and no labels. The endpoint that serves
    /// the request is picked after the filter ran, so a policy that selects pod labels can never
    /// match in a shared proxy ([`crate::policy::Selector::matches`] needs every label).
    pub fn identity(&self, kind: ProxyKind) -> Identity {
        Identity {
            proxy: kind,
            ..Identity::for_service(self.service, self.namespace)
        }
    }
}

fn is_port(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u32>().is_ok_and(|p| (1..=65_535).contains(&p))
}

/// An RFC 1123 label, as Kubernetes names services and namespaces.
fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(kind: ProxyKind, name: &str) -> Option<(String, String)> {
        Destination::parse(kind, name.as_bytes())
            .map(|d| (d.service.to_owned(), d.namespace.to_owned()))
    }

    fn pair(service: &str, namespace: &str) -> Option<(String, String)> {
        Some((service.to_owned(), namespace.to_owned()))
    }

    use alloc::borrow::ToOwned;
    use alloc::string::String;

    #[test]
    fn a_waypoint_reads_the_service_from_its_filter_chain_name() {
        let w = ProxyKind::Waypoint;
        assert_eq!(
            parsed(
                w,
                "inbound-vip|8080|http|cartservice.shop.svc.cluster.local"
            ),
            pair("cartservice", "shop")
        );
        assert_eq!(
            parsed(w, "inbound-vip|80|http|a-1.ns-2.svc.corp.example"),
            pair("a-1", "ns-2")
        );
        for bad in [
            // Istio before 1.24: no protocol, `-http` after the host.
            "inbound-vip|8080||cartservice.shop.svc.cluster.local-http",
            "outbound|8080||cartservice.shop.svc.cluster.local",
            "inbound|8080|http|cartservice.shop.svc.cluster.local",
            "inbound-vip|0|http|cartservice.shop.svc.cluster.local",
            "inbound-vip|65536|http|cartservice.shop.svc.cluster.local",
            "inbound-vip|80a|http|cartservice.shop.svc.cluster.local",
            "inbound-vip|8080|http|cartservice.shop.svc",
            "inbound-vip|8080|http|cartservice.shop.svc.",
            "inbound-vip|8080|http|cartservice.shop.svc..local",
            "inbound-vip|8080|http|cartservice.shop.cluster.local",
            "inbound-vip|8080|http|Cart.shop.svc.cluster.local",
            "inbound-vip|8080|http|-cart.shop.svc.cluster.local",
            "inbound-vip|8080|http|cart.shop.svc.cluster.local|x",
            "inbound-vip|8080|http",
            "",
        ] {
            assert_eq!(parsed(w, bad), None, "{bad}");
        }
    }

    #[test]
    fn a_gateway_reads_the_service_from_the_routed_cluster() {
        let g = ProxyKind::Gateway;
        assert_eq!(
            parsed(g, "outbound|8080||cartservice.shop.svc.cluster.local"),
            pair("cartservice", "shop")
        );
        assert_eq!(
            parsed(g, "outbound|8080|v2|cartservice.shop.svc.cluster.local"),
            pair("cartservice", "shop")
        );
        assert_eq!(
            parsed(
                g,
                "inbound-vip|8080|http|cartservice.shop.svc.cluster.local"
            ),
            None
        );
        // A ServiceEntry host has no namespace in its name.
        assert_eq!(parsed(g, "outbound|443||api.example.com"), None);
    }

    #[test]
    fn a_sidecar_has_no_destination_to_read() {
        assert_eq!(ProxyKind::Sidecar.destination_source(), None);
        assert_eq!(
            parsed(
                ProxyKind::Sidecar,
                "inbound-vip|8080|http|cartservice.shop.svc.cluster.local"
            ),
            None
        );
    }

    #[test]
    fn a_destination_identity_has_no_pod_and_no_labels() {
        let d = Destination {
            service: "cart",
            namespace: "shop",
        };
        let id = d.identity(ProxyKind::Waypoint);
        assert_eq!(id.service.as_deref(), Some("cart"));
        assert_eq!(id.namespace.as_deref(), Some("shop"));
        assert_eq!(id.proxy, ProxyKind::Waypoint);
        assert!(id.pod.is_none() && id.labels.is_empty());
    }
}
