/* PII redaction in prompts: e-mail addresses, card numbers (13-19 digits, spaces or dashes
 * between) and phone numbers (7-12 digits, optionally with +, spaces, dashes, parentheses)
 * inside the JSON strings of the request body become [EMAIL], [CARD] and [PHONE] before the
 * model sees them. It works on the JSON text, inside strings only (a numeric "seed" is left
 * alone), and the replacements contain no quote or backslash: valid JSON stays valid. */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

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

PW_EXPORT(proxy_on_request_body)
int proxy_on_request_body(uint32_t context, size_t size, int end_of_stream) {
  (void)context;
  if (!end_of_stream || size == 0) return PW_CONTINUE;
  char* body = NULL;
  size_t n = 0;
  if (proxy_get_buffer_bytes(PW_REQUEST_BODY, 0, size, &body, &n) != PW_OK) return PW_CONTINUE;
  char* out = malloc(n + 1);
  size_t o = 0, capacity = n + 1;
  int changed = 0, in_string = 0;
  for (size_t i = 0; i < n;) {
    const char* tag = NULL;
    size_t skip = 0, digits = 0;
    if (!in_string || body[i] == '"' || body[i] == '\\') {
      /* outside strings, a quote, or an escape (copied with the character it escapes) */
      if (body[i] == '"') in_string = !in_string;
      skip = body[i] == '\\' && i + 1 < n ? 2 : 1;
    } else if ((skip = email_at(body, n, i))) {
      tag = "[EMAIL]";
    } else if ((body[i] == '+' || body[i] == '(' || is_digit(body[i])) &&
               (skip = number_at(body, n, i, &digits))) {
      if (digits >= 13 && digits <= 19)
        tag = "[CARD]";
      else if (digits >= 7 && digits <= 12)
        tag = "[PHONE]";
    }
    if (tag) {
      size_t t = strlen(tag);
      if (o + t > capacity) {
        capacity = 2 * (o + t);
        out = realloc(out, capacity);
      }
      memcpy(out + o, tag, t);
      o += t;
      i += skip;
      changed = 1;
    } else {
      size_t copy = skip ? skip : 1;
      if (o + copy > capacity) {
        capacity = 2 * (o + copy);
        out = realloc(out, capacity);
      }
      memcpy(out + o, body + i, copy);
      o += copy;
      i += copy;
    }
  }
  if (changed) proxy_set_buffer_bytes(PW_REQUEST_BODY, 0, n, out, o);
  free(out);
  free(body);
  return PW_CONTINUE;
}
