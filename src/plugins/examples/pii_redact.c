/* PII redaction in prompts and in the answer: e-mail addresses, card numbers (13-19 digits,
 * spaces or dashes between) and phone numbers (7-12 digits, optionally with +, spaces, dashes,
 * parentheses) inside the JSON strings of the request body become [EMAIL], [CARD] and [PHONE]
 * before the model sees them, and so do they in the answer: the whole body of a non-streamed
 * one, each event of a stream. It works on the JSON text, inside strings only (a numeric "seed"
 * is left alone), and the replacements contain no quote or backslash: valid JSON stays valid.
 * Configuration (optional): "terms: Lily, Acme Corp" also redacts those words as [REDACTED];
 * in a stream, a term split across events is caught (each stream holds back the end of its
 * text that could begin a term until the next event, or its last). */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"
#include "sse_text.h"

PW_ABI_BOILERPLATE

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_local(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' ||
         c == '%' || c == '+' || c == '-';
}
static int is_domain(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '-';
}

/* Length of an e-mail address starting at s[i] (0 if none). */
static size_t email_at(const char* s, size_t n, size_t i) {
  if (i > 0 && is_local(s[i - 1])) return 0;
  size_t j = i;
  while (j < n && is_local(s[j])) ++j;
  if (j == i || j >= n || s[j] != '@') return 0;
  size_t k = j + 1, dot = 0;
  while (k < n && is_domain(s[k])) {
    if (s[k] == '.') dot = k;
    ++k;
  }
  while (k > j + 1 && s[k - 1] == '.') --k;
  return dot > j + 1 && dot + 1 < k ? k - i : 0;
}

/* Length of a run of digits with separators starting at s[i], and its digit count. */
static size_t number_at(const char* s, size_t n, size_t i, size_t* digits) {
  if (i > 0 && is_digit(s[i - 1])) return 0;
  size_t j = i, last = i;
  *digits = 0;
  if (s[j] == '+' || s[j] == '(') ++j;
  while (j < n && (is_digit(s[j]) || s[j] == ' ' || s[j] == '-' || s[j] == '(' || s[j] == ')')) {
    if (is_digit(s[j])) {
      ++*digits;
      last = j + 1;
    }
    ++j;
  }
  return *digits ? last - i : 0;
}

enum { kMaxTerms = 16, kTermBytes = 64, kStreams = 64 };
static char terms[kMaxTerms][kTermBytes];
static size_t term_sizes[kMaxTerms];
static int n_terms;

PW_EXPORT(proxy_on_configure) int proxy_on_configure(uint32_t root, size_t size) {
  (void)root;
  n_terms = 0;
  if (size == 0) return 1;
  char* config = NULL;
  size_t n = 0;
  if (proxy_get_buffer_bytes(PW_PLUGIN_CONFIGURATION, 0, size, &config, &n) != PW_OK) return 0;
  int ok = n > 6 && memcmp(config, "terms:", 6) == 0;
  for (size_t i = 6; ok && i < n;) {
    while (i < n && (config[i] == ',' || config[i] == ' ')) ++i;
    size_t start = i;
    while (i < n && config[i] != ',') ++i;
    size_t end = i;
    while (end > start && config[end - 1] == ' ') --end;
    if (end == start) continue;
    if (end - start >= kTermBytes || n_terms == kMaxTerms) ok = 0;
    if (!ok) break;
    memcpy(terms[n_terms], config + start, end - start);
    term_sizes[n_terms++] = end - start;
  }
  free(config);
  return ok;
}

static size_t term_at(const char* s, size_t n, size_t i) {
  for (int t = 0; t < n_terms; ++t) {
    if (i + term_sizes[t] <= n && memcmp(s + i, terms[t], term_sizes[t]) == 0) {
      return term_sizes[t];
    }
  }
  return 0;
}

static void put(char** out, size_t* o, size_t* capacity, const char* data, size_t size) {
  if (*o + size > *capacity) {
    *capacity = 2 * (*o + size);
    *out = realloc(*out, *capacity);
  }
  memcpy(*out + *o, data, size);
  *o += size;
}

/* Redacts inside the JSON strings of s[0, n) (`in_string`: s starts inside one). The result is
 * malloc'ed in *out, *out_size; returns whether anything changed. */
static int redact(const char* s, size_t n, int in_string, char** out, size_t* out_size) {
  size_t o = 0, capacity = n + 1;
  *out = malloc(capacity);
  int changed = 0;
  for (size_t i = 0; i < n;) {
    const char* tag = NULL;
    size_t skip = 0, digits = 0;
    if (!in_string || s[i] == '"' || s[i] == '\\') {
      /* outside strings, a quote, or an escape (copied with the character it escapes) */
      if (s[i] == '"') in_string = !in_string;
      skip = s[i] == '\\' && i + 1 < n ? 2 : 1;
    } else if ((skip = term_at(s, n, i))) {
      tag = "[REDACTED]";
    } else if ((skip = email_at(s, n, i))) {
      tag = "[EMAIL]";
    } else if ((s[i] == '+' || s[i] == '(' || is_digit(s[i])) &&
               (skip = number_at(s, n, i, &digits))) {
      if (digits >= 13 && digits <= 19)
        tag = "[CARD]";
      else if (digits >= 7 && digits <= 12)
        tag = "[PHONE]";
    }
    if (tag) {
      put(out, &o, &capacity, tag, strlen(tag));
      i += skip;
      changed = 1;
    } else {
      size_t copy = skip ? skip : 1;
      put(out, &o, &capacity, s + i, copy);
      i += copy;
    }
  }
  *out_size = o;
  return changed;
}

