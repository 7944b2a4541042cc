# Experiment 3: filters as UPSTREAM HTTP filters of a cluster (HttpProtocolOptions.http_filters),
# a route with retries; does a local reply of an upstream filter get retried?
import json, os, sys
mode, P, BE, AD = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
D = os.environ.get("RSX", "/tmp/rsx")
def wasm(code, name, cfg=None):
    c = {"name": name, "root_id": "", "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": code}}}}
    if cfg is not None: c["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": cfg}
    return {"name": name, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": c}}
def dm(module, cfg, fname):
    return {"name": "dm", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"name": module}, "filter_name": fname,
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": cfg}}}
BOIFI_CFG = json.dumps({"control_plane_cluster": "outbound|8080||boifi-control-plane.boifi.svc.cluster.local"})
upstream = {
  "none": [],
  "wasm-abort": [wasm(f"{D}/abort.wasm", "abort")],
  "wasm-pause": [wasm(f"{D}/pause.wasm", "pause")],
  "wasm-reset": [wasm(f"{D}/reset.wasm", "reset")],
  "down-pause": [],
  "wasm-statusrw": [wasm(f"{D}/statusrw.wasm", "statusrw")],
  "wasm-half": [wasm(f"{D}/half.wasm", "half")],
  "dm-statusrw": [dm("dmprobe", "statusrw", "probe")],
  "wasm-probe": [wasm(f"{D}/probe.wasm", "probe")],
  "dm-abort": [dm("dmprobe", "abort", "probe")],
  "dm-probe": [dm("dmprobe", "probe", "probe")],
  "boifi-wasm": [wasm("target/debian/wasm32-unknown-unknown/release/boifi_wasm.wasm", "istio-system.boifi", BOIFI_CFG)],
  "boifi-native": [dm("boifi", json.dumps({"control_plane_address": "127.0.0.1:9"}), "boifi")],
  "backend-503": [],
}[mode]
codec = {"name": "envoy.filters.http.upstream_codec", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}
hpo = {"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicit_http_config": {"http_protocol_options": {}}}
if upstream: hpo["http_filters"] = upstream + [codec]
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
def hcm(stat, rc, pre=()):
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat, "route_config": rc, "http_filters": list(pre) + [ROUTER]}}
status = 503 if mode == "backend-503" else 200
svc = "inbound-vip|8080|http|cartservice.shop.svc.cluster.local"
print(json.dumps({"node": {"id": "retry-test", "cluster": "retry-test"},
 "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": AD}}},
 "static_resources": {
  "listeners": [
   {"name": "front", "address": {"socket_address": {"address": "127.0.0.1", "port_value": P}},
    "filter_chains": [{"filters": [hcm("front", pre=[wasm(f"{D}/pause.wasm", "pause")] if mode == "down-pause" else [], rc={"name": svc, "virtual_hosts": [{"name": "inbound|http|8080", "domains": ["*"], "routes": [{"name": "default", "match": {"prefix": "/"},
       "route": {"cluster": svc, "timeout": "5s" if mode not in ("wasm-pause","down-pause") else "1.5s", "retry_policy": {"retry_on": "5xx,gateway-error,unavailable,reset", "num_retries": 2, **({"per_try_timeout": "0.3s"} if mode in ("wasm-pause","down-pause") else {})}}}]}]})]}]},
   {"name": "backend", "address": {"socket_address": {"address": "127.0.0.1", "port_value": BE}},
    "filter_chains": [{"filters": [hcm("backend", {"virtual_hosts": [{"name": "b", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": status, "body": {"inline_string": "backend\n"}}}]}]})]}]}],
  "clusters": [{"name": svc, "type": "STATIC", "connect_timeout": "1s",
    "metadata": {"filter_metadata": {"istio": {"services": [{"host": "cartservice.shop.svc.cluster.local", "name": "cartservice", "namespace": "shop"}]}}},
    "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": hpo},
    "load_assignment": {"cluster_name": svc, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": BE}}}}]}]}}]}}, indent=1))
