/* The proxy-wasm v0.2.1 hostcalls and constants the example plugins use, for C compiled with
 * clang --target=wasm32-wasi against Debian's wasi-libc (src/plugins/CMakeLists.txt builds them).
 * The official SDKs declare the same imports; this is the subset ember's examples need. */
#ifndef EMBER_PROXY_WASM_H
#define EMBER_PROXY_WASM_H

#include <stddef.h>
#include <stdint.h>

#define PW_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define PW_EXPORT(name) __attribute__((export_name(#name)))

enum { PW_OK = 0, PW_NOT_FOUND = 1 };
enum { PW_CONTINUE = 0, PW_PAUSE = 1 };
enum { PW_REQUEST_BODY = 0, PW_RESPONSE_BODY = 1, PW_PLUGIN_CONFIGURATION = 7 };
enum { PW_LOG_INFO = 2, PW_LOG_WARN = 3 };

PW_IMPORT(proxy_log) int32_t proxy_log(int32_t level, const char* message, size_t size);
PW_IMPORT(proxy_get_buffer_bytes)
int32_t proxy_get_buffer_bytes(int32_t type, size_t start, size_t max, char** data, size_t* size);
PW_IMPORT(proxy_set_buffer_bytes)
int32_t proxy_set_buffer_bytes(int32_t type, size_t start, size_t size, const char* data,
                               size_t data_size);
PW_IMPORT(proxy_get_property)
int32_t proxy_get_property(const char* path, size_t path_size, char** data, size_t* size);
PW_IMPORT(proxy_send_local_response)
int32_t proxy_send_local_response(uint32_t status, const char* details, size_t details_size,
                                  const char* body, size_t body_size, const char* headers,
                                  size_t headers_size, int32_t grpc_status);
PW_IMPORT(proxy_close_stream) int32_t proxy_close_stream(int32_t stream_type);
enum { PW_METRIC_COUNTER = 0, PW_METRIC_GAUGE = 1, PW_METRIC_HISTOGRAM = 2 };
PW_IMPORT(proxy_define_metric)
int32_t proxy_define_metric(int32_t type, const char* name, size_t name_size, uint32_t* id);
PW_IMPORT(proxy_increment_metric) int32_t proxy_increment_metric(uint32_t id, int64_t offset);
PW_IMPORT(proxy_record_metric) int32_t proxy_record_metric(uint32_t id, uint64_t value);

/* Every proxy-wasm plugin exports these (the root context needs no state here). */
#define PW_ABI_BOILERPLATE                                                                  \
  PW_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}                  \
  PW_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t c, uint32_t p) { \
    (void)c;                                                                                \
    (void)p;                                                                                \
  }                                                                                         \
  PW_EXPORT(proxy_on_memory_allocate) void* proxy_on_memory_allocate(size_t n) { return malloc(n); }

#endif
