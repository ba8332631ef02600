package anthropic

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

const testCreated = 1700000000

func TestMain(m *testing.M) {
	now = func() time.Time { return time.Unix(testCreated, 0) }
	os.Exit(m.Run())
}

// parseJSON decodes s into generic JSON values, for comparing documents.
func parseJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON %q: %v", s, err)
	}
	return v
}

// chatCall is the gateway's Call for a client chat request body.
func chatCall(t *testing.T, body string) *wire.Call {
	t.Helper()
	var r wire.ChatRequest
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("bad chat request %q: %v", body, err)
	}
	return &wire.Call{Op: wire.OpChat, Model: r.Model, Body: []byte(body), Chat: &r, Stream: r.Stream}
}

// requestBody reads req's body as generic JSON.
func requestBody(t *testing.T, req *http.Request) any {
	t.Helper()
	b, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatalf("reading the request body: %v", err)
	}
	return parseJSON(t, string(b))
}

func testTarget(baseURL string) *wire.Target {
	return &wire.Target{BaseURL: baseURL, Key: "sk-ant-test", Model: "claude-sonnet-4-5"}
}
