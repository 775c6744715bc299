/* The text of one streamed OpenAI event, for the examples' response hooks: where the JSON string
 * of "text" (completions) or "content" (a chat delta) is in "data: {...}\n\n". Raw JSON: escapes
 * stay escaped, so a plugin compares and rewrites JSON text (a phrase with no quote, backslash
 * or control character reads the same). */
#ifndef EMBER_SSE_TEXT_H
#define EMBER_SSE_TEXT_H

#include <stddef.h>
#include <string.h>

/* Finds `"key":"` in s[0, n) and the end of its string: *begin at its first character, *end at
 * its closing quote. 0 when absent. */
static inline int json_string_field(const char* s, size_t n, const char* key, size_t* begin,
                                    size_t* end) {
  const size_t k = strlen(key);
  for (size_t i = 0; i + k <= n; ++i) {
    if (memcmp(s + i, key, k) != 0) continue;
    size_t j = i + k;
    while (j < n && s[j] != '"') {
      if (s[j] == '\\') ++j;
      ++j;
    }
    if (j >= n) return 0;
    *begin = i + k;
    *end = j;
    return 1;
  }
  return 0;
}

/* The event's text: 1 and its span, or 0 (a role chunk, the usage chunk, [DONE]). */
static inline int sse_text(const char* s, size_t n, size_t* begin, size_t* end) {
  if (n < 6 || memcmp(s, "data: ", 6) != 0) return 0;
  return json_string_field(s, n, "\"text\":\"", begin, end) ||
         json_string_field(s, n, "\"content\":\"", begin, end);
}

/* Whether the event is a choice's last (its finish_reason is set). */
static inline int sse_finishing(const char* s, size_t n) {
  size_t b, e;
  return json_string_field(s, n, "\"finish_reason\":\"", &b, &e);
}

#endif
