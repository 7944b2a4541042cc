# Experiment 1/4: an emulated waypoint (connect_terminate -> main_internal with Istio-named chains)
# and a gateway, each running a proxy-wasm probe and a dynamic-module probe.
import json, os, sys
CT, MI_BE, GW, ADMIN = map(int, sys.argv[1:5])
D = os.environ.get("RSX", "/tmp/rsx")
SVCS = [("cartservice", "10.96.0.10"), ("productcatalogservice", "10.96.0.11")]
def fqdn(s): return f"{s}.shop.svc.cluster.local"
def wasm(code, name="probe"):
    return {"name": name, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name, "root_id": "", "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": code}}}}}}
def dm(cfg="probe", name="dmprobe"):
    return {"name": name, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"name": "dmprobe"}, "filter_name": "probe",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": cfg}}}
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
def hcm(stat, rc, filters, extra=None):
    c = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
         "stat_prefix": stat, "route_config": rc, "http_filters": filters + [ROUTER]}
    c.update(extra or {})
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": c}
def meta(s): return {"filter_metadata": {"istio": {"services": [{"host": fqdn(s), "name": s, "namespace": "shop"}]}}}
UPSTREAM = len(sys.argv) > 5
CODEC = {"name": "envoy.filters.http.upstream_codec", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}
def backend_cluster(name, s):
    extra = {}
    if UPSTREAM:
        extra = {"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {}}, "http_filters": [wasm(f"{D}/probe.wasm", "uprobe"), dm(name="updm"), CODEC]}}}
    return {**extra, "name": name, "type": "STATIC", "connect_timeout": "1s", "metadata": meta(s),
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": MI_BE}}}}]}]}}
def sfs(key, fmt, factory=None):
    e = {"object_key": key, "format_string": {"text_format_source": {"inline_string": fmt}}, "shared_with_upstream": "ONCE"}
    if factory: e["factory_key"] = factory
    return e
connect_terminate = {"name": "connect_terminate", "address": {"socket_address": {"address": "127.0.0.1", "port_value": CT}},
  "filter_chains": [{"name": "default",
    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
      "require_client_certificate": True, "common_tls_context": {
        "tls_certificates": [{"certificate_chain": {"filename": f"{D}/certs/srv.pem"}, "private_key": {"filename": f"{D}/certs/srv.key"}}],
        "validation_context": {"trusted_ca": {"filename": f"{D}/certs/ca.pem"}}}}},
    "filters": [hcm("connect_terminate",
      {"name": "default", "virtual_hosts": [{"name": "default", "domains": ["*"], "routes": [{"match": {"connect_matcher": {}},
        "route": {"cluster": "main_internal", "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}]}}]}]},
      [{"name": "connect_authority", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
        "on_request_headers": [
          sfs("envoy.filters.listener.original_dst.local_ip", "%REQ(:AUTHORITY)%"),
          sfs("io.istio.connect_authority", "%REQ(:AUTHORITY)%", "envoy.hashable_string"),
          sfs("io.istio.peer_principal", "%DOWNSTREAM_PEER_URI_SAN%", "envoy.hashable_string"),
          sfs("plain.string", "%DOWNSTREAM_PEER_URI_SAN%", "envoy.string")]}}],
      {"upgrade_configs": [{"upgrade_type": "CONNECT"}], "http2_protocol_options": {"allow_connect": True}})]}]}
def chain(s, ip):
    n = f"inbound-vip|8080|http|{fqdn(s)}"
    return {"name": n, "filter_chain_match": {"prefix_ranges": [{"address_prefix": ip, "prefix_len": 32}], "destination_port": 8080},
      "filters": [hcm(n, {"name": n, "virtual_hosts": [{"name": "inbound|http|8080", "domains": ["*"],
        "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": n}}]}]}, [] if UPSTREAM else [wasm(f"{D}/probe.wasm"), dm()])]}
main_internal = {"name": "main_internal", "internal_listener": {}, "traffic_direction": "INBOUND",
  "listener_filters": [{"name": "envoy.filters.listener.original_dst", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}],
  "filter_chains": [chain(s, ip) for s, ip in SVCS]}
backend = {"name": "backend", "address": {"socket_address": {"address": "127.0.0.1", "port_value": MI_BE}},
  "filter_chains": [{"filters": [hcm("backend", {"virtual_hosts": [{"name": "b", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "backend ok\n"}}}]}]}, [])]}]}
gateway = {"name": "gateway", "address": {"socket_address": {"address": "127.0.0.1", "port_value": GW}},
  "filter_chains": [{"filters": [hcm("gateway", {"name": "http.8080", "virtual_hosts": [
      {"name": f"{s}.example.com:8080", "domains": [f"{s}.example.com"], "routes": [{"name": f"{s}-route", "match": {"prefix": "/"}, "route": {"cluster": f"outbound|8080||{fqdn(s)}"}}]} for s, _ in SVCS]},
      [] if UPSTREAM else [wasm(f"{D}/probe.wasm"), dm()])]}]}
clusters = [{"name": "main_internal", "type": "STATIC", "connect_timeout": "1s",
   "load_assignment": {"cluster_name": "main_internal", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"envoy_internal_address": {"server_listener_name": "main_internal"}}}}]}]},
   "transport_socket": {"name": "internal_upstream", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
     "transport_socket": {"name": "raw_buffer", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}}}]
clusters += [backend_cluster(f"inbound-vip|8080|http|{fqdn(s)}", s) for s, _ in SVCS]
clusters += [backend_cluster(f"outbound|8080||{fqdn(s)}", s) for s, _ in SVCS]
print(json.dumps({"node": {"id": "waypoint~10.0.0.9~waypoint-0.shop~shop.svc.cluster.local", "cluster": "waypoint.shop"},
  "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN}}},
  "bootstrap_extensions": [{"name": "envoy.bootstrap.internal_listener", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"}}],
  "static_resources": {"listeners": [connect_terminate, main_internal, backend, gateway], "clusters": clusters}}, indent=1))
