;; Always answers 503 from on_request_headers (proxy_send_local_response) and logs each call.
(module
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 100) (i32.const 11)))
    (drop (call $reply (i32.const 503) (i32.const 200) (i32.const 12) (i32.const 300) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)))
    ;; 1: StopIteration.
    (i32.const 1))
  (data (i32.const 100) "ABORT-CALL ")
  (data (i32.const 200) "wasm_abort_x")
  (data (i32.const 300) "abort\n"))
