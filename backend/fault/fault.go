// Package fault is the fault-injection and call-counting middleware shared by
// the fake Snyk API and the fake SCMs. A test arms a fault on a named route
// (429 with or without Retry-After, a 5xx, latency, a hang past the client's
// timeout) and later asserts how many upstream calls each route received.
package fault

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"time"
)

// Fault describes what to do to the next requests of a route.
type Fault struct {
	// Status, when non-zero, is returned instead of the real response.
	Status int
	// RetryAfter, when non-empty, is sent as the Retry-After header.
	RetryAfter string
	// Body is the response body for Status (a JSON error body by default).
	Body string
	// ContentType of Body; application/json when empty.
	ContentType string
	// Delay is slept before answering (or before the real handler runs when
	// Status is zero). A delay longer than the client's timeout is a timeout.
	Delay time.Duration
	// Times is how many requests the fault applies to; 0 means until cleared.
	Times int
	// Reset drops the connection with a TCP reset instead of answering
	// (after Delay, and after the handler when AfterHandler is set).
	Reset bool
	// AfterHandler applies Status after the real handler ran, so the
	// upstream's state changes but the client sees a failure: the
	// "crashed/timed out after the call" case. The real response is
	// discarded. With Delay, the handler runs first and the answer comes
	// after the delay (a timeout on a call the upstream applied); with
	// Delay and no Status, that late answer is the real one.
	AfterHandler bool
}

// AnyRoute matches every route.
const AnyRoute = "*"

// Injector counts calls per route and applies armed faults.
type Injector struct {
	mu      sync.Mutex
	faults  map[string][]*Fault
	calls   map[string]int
	latency time.Duration
	sleep   func(time.Duration)
}

// NewInjector returns an empty injector.
func NewInjector() *Injector {
	return &Injector{faults: map[string][]*Fault{}, calls: map[string]int{}, sleep: time.Sleep}
}

// Inject arms f on route (or AnyRoute). Faults on a route apply in order.
func (in *Injector) Inject(route string, f Fault) {
	in.mu.Lock()
	defer in.mu.Unlock()
	fc := f
	in.faults[route] = append(in.faults[route], &fc)
}

// Clear removes every armed fault and the global latency.
func (in *Injector) Clear() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.faults = map[string][]*Fault{}
	in.latency = 0
}

// SetLatency delays every response by d.
func (in *Injector) SetLatency(d time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.latency = d
}

// Calls returns how many requests route received, faulted ones included.
func (in *Injector) Calls(route string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.calls[route]
}

// TotalCalls returns the number of requests on all routes.
func (in *Injector) TotalCalls() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for _, c := range in.calls {
		n += c
	}
	return n
}

// CallCounts returns a copy of the per-route counters.
func (in *Injector) CallCounts() map[string]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string]int, len(in.calls))
	for k, v := range in.calls {
		out[k] = v
	}
	return out
}

// String lists the counters, for test failure messages.
func (in *Injector) String() string {
	counts := in.CallCounts()
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf("%s=%d ", k, counts[k])
	}
	return s
}

// ResetCalls zeroes the counters.
func (in *Injector) ResetCalls() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.calls = map[string]int{}
}

// take counts a call and pops the fault to apply to it, if any.
func (in *Injector) take(route string) (*Fault, time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.calls[route]++
	for _, key := range []string{route, AnyRoute} {
		list := in.faults[key]
		if len(list) == 0 {
			continue
		}
		f := list[0]
		cp := *f
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				in.faults[key] = list[1:]
			}
		}
		return &cp, in.latency
	}
	return nil, in.latency
}

// Wrap runs next for route unless a fault is armed for it.
func (in *Injector) Wrap(route string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f, latency := in.take(route)
		if latency > 0 {
			in.sleep(latency)
		}
		if f == nil {
			next(w, r)
			return
		}
		applied := false
		var late *httptest.ResponseRecorder
		if f.AfterHandler && f.Delay > 0 {
			// The upstream applies the request, then its answer is late: with
			// a delay past the client's timeout (or a client that stops
			// waiting), the client loses the answer to a call that happened.
			// With no Status, the real answer is sent after the delay.
			late = httptest.NewRecorder()
			next(late, r)
			applied = true
		}
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				// The client gave up: drop the connection. Returning would
				// make net/http send an implicit 200 that a racing client
				// could read as success.
				panic(http.ErrAbortHandler)
			}
		}
		if f.Reset {
			if f.AfterHandler && !applied {
				next(discardWriter{header: http.Header{}}, r)
			}
			resetConnection(w)
			return
		}
		if f.Status == 0 {
			if !applied {
				next(w, r)
				return
			}
			for k, v := range late.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(late.Code)
			_, _ = w.Write(late.Body.Bytes())
			return
		}
		if f.AfterHandler && !applied {
			next(discardWriter{header: http.Header{}}, r)
		}
		writeFault(w, f)
	}
}

// resetConnection closes the request's connection with a TCP RST: the
// client sees "connection reset by peer", not an HTTP answer.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

func writeFault(w http.ResponseWriter, f *Fault) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	ct := f.ContentType
	if ct == "" {
		ct = "application/json; charset=utf-8"
	}
	body := f.Body
	if body == "" {
		msg := http.StatusText(f.Status)
		if f.Status == http.StatusTooManyRequests {
			msg = "Too many requests"
		}
		body = fmt.Sprintf(`{"code":%d,"message":%q,"error":%q}`, f.Status, msg, msg)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(f.Status)
	_, _ = w.Write([]byte(body))
}

type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}
