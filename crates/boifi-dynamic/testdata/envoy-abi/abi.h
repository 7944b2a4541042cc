// Excerpt of Envoy's source/extensions/dynamic_modules/abi/abi.h (Apache-2.0, see LICENSE and
// README.md beside this file): every declaration boifi-dynamic's `abi` module relies on, copied
// verbatim (declarations in their order in the header; doc comments left out, section markers
// kept). Not the whole header: it is 731,699 characters.
#pragma once

#define ENVOY_DYNAMIC_MODULES_ABI_VERSION "v0.1.0"

#ifdef __cplusplus
#include <cstdbool>
#include <cstddef>
#include <cstdint>

extern "C" {
#else
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#endif

// =============================================================================
// Common Types
// =============================================================================

typedef const char* envoy_dynamic_module_type_abi_version_module_ptr;

typedef const char* envoy_dynamic_module_type_buffer_module_ptr;

typedef const char* envoy_dynamic_module_type_buffer_envoy_ptr;

typedef struct envoy_dynamic_module_type_envoy_buffer {
  envoy_dynamic_module_type_buffer_envoy_ptr ptr;
  size_t length;
} envoy_dynamic_module_type_envoy_buffer;

typedef struct envoy_dynamic_module_type_module_buffer {
  envoy_dynamic_module_type_buffer_module_ptr ptr;
  size_t length;
} envoy_dynamic_module_type_module_buffer;

typedef struct envoy_dynamic_module_type_module_http_header {
  envoy_dynamic_module_type_buffer_module_ptr key_ptr;
  size_t key_length;
  envoy_dynamic_module_type_buffer_module_ptr value_ptr;
  size_t value_length;
} envoy_dynamic_module_type_module_http_header;

typedef struct envoy_dynamic_module_type_envoy_http_header {
  envoy_dynamic_module_type_buffer_envoy_ptr key_ptr;
  size_t key_length;
  envoy_dynamic_module_type_buffer_envoy_ptr value_ptr;
  size_t value_length;
} envoy_dynamic_module_type_envoy_http_header;

typedef enum envoy_dynamic_module_type_http_header_type {
  envoy_dynamic_module_type_http_header_type_RequestHeader,
  envoy_dynamic_module_type_http_header_type_RequestTrailer,
  envoy_dynamic_module_type_http_header_type_ResponseHeader,
  envoy_dynamic_module_type_http_header_type_ResponseTrailer,
} envoy_dynamic_module_type_http_header_type;

typedef enum envoy_dynamic_module_type_log_level {
  envoy_dynamic_module_type_log_level_Trace,
  envoy_dynamic_module_type_log_level_Debug,
  envoy_dynamic_module_type_log_level_Info,
  envoy_dynamic_module_type_log_level_Warn,
  envoy_dynamic_module_type_log_level_Error,
  envoy_dynamic_module_type_log_level_Critical,
  envoy_dynamic_module_type_log_level_Off,
} envoy_dynamic_module_type_log_level;

typedef enum envoy_dynamic_module_type_http_callout_result {
  envoy_dynamic_module_type_http_callout_result_Success,
  envoy_dynamic_module_type_http_callout_result_Reset,
  envoy_dynamic_module_type_http_callout_result_ExceedResponseBufferLimit,
} envoy_dynamic_module_type_http_callout_result;

typedef enum envoy_dynamic_module_type_http_stream_reset_reason {
  envoy_dynamic_module_type_http_stream_reset_reason_ConnectionFailure,
  envoy_dynamic_module_type_http_stream_reset_reason_ConnectionTermination,
  envoy_dynamic_module_type_http_stream_reset_reason_LocalReset,
  envoy_dynamic_module_type_http_stream_reset_reason_LocalRefusedStreamReset,
  envoy_dynamic_module_type_http_stream_reset_reason_Overflow,
  envoy_dynamic_module_type_http_stream_reset_reason_RemoteReset,
  envoy_dynamic_module_type_http_stream_reset_reason_RemoteRefusedStreamReset,
  envoy_dynamic_module_type_http_stream_reset_reason_ProtocolError,
} envoy_dynamic_module_type_http_stream_reset_reason;

typedef enum envoy_dynamic_module_type_metrics_result {
  envoy_dynamic_module_type_metrics_result_Success,
  envoy_dynamic_module_type_metrics_result_MetricNotFound,
  envoy_dynamic_module_type_metrics_result_InvalidLabels,
  envoy_dynamic_module_type_metrics_result_Frozen,
} envoy_dynamic_module_type_metrics_result;

typedef enum envoy_dynamic_module_type_attribute_id {
  // request.path
  envoy_dynamic_module_type_attribute_id_RequestPath,
  // request.url_path
  envoy_dynamic_module_type_attribute_id_RequestUrlPath,
  // request.host
  envoy_dynamic_module_type_attribute_id_RequestHost,
  // request.scheme
  envoy_dynamic_module_type_attribute_id_RequestScheme,
  // request.method
  envoy_dynamic_module_type_attribute_id_RequestMethod,
  // request.headers
  envoy_dynamic_module_type_attribute_id_RequestHeaders,
  // request.referer
  envoy_dynamic_module_type_attribute_id_RequestReferer,
  // request.useragent
  envoy_dynamic_module_type_attribute_id_RequestUserAgent,
  // request.time
  envoy_dynamic_module_type_attribute_id_RequestTime,
  // request.id
  envoy_dynamic_module_type_attribute_id_RequestId,
  // request.protocol
  envoy_dynamic_module_type_attribute_id_RequestProtocol,
  // request.query
  envoy_dynamic_module_type_attribute_id_RequestQuery,
  // request.duration
  envoy_dynamic_module_type_attribute_id_RequestDuration,
  // request.size
  envoy_dynamic_module_type_attribute_id_RequestSize,
  // request.total_size
  envoy_dynamic_module_type_attribute_id_RequestTotalSize,
  // response.code
  envoy_dynamic_module_type_attribute_id_ResponseCode,
  // response.code_details
  envoy_dynamic_module_type_attribute_id_ResponseCodeDetails,
  // response.flags
  envoy_dynamic_module_type_attribute_id_ResponseFlags,
  // response.grpc_status
  envoy_dynamic_module_type_attribute_id_ResponseGrpcStatus,
  // response.headers
  envoy_dynamic_module_type_attribute_id_ResponseHeaders,
  // response.trailers
  envoy_dynamic_module_type_attribute_id_ResponseTrailers,
  // response.size
  envoy_dynamic_module_type_attribute_id_ResponseSize,
  // response.total_size
  envoy_dynamic_module_type_attribute_id_ResponseTotalSize,
  // response.backend_latency
  envoy_dynamic_module_type_attribute_id_ResponseBackendLatency,
  // source.address
  envoy_dynamic_module_type_attribute_id_SourceAddress,
  // source.port
  envoy_dynamic_module_type_attribute_id_SourcePort,
  // destination.address
  envoy_dynamic_module_type_attribute_id_DestinationAddress,
  // destination.port
  envoy_dynamic_module_type_attribute_id_DestinationPort,
  // connection.id
  envoy_dynamic_module_type_attribute_id_ConnectionId,
  // connection.mtls
  envoy_dynamic_module_type_attribute_id_ConnectionMtls,
  // connection.requested_server_name
  envoy_dynamic_module_type_attribute_id_ConnectionRequestedServerName,
  // connection.tls_version
  envoy_dynamic_module_type_attribute_id_ConnectionTlsVersion,
  // connection.subject_local_certificate
  envoy_dynamic_module_type_attribute_id_ConnectionSubjectLocalCertificate,
  // connection.subject_peer_certificate
  envoy_dynamic_module_type_attribute_id_ConnectionSubjectPeerCertificate,
  // connection.dns_san_local_certificate
  envoy_dynamic_module_type_attribute_id_ConnectionDnsSanLocalCertificate,
  // connection.dns_san_peer_certificate
  envoy_dynamic_module_type_attribute_id_ConnectionDnsSanPeerCertificate,
  // connection.uri_san_local_certificate
  envoy_dynamic_module_type_attribute_id_ConnectionUriSanLocalCertificate,
  // connection.uri_san_peer_certificate
  envoy_dynamic_module_type_attribute_id_ConnectionUriSanPeerCertificate,
  // connection.sha256_peer_certificate_digest
  envoy_dynamic_module_type_attribute_id_ConnectionSha256PeerCertificateDigest,
  // connection.transport_failure_reason
  envoy_dynamic_module_type_attribute_id_ConnectionTransportFailureReason,
  // connection.termination_details
  envoy_dynamic_module_type_attribute_id_ConnectionTerminationDetails,
  // upstream.address
  envoy_dynamic_module_type_attribute_id_UpstreamAddress,
  // upstream.port
  envoy_dynamic_module_type_attribute_id_UpstreamPort,
  // upstream.tls_version
  envoy_dynamic_module_type_attribute_id_UpstreamTlsVersion,
  // upstream.subject_local_certificate
  envoy_dynamic_module_type_attribute_id_UpstreamSubjectLocalCertificate,
  // upstream.subject_peer_certificate
  envoy_dynamic_module_type_attribute_id_UpstreamSubjectPeerCertificate,
  // upstream.dns_san_local_certificate
  envoy_dynamic_module_type_attribute_id_UpstreamDnsSanLocalCertificate,
  // upstream.dns_san_peer_certificate
  envoy_dynamic_module_type_attribute_id_UpstreamDnsSanPeerCertificate,
  // upstream.uri_san_local_certificate
  envoy_dynamic_module_type_attribute_id_UpstreamUriSanLocalCertificate,
  // upstream.uri_san_peer_certificate
  envoy_dynamic_module_type_attribute_id_UpstreamUriSanPeerCertificate,
  // upstream.sha256_peer_certificate_digest
  envoy_dynamic_module_type_attribute_id_UpstreamSha256PeerCertificateDigest,
  // upstream.local_address
  envoy_dynamic_module_type_attribute_id_UpstreamLocalAddress,
  // upstream.transport_failure_reason
  envoy_dynamic_module_type_attribute_id_UpstreamTransportFailureReason,
  // upstream.request_attempt_count
  envoy_dynamic_module_type_attribute_id_UpstreamRequestAttemptCount,
  // upstream.cx_pool_ready_duration
  envoy_dynamic_module_type_attribute_id_UpstreamCxPoolReadyDuration,
  // upstream.locality
  envoy_dynamic_module_type_attribute_id_UpstreamLocality,
  // xds.node
  envoy_dynamic_module_type_attribute_id_XdsNode,
  // xds.cluster_name
  envoy_dynamic_module_type_attribute_id_XdsClusterName,
  // xds.cluster_metadata
  envoy_dynamic_module_type_attribute_id_XdsClusterMetadata,
  // xds.listener_direction
  envoy_dynamic_module_type_attribute_id_XdsListenerDirection,
  // xds.listener_metadata
  envoy_dynamic_module_type_attribute_id_XdsListenerMetadata,
  // xds.route_name
  envoy_dynamic_module_type_attribute_id_XdsRouteName,
  // xds.route_metadata
  envoy_dynamic_module_type_attribute_id_XdsRouteMetadata,
  // xds.virtual_host_name
  envoy_dynamic_module_type_attribute_id_XdsVirtualHostName,
  // xds.virtual_host_metadata
  envoy_dynamic_module_type_attribute_id_XdsVirtualHostMetadata,
  // xds.upstream_host_metadata
  envoy_dynamic_module_type_attribute_id_XdsUpstreamHostMetadata,
  // xds.filter_chain_name
  envoy_dynamic_module_type_attribute_id_XdsFilterChainName,
  // health_check
  envoy_dynamic_module_type_attribute_id_HealthCheck,
} envoy_dynamic_module_type_attribute_id;

// =============================================================================
// Common Event Hooks
// =============================================================================

envoy_dynamic_module_type_abi_version_module_ptr envoy_dynamic_module_on_program_init(void);

// =============================================================================
// Common Callbacks
// =============================================================================

void envoy_dynamic_module_callback_log(envoy_dynamic_module_type_log_level level,
                                       envoy_dynamic_module_type_module_buffer message);

bool envoy_dynamic_module_callback_log_enabled(envoy_dynamic_module_type_log_level level);

// =============================================================================
// HTTP Filter Types
// =============================================================================

typedef void* envoy_dynamic_module_type_http_filter_config_envoy_ptr;

typedef const void* envoy_dynamic_module_type_http_filter_config_module_ptr;

typedef void* envoy_dynamic_module_type_http_filter_envoy_ptr;

typedef const void* envoy_dynamic_module_type_http_filter_module_ptr;

typedef void* envoy_dynamic_module_type_http_filter_scheduler_module_ptr;

typedef void* envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr;

typedef enum envoy_dynamic_module_type_on_http_filter_request_headers_status {
  envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue,
  envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration,
  envoy_dynamic_module_type_on_http_filter_request_headers_status_ContinueAndDontEndStream,
  envoy_dynamic_module_type_on_http_filter_request_headers_status_StopAllIterationAndBuffer,
  envoy_dynamic_module_type_on_http_filter_request_headers_status_StopAllIterationAndWatermark,
} envoy_dynamic_module_type_on_http_filter_request_headers_status;

typedef enum envoy_dynamic_module_type_on_http_filter_request_body_status {
  envoy_dynamic_module_type_on_http_filter_request_body_status_Continue,
  envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndBuffer,
  envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndWatermark,
  envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationNoBuffer
} envoy_dynamic_module_type_on_http_filter_request_body_status;

typedef enum envoy_dynamic_module_type_on_http_filter_request_trailers_status {
  envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue,
  envoy_dynamic_module_type_on_http_filter_request_trailers_status_StopIteration
} envoy_dynamic_module_type_on_http_filter_request_trailers_status;

typedef enum envoy_dynamic_module_type_on_http_filter_response_headers_status {
  envoy_dynamic_module_type_on_http_filter_response_headers_status_Continue,
  envoy_dynamic_module_type_on_http_filter_response_headers_status_StopIteration,
  envoy_dynamic_module_type_on_http_filter_response_headers_status_ContinueAndDontEndStream,
  envoy_dynamic_module_type_on_http_filter_response_headers_status_StopAllIterationAndBuffer,
  envoy_dynamic_module_type_on_http_filter_response_headers_status_StopAllIterationAndWatermark,
} envoy_dynamic_module_type_on_http_filter_response_headers_status;

typedef enum envoy_dynamic_module_type_on_http_filter_response_body_status {
  envoy_dynamic_module_type_on_http_filter_response_body_status_Continue,
  envoy_dynamic_module_type_on_http_filter_response_body_status_StopIterationAndBuffer,
  envoy_dynamic_module_type_on_http_filter_response_body_status_StopIterationAndWatermark,
  envoy_dynamic_module_type_on_http_filter_response_body_status_StopIterationNoBuffer
} envoy_dynamic_module_type_on_http_filter_response_body_status;

typedef enum envoy_dynamic_module_type_on_http_filter_response_trailers_status {
  envoy_dynamic_module_type_on_http_filter_response_trailers_status_Continue,
  envoy_dynamic_module_type_on_http_filter_response_trailers_status_StopIteration
} envoy_dynamic_module_type_on_http_filter_response_trailers_status;

// =============================================================================
// HTTP Filter Event Hooks
// =============================================================================

envoy_dynamic_module_type_http_filter_config_module_ptr
envoy_dynamic_module_on_http_filter_config_new(
    envoy_dynamic_module_type_http_filter_config_envoy_ptr filter_config_envoy_ptr,
    envoy_dynamic_module_type_envoy_buffer name, envoy_dynamic_module_type_envoy_buffer config);

void envoy_dynamic_module_on_http_filter_config_destroy(
    envoy_dynamic_module_type_http_filter_config_module_ptr filter_config_ptr);

envoy_dynamic_module_type_http_filter_module_ptr envoy_dynamic_module_on_http_filter_new(
    envoy_dynamic_module_type_http_filter_config_module_ptr filter_config_ptr,
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr);

envoy_dynamic_module_type_on_http_filter_request_headers_status
envoy_dynamic_module_on_http_filter_request_headers(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, bool end_of_stream);

envoy_dynamic_module_type_on_http_filter_request_body_status
envoy_dynamic_module_on_http_filter_request_body(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, bool end_of_stream);

envoy_dynamic_module_type_on_http_filter_request_trailers_status
envoy_dynamic_module_on_http_filter_request_trailers(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr);

envoy_dynamic_module_type_on_http_filter_response_headers_status
envoy_dynamic_module_on_http_filter_response_headers(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, bool end_of_stream);

envoy_dynamic_module_type_on_http_filter_response_body_status
envoy_dynamic_module_on_http_filter_response_body(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, bool end_of_stream);

envoy_dynamic_module_type_on_http_filter_response_trailers_status
envoy_dynamic_module_on_http_filter_response_trailers(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr);

void envoy_dynamic_module_on_http_filter_stream_complete(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr);

void envoy_dynamic_module_on_http_filter_destroy(
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr);

void envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, uint64_t callout_id,
    envoy_dynamic_module_type_http_callout_result result,
    envoy_dynamic_module_type_envoy_http_header* headers, size_t headers_size,
    envoy_dynamic_module_type_envoy_buffer* body_chunks, size_t body_chunks_size);

