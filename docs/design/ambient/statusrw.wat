;; Lets the request reach the backend, then rewrites the response :status to 503 in
;; on_response_headers (as an upstream filter the router should see it as the upstream's answer).
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $rep (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 100) (i32.const 12)))
    ;; 2: response headers.
    (drop (call $rep (i32.const 2) (i32.const 200) (i32.const 7) (i32.const 300) (i32.const 3)))
    (i32.const 0))
  (data (i32.const 100) "STATUSRW-RSP")
  (data (i32.const 200) ":status")
  (data (i32.const 300) "503"))
