/* A test plugin, not an example to deploy: it checks the streaming contract of the response
 * hooks. Every proxy_on_response_body of a stream must get exactly one complete SSE event: one
 * "data: " line, ending in a blank line ("\n\n"), never part of one, never two. Anything else
 * traps (`unreachable`), so a fail-closed chain turns a broken contract into a stream that ends
 * with finish_reason "content_filter" instead of the model's own reason. A non-streamed body
 * (not starting with "data: " or "event: ") is not checked. */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

PW_ABI_BOILERPLATE

static size_t count(const char* s, size_t n, const char* what) {
  size_t k = strlen(what), found = 0;
  for (size_t i = 0; i + k <= n; ++i) found += memcmp(s + i, what, k) == 0;
  return found;
}

PW_EXPORT(proxy_on_response_body)
int proxy_on_response_body(uint32_t context, size_t size, int end_of_stream) {
  (void)context;
  (void)end_of_stream;
  char* body = NULL;
  size_t n = 0;
  if (size == 0 || proxy_get_buffer_bytes(PW_RESPONSE_BODY, 0, size, &body, &n) != PW_OK) {
    __builtin_trap(); /* an empty callback is not an event either */
  }
  const int sse =
      (n >= 6 && memcmp(body, "data: ", 6) == 0) || (n >= 7 && memcmp(body, "event: ", 7) == 0);
  if (sse) {
    const int one_data_line = count(body, n, "data: ") == 1;
    const int ends = n >= 2 && body[n - 2] == '\n' && body[n - 1] == '\n';
    const int one_blank_line = count(body, n, "\n\n") == 1;
    if (!one_data_line || !ends || !one_blank_line) __builtin_trap();
  }
  free(body);
  return PW_CONTINUE;
}