void envoy_dynamic_module_on_http_filter_http_stream_headers(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, uint64_t stream_id,
    envoy_dynamic_module_type_envoy_http_header* headers, size_t headers_size, bool end_stream);

void envoy_dynamic_module_on_http_filter_http_stream_data(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, uint64_t stream_id,
    const envoy_dynamic_module_type_envoy_buffer* data, size_t data_count, bool end_stream);

void envoy_dynamic_module_on_http_filter_http_stream_trailers(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, uint64_t stream_id,
    envoy_dynamic_module_type_envoy_http_header* trailers, size_t trailers_size);

void envoy_dynamic_module_on_http_filter_http_stream_complete(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, uint64_t stream_id);

void envoy_dynamic_module_on_http_filter_http_stream_reset(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, uint64_t stream_id,
    envoy_dynamic_module_type_http_stream_reset_reason reason);

void envoy_dynamic_module_on_http_filter_scheduled(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr, uint64_t event_id);

void envoy_dynamic_module_on_http_filter_config_scheduled(
    envoy_dynamic_module_type_http_filter_config_envoy_ptr filter_config_envoy_ptr,
    envoy_dynamic_module_type_http_filter_config_module_ptr filter_config_ptr, uint64_t event_id);

void envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr);

void envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_filter_module_ptr filter_module_ptr);

