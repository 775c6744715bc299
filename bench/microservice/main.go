// A gateway sidecar in front of ember: the model allow-list and the PII redaction of the C
// example plugins (policy.go), run in a separate process that ember's clients call instead of
// ember. bench/plugin_vs_microservice.py measures it against the same logic as in-process Wasm
// plugins (issue 16). Standard library only.
//
//	microservice -upstream http://127.0.0.1:8080 [-listen 127.0.0.1:0]
//	    [-allowlist "acme: tiny, small\n*: tiny"] [-redact ""|"terms: Lily"]
//	    [-keys DIR/tenants.toml] [-key SECRET=tenant ...]
//	    [-routes /v1/chat/completions,/v1/completions]
//
// The tenant is the one whose API key the request's bearer token is: from ember's own keys
// file (its [[keys]] blocks: tenant and the key's SHA-256) and/or -key pairs. With no keys at
// all every request is the tenant "" (ember's open mode). A request whose key is not known is
// passed on untouched: ember, the authority on keys, answers it 401.
//
// On the routes, a POST body is checked (403 with the plugin's envelope for a model the tenant
// may not use) and redacted before it goes on; the answer is redacted on the way back, a
// non-streamed body whole, a stream one SSE event at a time, each event flushed to the client
// before the next is awaited. Upstream connections are kept alive and pooled.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type keyFlags map[string]string

func (k keyFlags) String() string { return fmt.Sprint(map[string]string(k)) }
func (k keyFlags) Set(v string) error {
	key, tenant, ok := strings.Cut(v, "=")
	if !ok || key == "" {
		return fmt.Errorf("want SECRET=tenant, got %q", v)
	}
	sum := sha256.Sum256([]byte(key))
	k[hex.EncodeToString(sum[:])] = tenant
	return nil
}

// readKeysFile takes the tenant and sha256 of each [[keys]] block of ember's tenants.toml
// (docs/tenancy.md); everything else in the file is ember's business.
func readKeysFile(path string, into keyFlags) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	inKey := false
	var tenant, hash string
	flush := func() {
		if inKey && tenant != "" && hash != "" {
			into[strings.ToLower(hash)] = tenant
		}
		tenant, hash = "", ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			flush()
			inKey = line == "[[keys]]"
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !inKey || !ok {
			continue
		}
		value = strings.TrimSpace(value)
		if v, err := strconv.Unquote(value); err == nil {
			value = v
		}
		switch strings.TrimSpace(name) {
		case "tenant":
			tenant = value
		case "sha256":
			hash = value
		}
	}
	flush()
	return nil
}

type gateway struct {
	allow    allowList
	redact   redactor
	keys     keyFlags // hex SHA-256 of the key -> tenant
	routes   map[string]bool
	maxBody  int64
	upstream *httputil.ReverseProxy
}

type hookedKey struct{}

