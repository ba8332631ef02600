package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestREADMEWalkThrough runs the README's walk-through exactly as written, in
// bash, against a mock OpenAI-compatible model: the text a newcomer pastes
// must work from top to bottom. It builds and starts the server with
// `go run`, as the text does.
func TestREADMEWalkThrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the walk-through needs %s on the PATH (.ci/run installs curl and jq): %v", tool, err)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	script := walkThrough(t, string(readme))

	var calls int
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer sk-walkthrough" {
			http.Error(w, `{"error":{"message":"unexpected request `+r.URL.Path+`"}}`, http.StatusNotFound)
			return
		}
		calls++
		var in struct {
			Model string `json:"model"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"` + in.Model + `",` +
			`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, nice to meet!"},"finish_reason":"stop"}],` +
			`"usage":{"prompt_tokens":14,"completion_tokens":7,"total_tokens":21}}`))
	}))
	defer model.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	root, _ := filepath.Abs("../..")
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // a cold build on a busy 2-core machine
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script+"\nkill $SERVER\nwait $SERVER || true\n")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "TG=http://"+addr, "TENANTGATE_ADDR="+addr, "TENANTGATE_DATA_DIR="+dataDir,
		"OPENAI_BASE_URL="+model.URL+"/v1", "OPENAI_API_KEY=sk-walkthrough", "MODEL=gpt-4o-mini")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // whatever the script starts goes with it
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	t.Logf("the walk-through printed:\n%s", out.String())
	if err != nil {
		serverLog, _ := os.ReadFile(filepath.Join(dataDir, "server.log"))
		t.Fatalf("the walk-through failed: %v\nthe server's log:\n%s", err, serverLog)
	}
	for _, want := range []string{
		"tenantgate is up",
		`"email":"bob@acme.test"`,
		`"code":"TENANT_NOT_FOUND"`,
		`"slug":"acme","status":"trial","plan":"pro"`,
		"Hello there, nice to meet!",
		`"promptTokens":14,"completionTokens":7`,
		`"balance":"4.99999`,
		`"TENANT_SUSPENDED"`,
		`"slug":"acme","status":"active"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the walk-through's output lacks %s", want)
		}
	}
	if calls != 1 {
		t.Errorf("the model was called %d times, want 1", calls)
	}
}

// walkThrough returns the first sh block of the README's walk-through section.
func walkThrough(t *testing.T, readme string) string {
	_, section, ok := strings.Cut(readme, "\n## A walk-through with curl\n")
	if !ok {
		t.Fatal("the README has no section '## A walk-through with curl'")
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal("the walk-through has no ```sh block")
	}
	block, _, ok = strings.Cut(block, "\n```")
	if !ok {
		t.Fatal("the walk-through's sh block is not closed")
	}
	return block
}
