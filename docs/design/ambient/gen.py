# Generates probe.wat: logs selected proxy-wasm properties on request headers.
import sys
paths = [
 ("xds.filter_chain_name", ["xds","filter_chain_name"]),
 ("xds.cluster_name", ["xds","cluster_name"]),
 ("xds.route_name", ["xds","route_name"]),
 ("xds.virtual_host_name", ["xds","virtual_host_name"]),
 ("xds.cluster_metadata", ["xds","cluster_metadata"]),
 ("xds.cluster_metadata.filter_metadata.istio", ["xds","cluster_metadata","filter_metadata","istio"]),
 ("xds.route_metadata", ["xds","route_metadata"]),
 ("xds.listener_direction", ["xds","listener_direction"]),
 ("request.host", ["request","host"]),
 ("destination.address", ["destination","address"]),
 ("source.address", ["source","address"]),
 ("connection.uri_san_peer_certificate", ["connection","uri_san_peer_certificate"]),
 ("filter_state.io.istio.peer_principal", ["filter_state","io.istio.peer_principal"]),
 ("upstream.address", ["upstream","address"]),
 ("node.id", ["node","id"]),
]
def esc(b): return "".join("\\%02x" % c for c in b)
data=[]; off=1024; calls=[]
for label,toks in paths:
    lab=("PROBE "+label+" = ").encode(); p=b"\0".join(t.encode() for t in toks)
    lo=off; data.append((lo,lab)); off+=len(lab)
    po=off; data.append((po,p)); off+=len(p)
    calls.append((lo,len(lab),po,len(p)))
miss=b"<absent>"; mo=off; data.append((mo,miss)); off+=len(miss)
assert off<8000
out=['(module',
 ' (import "env" "proxy_get_property" (func $gp (param i32 i32 i32 i32) (result i32)))',
 ' (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))',
 ' (memory (export "memory") 2)',
 ' (global $heap (mut i32) (i32.const 65536))',
 ' (func (export "malloc") (param $n i32) (result i32) (local $r i32)',
 '   (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 131000)) (then (global.set $heap (i32.const 65536))))',
 '   (local.set $r (global.get $heap))',
 '   (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $n)) (i32.const 15)) (i32.const -16)))',
 '   (local.get $r))',
 ' (func (export "proxy_abi_version_0_2_1"))',
 ' (func (export "proxy_on_context_create") (param i32 i32))',
 ' (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))',
 ' (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))',
 # one probe: label at lo/ll, path po/pl; output buffer at 32768
 ' (func $probe (param $lo i32) (param $ll i32) (param $po i32) (param $pl i32) (local $st i32) (local $vp i32) (local $vl i32)',
 '   (memory.copy (i32.const 32768) (local.get $lo) (local.get $ll))',
 '   (i32.store (i32.const 8192) (i32.const 0)) (i32.store (i32.const 8196) (i32.const 0))',
 '   (local.set $st (call $gp (local.get $po) (local.get $pl) (i32.const 8192) (i32.const 8196)))',
 '   (local.set $vp (i32.load (i32.const 8192))) (local.set $vl (i32.load (i32.const 8196)))',
 '   (if (i32.eqz (local.get $st))',
 '     (then (if (i32.gt_u (local.get $vl) (i32.const 30000)) (then (local.set $vl (i32.const 30000))))',
 '           (memory.copy (i32.add (i32.const 32768) (local.get $ll)) (local.get $vp) (local.get $vl)))',
 f'     (else (local.set $vl (i32.const {len(miss)})) (memory.copy (i32.add (i32.const 32768) (local.get $ll)) (i32.const {mo}) (local.get $vl))))',
 '   (drop (call $log (i32.const 2) (i32.const 32768) (i32.add (local.get $ll) (local.get $vl)))))',
 ' (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)']
for lo,ll,po,pl in calls: out.append(f'   (call $probe (i32.const {lo}) (i32.const {ll}) (i32.const {po}) (i32.const {pl}))')
out.append('   (i32.const 0))')
for o,b in data: out.append(f' (data (i32.const {o}) "{esc(b)}")')
out.append(')')
open("probe.wat","w").write("\n".join(out)+"\n")
