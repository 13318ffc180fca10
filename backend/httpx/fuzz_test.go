package httpx

import (
	"net/http"
	"testing"
)

// FuzzRetryAfter: any Retry-After value is a non-negative wait or "absent".
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "7", "1.5", "-5", "soon", "Mon, 30 Nov 2026 12:00:12 GMT", "1e308", "NaN", "+Inf", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set("Retry-After", v)
		if d, ok := RetryAfter(h, clock); ok && d < 0 {
			t.Fatalf("Retry-After %q gave a negative wait %s", v, d)
		}
	})
}