/* Redacts the whole buffer (a request body, a non-streamed answer). */
static void redact_buffer(int32_t type, size_t size) {
  char* body = NULL;
  size_t n = 0;
  if (size == 0 || proxy_get_buffer_bytes(type, 0, size, &body, &n) != PW_OK) return;
  char* out = NULL;
  size_t o = 0;
  if (redact(body, n, 0, &out, &o)) proxy_set_buffer_bytes(type, 0, n, out, o);
  free(out);
  free(body);
}

PW_EXPORT(proxy_on_request_body)
int proxy_on_request_body(uint32_t context, size_t size, int end_of_stream) {
  (void)context;
  if (end_of_stream) redact_buffer(PW_REQUEST_BODY, size);
  return PW_CONTINUE;
}

/* Per stream context: text held back from the last event (it may begin a term). */
static struct {
  uint32_t context;
  char held[kTermBytes];
  size_t size;
} streams[kStreams];

static int slot_of(uint32_t context) {
  int free_slot = -1;
  for (int i = 0; i < kStreams; ++i) {
    if (streams[i].context == context) return i;
    if (streams[i].context == 0 && free_slot < 0) free_slot = i;
  }
  if (free_slot >= 0) {
    streams[free_slot].context = context;
    streams[free_slot].size = 0;
  }
  return free_slot;
}

PW_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context) {
  for (int i = 0; i < kStreams; ++i)
    if (streams[i].context == context) streams[i].context = 0;
}

/* How many bytes at the end of s[0, n) could begin a term (never splitting an escape). */
static size_t term_prefix_at_end(const char* s, size_t n) {
  size_t best = 0;
  for (int t = 0; t < n_terms; ++t) {
    for (size_t k = term_sizes[t] - 1; k > best; --k) {
      if (k <= n && memcmp(s + n - k, terms[t], k) == 0) {
        best = k;
        break;
      }
    }
  }
  size_t backslashes = 0;
  while (best > 0 && backslashes < n - best && s[n - best - 1 - backslashes] == '\\') ++backslashes;
  return backslashes % 2 ? 0 : best;
}

/* One event of a stream: the held text and this event's, redacted; what could begin a term is
 * held back for the next event, unless this is the choice's last. */
static void redact_event(uint32_t context, size_t size) {
  char* event = NULL;
  size_t n = 0, begin = 0, end = 0;
  if (size == 0 || proxy_get_buffer_bytes(PW_RESPONSE_BODY, 0, size, &event, &n) != PW_OK) return;
  const int has_text = sse_text(event, n, &begin, &end);
  const int last = sse_finishing(event, n);
  int slot = n_terms > 0 && (has_text || last) ? slot_of(context) : -1;
  if (!has_text && (slot < 0 || streams[slot].size == 0)) {
    free(event);
    return redact_buffer(PW_RESPONSE_BODY, size);
  }
  if (!has_text) {
    /* A last chunk without text (a chat delta {}): the held text goes out in it. */
    const char key[] = "\"delta\":{";
    size_t at = 0;
    for (; at + sizeof key - 1 <= n; ++at)
      if (memcmp(event + at, key, sizeof key - 1) == 0) break;
    if (at + sizeof key - 1 > n) {
      free(event);
      return;
    }
    at += sizeof key - 1;
    char insert[kTermBytes + 16];
    size_t k = 0;
    memcpy(insert, "\"content\":\"", 11);
    k = 11;
    memcpy(insert + k, streams[slot].held, streams[slot].size);
    k += streams[slot].size;
    insert[k++] = '"';
    if (event[at] != '}') insert[k++] = ',';
    streams[slot].size = 0;
    proxy_set_buffer_bytes(PW_RESPONSE_BODY, at, 0, insert, k);
    free(event);
    return;
  }
  const size_t held = slot >= 0 ? streams[slot].size : 0, text = end - begin;
  char* joined = malloc(held + text + 1);
  if (held) memcpy(joined, streams[slot].held, held);
  memcpy(joined + held, event + begin, text);
  char* out = NULL;
  size_t o = 0;
  int changed = redact(joined, held + text, 1, &out, &o) || held > 0;
  size_t keep = slot >= 0 && !last ? term_prefix_at_end(out, o) : 0;
  if (slot >= 0) {
    memcpy(streams[slot].held, out + o - keep, keep);
    streams[slot].size = keep;
  }
  if (changed || keep) proxy_set_buffer_bytes(PW_RESPONSE_BODY, begin, text, out, o - keep);
  free(out);
  free(joined);
  free(event);
}

PW_EXPORT(proxy_on_response_body)
int proxy_on_response_body(uint32_t context, size_t size, int end_of_stream) {
  char* head = NULL;
  size_t n = 0;
  int sse = proxy_get_buffer_bytes(PW_RESPONSE_BODY, 0, 6, &head, &n) == PW_OK && n == 6 &&
            memcmp(head, "data: ", 6) == 0;
  free(head);
  if (sse) {
    redact_event(context, size);
  } else if (end_of_stream) {
    redact_buffer(PW_RESPONSE_BODY, size);
  }
  return PW_CONTINUE;
}
