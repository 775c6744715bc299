package main

import (
	"encoding/json"
	"testing"
)

func TestRedactLikeThePlugin(t *testing.T) {
	r, _ := parseRedactor("")
	cases := map[string]string{
		`{"content":"mail jane.doe@example.com now"}`: `{"content":"mail [EMAIL] now"}`,
		`{"content":"call +1 (555) 123-4567"}`:        `{"content":"call [PHONE]"}`,
		`{"content":"card 4111 1111 1111 1111."}`:     `{"content":"card [CARD]."}`,
		`{"seed":12345678,"content":"id 123"}`:        `{"seed":12345678,"content":"id 123"}`,
		`{"content":"esc \"a@b.co\" x"}`:              `{"content":"esc \"[EMAIL]\" x"}`,
		`{"content":"not@mail"}`:                      `{"content":"not@mail"}`,
	}
	for in, want := range cases {
		if got, _ := r.redact([]byte(in), false); string(got) != want {
			t.Errorf("redact(%s) = %s, want %s", in, got, want)
		}
	}
	ev := "data: {\"id\":\"x1234567\",\"choices\":[{\"delta\":{\"content\":\"a@b.co\"}}]}\n\n"
	want := "data: {\"id\":\"x1234567\",\"choices\":[{\"delta\":{\"content\":\"[EMAIL]\"}}]}\n\n"
	if got := r.redactEvent([]byte(ev)); string(got) != want {
		t.Errorf("redactEvent = %q", got)
	}
	terms, ok := parseRedactor("terms: Lily, Acme Corp")
	if !ok {
		t.Fatal("terms refused")
	}
	if got, _ := terms.redact([]byte(`"Lily met Acme Corp"`), false); string(got) != `"[REDACTED] met [REDACTED]"` {
		t.Errorf("terms: %s", got)
	}
}

func TestAllowList(t *testing.T) {
	a := parseAllowList("acme: tiny, small\n*: tiny")
	for _, c := range []struct {
		tenant, model string
		want          bool
	}{{"acme", "small", true}, {"acme", "big", false}, {"other", "tiny", true}, {"other", "small", false}} {
		if a.allowed(c.tenant, c.model) != c.want {
			t.Errorf("%s/%s: want %v", c.tenant, c.model, c.want)
		}
	}
	if parseAllowList("acme: tiny").allowed("other", "tiny") {
		t.Error("no line for the tenant and no '*' line allows nothing")
	}
}

// The sidecar's own work on the benchmark's request (bench/plugin_vs_microservice.py): find
// the model, check the list, redact the body; what the Wasm chain does in ember.
func BenchmarkRequestPolicy(b *testing.B) {
	body := []byte(`{"model": "stories260K", "messages": [{"role": "user", "content": "Please ` +
		`write a short note to jane.doe@example.com and call me on +1 555 010 4477 about the ` +
		`kittens."}], "max_tokens": 4, "temperature": 0, "seed": 1}`)
	a := parseAllowList("acme: stories260K\n*: tiny")
	r, _ := parseRedactor("")
	b.ReportAllocs()
	for b.Loop() {
		var fields struct {
			Model string `json:"model"`
		}
		if json.Unmarshal(body, &fields) != nil || !a.allowed("acme", fields.Model) {
			b.Fatal("refused")
		}
		if _, changed := r.redact(body, false); !changed {
			b.Fatal("nothing redacted")
		}
	}
}
