package snyk

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzAPIError: whatever body and headers an error answer carries, the
// parsed error is bounded, valid UTF-8, never echoes the configured
// credential, and classifies without panicking.
func FuzzAPIError(f *testing.F) {
	const secret = "5f2c1e4a-9b7d-4c3e-8a1f-0d9e8c7b6a51"
	seeds := []struct {
		status int
		kind   uint8
		body   string
	}{
		{404, 0, `{"code":404,"message":"Org x was not found or you may not have the correct permissions to access the org.","error":"…"}`},
		{409, 0, `{"code":409,"message":"Integration 1 is not brokered.","error":"Conflict"}`},
		{400, 0, `{"message":"Error calling Snyk api (reference: 39db46b1)","errorRef":"39db46b1-ad57-47e6-a87d-e34f6968030b"}`},
		{400, 1, `{"errors":[{"id":"1","detail":"Unknown query parameter 'unknown'","status":"400"}]}`},
		{401, 2, `{"error":"invalid_client","error_description":"bad client"}`},
		{422, 0, `{"message":{"nested":true},"error":["x"]}`},
		{500, 0, `<html>proxy error ` + secret + `</html>`},
		{400, 0, `{"message":"echo: token ` + secret + `"}`},
		{418, 0, "\xff\xfe\x00"},
		{400, 0, `{"message":"` + strings.Repeat("é", 400) + `"}`},
	}
	for _, s := range seeds {
		f.Add(s.status, s.kind, []byte(s.body), "ref-"+s.body[:1])
	}
	c := &Client{secrets: []string{secret}, basePath: ""}
	f.Fuzz(func(t *testing.T, status int, kind uint8, body []byte, ref string) {
		rq := request{method: http.MethodPost, path: "/v1/org/x/integrations/y/authentication/provision-token", kind: errorKind(int(kind) % 3)}
		hdr := http.Header{}
		hdr.Set("x-error-reference", ref)
		e := c.apiError(rq, status, hdr, body)
		if strings.Contains(e.Message, secret) || strings.Contains(e.Error(), secret) {
			t.Fatal("the error echoes the credential")
		}
		if !utf8.ValidString(e.Message) && utf8.Valid(body) {
			t.Fatalf("message is not valid UTF-8: %q", e.Message)
		}
		if len(e.Message) > maxMessage+len("…") && e.Message != http.StatusText(status) {
			t.Fatalf("message of %d bytes is not bounded", len(e.Message))
		}
		if e.Message == "" {
			t.Fatal("empty message")
		}
		for _, op := range []Operation{OpProvision, OpSwitch, OpEnable, OpLookup} {
			_ = Classify(op, e)
		}
		_ = Answer(e)
	})
}

// FuzzClassify: the classifier reads any words under any status without
// panicking, never reads a non-4xx as a refusal, and never reads a 4xx as
// "not a refusal" (except 429, which the retry loop owns).
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"Integration 1 is not brokered.", "A provisional token already exists", "No provisional token exists", "Bad Request", ""} {
		f.Add(409, uint8(0), s)
	}
	f.Fuzz(func(t *testing.T, status int, op uint8, msg string) {
		ops := []Operation{OpProvision, OpSwitch, OpEnable, OpLookup}
		r := Classify(ops[int(op)%len(ops)], &APIError{Status: status, Message: msg})
		isRefusal := status >= 400 && status <= 499 && status != http.StatusTooManyRequests
		if isRefusal != (r != NotARefusal) {
			t.Fatalf("status %d classified as %q", status, r)
		}
	})
}