// =============================================================================
// HTTP Filter Callbacks
// =============================================================================

// ----------------------------- Metrics callbacks -----------------------------

envoy_dynamic_module_type_metrics_result
envoy_dynamic_module_callback_http_filter_config_define_counter(
    envoy_dynamic_module_type_http_filter_config_envoy_ptr filter_config_envoy_ptr,
    envoy_dynamic_module_type_module_buffer name,
    envoy_dynamic_module_type_module_buffer* label_names, size_t label_names_length,
    size_t* counter_id_ptr);

envoy_dynamic_module_type_metrics_result
envoy_dynamic_module_callback_http_filter_increment_counter(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr, size_t id,
    envoy_dynamic_module_type_module_buffer* label_values, size_t label_values_length,
    uint64_t value);

envoy_dynamic_module_type_metrics_result
envoy_dynamic_module_callback_http_filter_config_define_gauge(
    envoy_dynamic_module_type_http_filter_config_envoy_ptr filter_config_envoy_ptr,
    envoy_dynamic_module_type_module_buffer name,
    envoy_dynamic_module_type_module_buffer* label_names, size_t label_names_length,
    size_t* gauge_id_ptr);

envoy_dynamic_module_type_metrics_result envoy_dynamic_module_callback_http_filter_set_gauge(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr, size_t id,
    envoy_dynamic_module_type_module_buffer* label_values, size_t label_values_length,
    uint64_t value);

