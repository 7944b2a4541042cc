;; The floor of a proxy-wasm HTTP filter in Envoy: the exports Envoy needs, each doing nothing.
;; `boifi-bench dataplane` and `footprint` compile it (the `wat` crate) and run it as a row, so
;; boifi's cost is always measured against the cheapest module Envoy's V8 can run.
(module
  (memory (export "memory") 1)
  ;; Envoy refuses a module without an allocator; nothing here ever asks the host for data.
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  ;; 0: Continue.
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))
