/* Guardrail on streamed output: when a banned phrase appears in the model's text, the event that
 * completes it is cut just before the phrase and the stream is ended cleanly
 * (proxy_close_stream: ember sends a final chunk with finish_reason "content_filter", the usage,
 * data: [DONE], and stops the model). A phrase split across events is caught: each stream keeps
 * the last characters it saw. Configuration: the phrases, comma-separated ("park, dragon").
 * Non-streamed answers pass unchanged (this example guards streams). */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"
#include "sse_text.h"

PW_ABI_BOILERPLATE

enum { kMaxPhrases = 16, kPhraseBytes = 64, kStreams = 64 };
static char phrases[kMaxPhrases][kPhraseBytes];
static size_t phrase_sizes[kMaxPhrases];
static int n_phrases;

/* Per stream context: the tail of its text so far (up to the longest phrase - 1 bytes). */
static struct {
  uint32_t context;
  char tail[kPhraseBytes];
  size_t size;
} streams[kStreams];

PW_EXPORT(proxy_on_configure) int proxy_on_configure(uint32_t root, size_t size) {
  (void)root;
  n_phrases = 0;
  char* config = NULL;
  size_t n = 0;
  if (size == 0) return 0; /* no phrase: a guardrail that guards nothing is a mistake */
  if (proxy_get_buffer_bytes(PW_PLUGIN_CONFIGURATION, 0, size, &config, &n) != PW_OK) return 0;
  for (size_t i = 0; i < n && n_phrases < kMaxPhrases;) {
    while (i < n && (config[i] == ',' || config[i] == ' ' || config[i] == '\n')) ++i;
    size_t start = i;
    while (i < n && config[i] != ',' && config[i] != '\n') ++i;
    size_t end = i;
    while (end > start && config[end - 1] == ' ') --end;
    if (end == start) continue;
    if (end - start >= kPhraseBytes) return 0; /* refused: too long a phrase */
    memcpy(phrases[n_phrases], config + start, end - start);
    phrase_sizes[n_phrases++] = end - start;
  }
  free(config);
  return n_phrases > 0;
}

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

/* The first banned phrase in s[0, n): its offset, or -1. */
static long find_phrase(const char* s, size_t n) {
  long best = -1;
  for (int p = 0; p < n_phrases; ++p) {
    for (size_t i = 0; i + phrase_sizes[p] <= n; ++i) {
      if (memcmp(s + i, phrases[p], phrase_sizes[p]) == 0) {
        if (best < 0 || (long)i < best) best = (long)i;
        break;
      }
    }
  }
  return best;
}

PW_EXPORT(proxy_on_response_body)
int proxy_on_response_body(uint32_t context, size_t size, int end_of_stream) {
  (void)end_of_stream;
  char* event = NULL;
  size_t n = 0, begin, end;
  if (size == 0 || proxy_get_buffer_bytes(PW_RESPONSE_BODY, 0, size, &event, &n) != PW_OK)
    return PW_CONTINUE;
  int slot = sse_text(event, n, &begin, &end) ? slot_of(context) : -1;
  if (slot < 0) {
    free(event);
    return PW_CONTINUE;
  }
  /* The window: the stream's tail, then this event's text. */
  const size_t tail = streams[slot].size, text = end - begin;
  char* window = malloc(tail + text + 1);
  memcpy(window, streams[slot].tail, tail);
  memcpy(window + tail, event + begin, text);
  long at = find_phrase(window, tail + text);
  if (at >= 0) {
    /* Cut this event's text where the phrase starts (its part in earlier events is out). */
    size_t keep = (size_t)at > tail ? (size_t)at - tail : 0;
    proxy_set_buffer_bytes(PW_RESPONSE_BODY, begin + keep, text - keep, "", 0);
    proxy_close_stream(1);
    static const char message[] = "banned phrase in the output: stream ended";
    proxy_log(PW_LOG_WARN, message, sizeof message - 1);
  } else {
    size_t longest = 0;
    for (int p = 0; p < n_phrases; ++p)
      if (phrase_sizes[p] > longest) longest = phrase_sizes[p];
    size_t total = tail + text, kept = total < longest - 1 ? total : longest - 1;
    memcpy(streams[slot].tail, window + total - kept, kept);
    streams[slot].size = kept;
  }
  free(window);
  free(event);
  return PW_CONTINUE;
}