envoy_dynamic_module_type_metrics_result
envoy_dynamic_module_callback_http_filter_config_increment_counter(
    envoy_dynamic_module_type_http_filter_config_envoy_ptr filter_config_envoy_ptr, size_t id,
    envoy_dynamic_module_type_module_buffer* label_values, size_t label_values_length,
    uint64_t value);

envoy_dynamic_module_type_metrics_result envoy_dynamic_module_callback_http_filter_config_set_gauge(
    envoy_dynamic_module_type_http_filter_config_envoy_ptr filter_config_envoy_ptr, size_t id,
    envoy_dynamic_module_type_module_buffer* label_values, size_t label_values_length,
    uint64_t value);

// ---------------------- HTTP Header/Trailer callbacks ------------------------

bool envoy_dynamic_module_callback_http_get_header(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_header_type header_type,
    envoy_dynamic_module_type_module_buffer key,
    envoy_dynamic_module_type_envoy_buffer* result_buffer, size_t index, size_t* optional_size);

bool envoy_dynamic_module_callback_http_set_header(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_http_header_type header_type,
    envoy_dynamic_module_type_module_buffer key, envoy_dynamic_module_type_module_buffer value);

// ---------------------- HTTP local response callbacks ------------------------

void envoy_dynamic_module_callback_http_send_response(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr, uint32_t status_code,
    envoy_dynamic_module_type_module_http_header* headers_vector, size_t headers_vector_size,
    envoy_dynamic_module_type_module_buffer body, envoy_dynamic_module_type_module_buffer details);

