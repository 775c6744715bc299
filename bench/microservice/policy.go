package main

// The gateway logic of the C example plugins (src/plugins/examples/model_allowlist.c and
// pii_redact.c), written again in Go for the sidecar, so that the benchmark compares the same
// work done in two places. Same configuration strings, same 403 envelope, same redaction rules.

import (
	"bytes"
	"strings"
)

// allowList is model_allowlist.c's configuration: one line per tenant, "*" for every tenant
// not named, a comma-separated list of models after the colon.
type allowList struct {
	tenants map[string][]string
}

func parseAllowList(config string) allowList {
	a := allowList{tenants: map[string][]string{}}
	for _, line := range strings.Split(config, "\n") {
		name, list, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = strings.Trim(name, " \t\r")
		if _, seen := a.tenants[name]; seen {
			continue // the C scanner stops at a tenant's first line
		}
		var models []string
		for _, m := range strings.Split(list, ",") {
			if m = strings.Trim(m, " \t\r"); m != "" {
				models = append(models, m)
			}
		}
		a.tenants[name] = models
	}
	return a
}

// allowed: the tenant's own line, else "*"'s; no line for either allows nothing.
func (a allowList) allowed(tenant, model string) bool {
	models, ok := a.tenants[tenant]
	if !ok {
		if models, ok = a.tenants["*"]; !ok {
			return false
		}
	}
	for _, m := range models {
		if m == model {
			return true
		}
	}
	return false
}

// notAllowedBody is the plugin's 403 body, byte for byte.
func notAllowedBody(model string) []byte {
	return []byte(`{"error":{"message":"model '` + model +
		`' is not allowed for this tenant","type":"permission_error","param":"model",` +
		`"code":"model_not_allowed"}}`)
}

// redactor is pii_redact.c: e-mails, card numbers (13-19 digits) and phone numbers (7-12
// digits) inside JSON strings become [EMAIL], [CARD], [PHONE]; configured terms [REDACTED].
type redactor struct {
	terms [][]byte
}

// parseRedactor reads "terms: a, b" (or nothing); ok false for a configuration the plugin
// would refuse.
func parseRedactor(config string) (redactor, bool) {
	var r redactor
	if config == "" {
		return r, true
	}
	rest, ok := strings.CutPrefix(config, "terms:")
	if !ok {
		return r, false
	}
	for _, t := range strings.Split(rest, ",") {
		t = strings.Trim(t, " ")
		if t == "" {
			continue
		}
		if len(t) >= 64 || len(r.terms) == 16 {
			return r, false
		}
		r.terms = append(r.terms, []byte(t))
	}
	return r, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || isDigit(c)
}
func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}
func isDomain(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }

// emailAt: the length of an e-mail address starting at s[i], 0 if none.
func emailAt(s []byte, i int) int {
	n := len(s)
	if i > 0 && isLocal(s[i-1]) {
		return 0
	}
	j := i
	for j < n && isLocal(s[j]) {
		j++
	}
	if j == i || j >= n || s[j] != '@' {
		return 0
	}
	k, dot := j+1, 0
	for k < n && isDomain(s[k]) {
		if s[k] == '.' {
			dot = k
		}
		k++
	}
	for k > j+1 && s[k-1] == '.' {
		k--
	}
	if dot > j+1 && dot+1 < k {
		return k - i
	}
	return 0
}

// numberAt: the length of a run of digits and separators starting at s[i], and its digits.
func numberAt(s []byte, i int) (int, int) {
	n := len(s)
	if i > 0 && isDigit(s[i-1]) {
		return 0, 0
	}
	j, last, digits := i, i, 0
	if s[j] == '+' || s[j] == '(' {
		j++
	}
	for j < n && (isDigit(s[j]) || s[j] == ' ' || s[j] == '-' || s[j] == '(' || s[j] == ')') {
		if isDigit(s[j]) {
			digits++
			last = j + 1
		}
		j++
	}
	if digits == 0 {
		return 0, 0
	}
	return last - i, digits
}

func (r *redactor) termAt(s []byte, i int) int {
	for _, t := range r.terms {
		if bytes.HasPrefix(s[i:], t) {
			return len(t)
		}
	}
	return 0
}

// redact works inside the JSON strings of s (inString: s starts inside one). It returns s
// itself when nothing matched (no copy), else a new slice.
func (r *redactor) redact(s []byte, inString bool) ([]byte, bool) {
	var out []byte // nil until the first match: most bodies pass without a copy
	copied := 0    // s[:copied] is in out already
	for i := 0; i < len(s); {
		c := s[i]
		if !inString || c == '"' || c == '\\' {
			if c == '"' {
				inString = !inString
			}
			if c == '\\' && i+1 < len(s) {
				i += 2
			} else {
				i++
			}
			continue
		}
		var tag string
		skip := 0
		if skip = r.termAt(s, i); skip > 0 {
			tag = "[REDACTED]"
		} else if skip = emailAt(s, i); skip > 0 {
			tag = "[EMAIL]"
		} else if c == '+' || c == '(' || isDigit(c) {
			var digits int
			if skip, digits = numberAt(s, i); skip > 0 {
				if digits >= 13 && digits <= 19 {
					tag = "[CARD]"
				} else if digits >= 7 && digits <= 12 {
					tag = "[PHONE]"
				}
			}
		}
		if tag == "" {
			if skip == 0 {
				skip = 1
			}
			i += skip
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(s)+16)
		}
		out = append(out, s[copied:i]...)
		out = append(out, tag...)
		i += skip
		copied = i
	}
	if out == nil {
		return s, false
	}
	return append(out, s[copied:]...), true
}

// jsonStringField: where the string value after key ("\"text\":\"") is, as sse_text.h finds it.
func jsonStringField(s []byte, key string) (int, int, bool) {
	at := bytes.Index(s, []byte(key))
	if at < 0 {
		return 0, 0, false
	}
	j := at + len(key)
	for j < len(s) && s[j] != '"' {
		if s[j] == '\\' {
			j++
		}
		j++
	}
	if j >= len(s) {
		return 0, 0, false
	}
	return at + len(key), j, true
}

// redactEvent is pii_redact.c's per-event hook without terms held back across events: an
// event's text field is redacted where it has one, else the whole event's strings.
func (r *redactor) redactEvent(event []byte) []byte {
	if !bytes.HasPrefix(event, []byte("data: ")) {
		return event
	}
	begin, end, ok := jsonStringField(event, `"text":"`)
	if !ok {
		begin, end, ok = jsonStringField(event, `"content":"`)
	}
	if !ok {
		out, _ := r.redact(event, false)
		return out
	}
	text, changed := r.redact(event[begin:end], true)
	if !changed {
		return event
	}
	out := make([]byte, 0, len(event)-(end-begin)+len(text))
	out = append(out, event[:begin]...)
	out = append(out, text...)
	return append(out, event[end:]...)
}