// tenant of the request: (tenant, true), or false for a key ember will refuse.
func (g *gateway) tenant(r *http.Request) (string, bool) {
	if len(g.keys) == 0 {
		return "", true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	t, ok := g.keys[hex.EncodeToString(sum[:])]
	return t, ok
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !g.routes[r.URL.Path] {
		g.upstream.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.maxBody))
	r.Body.Close()
	if err != nil {
		http.Error(w, `{"error":{"message":"request body too large or unreadable","type":"invalid_request_error"}}`,
			http.StatusRequestEntityTooLarge)
		return
	}
	hooked := false
	if tenant, known := g.tenant(r); known {
		var fields struct {
			Model string `json:"model"`
		}
		// A body that does not parse goes on as it is: ember answers it 400.
		if json.Unmarshal(body, &fields) == nil {
			hooked = true
			if !g.allow.allowed(tenant, fields.Model) {
				msg := notAllowedBody(fields.Model)
				h := w.Header()
				h.Set("Content-Type", "application/json")
				h.Set("Content-Length", strconv.Itoa(len(msg)))
				w.WriteHeader(http.StatusForbidden)
				w.Write(msg)
				return
			}
			body, _ = g.redact.redact(body, false)
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	if hooked {
		r = r.WithContext(context.WithValue(r.Context(), hookedKey{}, true))
	}
	g.upstream.ServeHTTP(w, r)
}

// redactResponse rewrites what comes back for a request the hooks ran on.
func (g *gateway) redactResponse(resp *http.Response) error {
	if resp.Request == nil || resp.Request.Context().Value(hookedKey{}) == nil {
		return nil
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body = &eventRedactor{r: &g.redact, src: resp.Body, in: bufio.NewReaderSize(resp.Body, 16<<10)}
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	body, _ = g.redact.redact(body, false)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Del("Transfer-Encoding")
	return nil
}

// eventRedactor hands the proxy one redacted SSE event per Read (an event ends with a blank
// line); the reverse proxy writes and flushes each before it reads the next.
type eventRedactor struct {
	r       *redactor
	src     io.ReadCloser
	in      *bufio.Reader
	event   []byte
	pending []byte
	err     error
}

func (e *eventRedactor) Read(p []byte) (int, error) {
	for len(e.pending) == 0 {
		if e.err != nil {
			return 0, e.err
		}
		e.event = e.event[:0]
		for {
			line, err := e.in.ReadSlice('\n')
			e.event = append(e.event, line...)
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				e.err = err // a last event without its blank line goes out as it is
				break
			}
			if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
				break
			}
		}
		if e.err == nil {
			e.pending = e.r.redactEvent(e.event)
		} else {
			e.pending = e.event
		}
	}
	n := copy(p, e.pending)
	e.pending = e.pending[n:]
	return n, nil
}

func (e *eventRedactor) Close() error { return e.src.Close() }

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	upstreamURL := flag.String("upstream", "", "ember's base URL, e.g. http://127.0.0.1:8080")
	allowConfig := flag.String("allowlist", "*: stories260K",
		`model_allowlist.c's configuration ("\n" written as \n is a line break)`)
	redactConfig := flag.String("redact", "", `pii_redact.c's configuration ("terms: a, b" or empty)`)
	keysFile := flag.String("keys", "", "ember's tenants.toml: the [[keys]] blocks map keys to tenants")
	keys := keyFlags{}
	flag.Var(keys, "key", "SECRET=tenant (repeatable)")
	routes := flag.String("routes", "/v1/chat/completions", "comma-separated paths the hooks run on")
	maxBody := flag.Int64("max-body-bytes", 8<<20, "largest request body")
	poolSize := flag.Int("pool", 64, "idle keep-alive connections to ember")
	flag.Parse()
	if *upstreamURL == "" {
		log.Fatal("-upstream is required")
	}
	target, err := url.Parse(*upstreamURL)
	if err != nil {
		log.Fatal(err)
	}
	if *keysFile != "" {
		if err := readKeysFile(*keysFile, keys); err != nil {
			log.Fatal(err)
		}
	}
	red, ok := parseRedactor(*redactConfig)
	if !ok {
		log.Fatalf("redaction configuration refused: %q", *redactConfig)
	}
	g := &gateway{
		allow:   parseAllowList(strings.ReplaceAll(*allowConfig, `\n`, "\n")),
		redact:  red,
		keys:    keys,
		routes:  map[string]bool{},
		maxBody: *maxBody,
	}
	for _, r := range strings.Split(*routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			g.routes[r] = true
		}
	}
	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          *poolSize,
		MaxIdleConnsPerHost:   *poolSize,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 0, // a long generation's headers come when the model starts
	}
	g.upstream = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport:      transport,
		FlushInterval:  -1, // every write goes to the client at once (a stream's events)
		ModifyResponse: g.redactResponse,
		ErrorLog:       log.New(os.Stderr, "microservice: ", log.LstdFlags),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// The line bench/ember_server.py looks for, as ember writes it.
	fmt.Fprintf(os.Stderr, "microservice listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
