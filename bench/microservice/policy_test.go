package main

import "testing"

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