// -------------------------- Filter State Callbacks ---------------------------

bool envoy_dynamic_module_callback_http_get_filter_state_bytes(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_module_buffer key, envoy_dynamic_module_type_envoy_buffer* result);

// ---------------------- HTTP filter scheduler callbacks ------------------------

envoy_dynamic_module_type_http_filter_scheduler_module_ptr
envoy_dynamic_module_callback_http_filter_scheduler_new(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr);

void envoy_dynamic_module_callback_http_filter_scheduler_commit(
    envoy_dynamic_module_type_http_filter_scheduler_module_ptr scheduler_module_ptr,
    uint64_t event_id);

void envoy_dynamic_module_callback_http_filter_scheduler_delete(
    envoy_dynamic_module_type_http_filter_scheduler_module_ptr scheduler_module_ptr);

envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr
envoy_dynamic_module_callback_http_filter_config_scheduler_new(
    envoy_dynamic_module_type_http_filter_config_envoy_ptr filter_config_envoy_ptr);

void envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
    envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr scheduler_module_ptr);

void envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
    envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr scheduler_module_ptr,
    uint64_t event_id);

// ------------------- Misc Callbacks for HTTP Filters -------------------------

bool envoy_dynamic_module_callback_http_filter_get_attribute_string(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr,
    envoy_dynamic_module_type_attribute_id attribute_id,
    envoy_dynamic_module_type_envoy_buffer* result);

void envoy_dynamic_module_callback_http_filter_continue_decoding(
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy_ptr);

#ifdef __cplusplus
}
#endif
