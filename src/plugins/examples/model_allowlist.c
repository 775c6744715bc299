/* Per-tenant model allow-list: a request whose tenant may not use its model is answered 403
 * with the OpenAI error envelope, before it reaches the scheduler.
 * Configuration, one line per tenant ("*" for every tenant not named):
 *     acme: tiny, small
 *     *: tiny
 * A tenant with no line and no "*" line may use no model. */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

PW_ABI_BOILERPLATE

static char* config;
static size_t config_size;

PW_EXPORT(proxy_on_configure) int proxy_on_configure(uint32_t root, size_t size) {
  (void)root;
  free(config);
  config = NULL;
  config_size = 0;
  if (size == 0) return 1;
  return proxy_get_buffer_bytes(PW_PLUGIN_CONFIGURATION, 0, size, &config, &config_size) == PW_OK;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Whether `model` is in the comma-separated list [list, end). */
static int listed(const char* list, const char* end, const char* model, size_t model_size) {
  while (list < end) {
    while (list < end && (is_space(*list) || *list == ',')) ++list;
    const char* item = list;
    while (list < end && *list != ',') ++list;
    const char* item_end = list;
    while (item_end > item && is_space(item_end[-1])) --item_end;
    if ((size_t)(item_end - item) == model_size && memcmp(item, model, model_size) == 0) return 1;
  }
  return 0;
}

/* The list for `tenant` (or "*"): 1 allowed, 0 not, -1 no line for it. */
static int allowed_for(const char* tenant, size_t tenant_size, const char* model,
                       size_t model_size) {
  const char* p = config;
  const char* end = config + config_size;
  while (p < end) {
    const char* line_end = memchr(p, '\n', (size_t)(end - p));
    if (!line_end) line_end = end;
    const char* colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon) {
      const char* name = p;
      while (name < colon && is_space(*name)) ++name;
      const char* name_end = colon;
      while (name_end > name && is_space(name_end[-1])) --name_end;
      if ((size_t)(name_end - name) == tenant_size && memcmp(name, tenant, tenant_size) == 0) {
        return listed(colon + 1, line_end, model, model_size);
      }
    }
    p = line_end + 1;
  }
  return -1;
}

PW_EXPORT(proxy_on_request_headers)
int proxy_on_request_headers(uint32_t context, uint32_t headers, int end_of_stream) {
  (void)context;
  (void)headers;
  (void)end_of_stream;
  char *tenant = NULL, *model = NULL;
  size_t tenant_size = 0, model_size = 0;
  if (proxy_get_property("tenant", 6, &tenant, &tenant_size) != PW_OK ||
      proxy_get_property("model", 5, &model, &model_size) != PW_OK) {
    tenant_size = model_size = 0;
  }
  int allowed = allowed_for(tenant, tenant_size, model, model_size);
  if (allowed < 0) allowed = allowed_for("*", 1, model, model_size);
  if (allowed <= 0) {
    static const char prefix[] = "{\"error\":{\"message\":\"model '";
    static const char suffix[] =
        "' is not allowed for this tenant\",\"type\":\"permission_error\",\"param\":\"model\","
        "\"code\":\"model_not_allowed\"}}";
    size_t size = sizeof prefix - 1 + model_size + sizeof suffix - 1;
    char* body = malloc(size);
    memcpy(body, prefix, sizeof prefix - 1);
    memcpy(body + sizeof prefix - 1, model, model_size);
    memcpy(body + sizeof prefix - 1 + model_size, suffix, sizeof suffix - 1);
    proxy_send_local_response(403, "model_not_allowed", 17, body, size, NULL, 0, -1);
    free(body);
  }
  free(tenant);
  free(model);
  return allowed > 0 ? PW_CONTINUE : PW_PAUSE;
}
