package openai

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

func TestNewRequest(t *testing.T) {
	body := []byte(`{"model":"alias","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":2},"stream":true,"stream_options":{"include_usage":false}}`)
	for _, tc := range []struct {
		name          string
		p             *Provider
		t             wire.Target
		op            wire.Op
		stream        bool
		url, authName string
		authValue     string
	}{
		{"openai default base", New(OpenAI), wire.Target{Key: "sk-1", Model: "gpt-4o"}, wire.OpChat, true,
			"https://api.openai.com/v1/chat/completions", "Authorization", "Bearer sk-1"},
		{"azure", New(Azure), wire.Target{BaseURL: "https://r.openai.azure.com/", Key: "az", Model: "my deploy"}, wire.OpEmbedding, false,
			"https://r.openai.azure.com/openai/deployments/my%20deploy/embeddings?api-version=" + DefaultAzureAPIVersion, "api-key", "az"},
		{"compatible without key", New(Compatible), wire.Target{BaseURL: "http://vllm:8000/v1", Model: "llama"}, wire.OpCompletion, false,
			"http://vllm:8000/v1/completions", "Authorization", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.t.Headers = map[string]string{"X-Org": "o1"}
			req, err := tc.p.NewRequest(context.Background(), &tc.t, &wire.Call{Op: tc.op, Body: body, Stream: tc.stream})
			if err != nil {
				t.Fatal(err)
			}
			if req.URL.String() != tc.url || req.Header.Get(tc.authName) != tc.authValue || req.Header.Get("X-Org") != "o1" {
				t.Errorf("got %s %s=%q X-Org=%q", req.URL, tc.authName, req.Header.Get(tc.authName), req.Header.Get("X-Org"))
			}
			raw, _ := io.ReadAll(req.Body)
			var got map[string]any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if got["model"] != tc.t.Model || got["logit_bias"] == nil {
				t.Errorf("forwarded body: %s", raw)
			}
			opts, _ := got["stream_options"].(map[string]any)
			if tc.stream && opts["include_usage"] != true {
				t.Errorf("a stream must ask for usage: %s", raw)
			}
		})
	}
}

func TestStreamMarksUsageChunk(t *testing.T) {
	in := "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n" +
		": keep-alive\n\n" +
		"data: {\"id\":\"1\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1,\"total_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n" +
		"data: [DONE]\n\n" +
		"data: {\"after\":\"done is ignored\"}\n\n"
	type got struct {
		Chunk string
		Only  bool
	}
	var chunks []got
	u, ok, err := New(OpenAI).Stream(nil, nil, strings.NewReader(in), func(c []byte, only bool) error {
		chunks = append(chunks, got{string(c), only})
		return nil
	})
	if err != nil || !ok {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	if diff := cmp.Diff(wire.Usage{PromptTokens: 4, CachedTokens: 2, CompletionTokens: 1}, u); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
	if len(chunks) != 2 || chunks[0].Only || !chunks[1].Only {
		t.Errorf("chunks: %+v", chunks)
	}
	// A mid-stream error and emit's error stop the stream.
	if _, _, err := New(OpenAI).Stream(nil, nil, strings.NewReader("data: {\"error\":{\"message\":\"overloaded\"}}\n\n"), func([]byte, bool) error { return nil }); err == nil || !strings.Contains(err.Error(), "overloaded") {
		t.Errorf("mid-stream error: %v", err)
	}
	stop := errors.New("client gone")
	if _, _, err := New(OpenAI).Stream(nil, nil, strings.NewReader(in), func([]byte, bool) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("emit error: %v", err)
	}
}

func TestDecodeAndErrors(t *testing.T) {
	res, err := New(OpenAI).Decode(nil, nil, []byte(`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`))
	if err != nil || !res.HasUsage || res.Usage.PromptTokens != 3 || res.Usage.CompletionTokens != 2 {
		t.Errorf("decode: %+v %v", res, err)
	}
	if res, _ := New(Compatible).Decode(nil, nil, []byte(`{"choices":[]}`)); res.HasUsage {
		t.Error("an answer without usage claims usage")
	}
	if _, err := New(OpenAI).Decode(nil, nil, []byte(`not json`)); err == nil {
		t.Error("invalid JSON decoded")
	}
	for body, want := range map[string]string{
		`{"error":{"message":"bad key","type":"invalid_request_error"}}`: "bad key",
		`{"error":"model not loaded"}`:                                   "model not loaded",
		`<html>502</html>`:                                               "",
	} {
		if got := New(OpenAI).ErrorMessage([]byte(body)); got != want {
			t.Errorf("ErrorMessage(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestHasObject(t *testing.T) {
	for data, want := range map[string]bool{
		`{"usage":null}`: false, `{"usage": {"prompt_tokens":1}}`: true, `{"usage" :{}}`: true, `{"a":"usage"}`: false,
		`{"x":{"usage":null},"usage":{}}`: true, `{}`: false,
	} {
		if got := hasObject([]byte(data), `"usage"`); got != want {
			t.Errorf("hasObject(%s) = %v, want %v", data, got, want)
		}
	}
}

// The gateway's output cap (for a call whose client set none) goes upstream
// in the field the upstream reads; a client's own cap is left as sent.
func TestNewRequestOutputCap(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name      string
		p         *Provider
		op        wire.Op
		body      string
		outputCap int64
		want      map[string]any // max_tokens and max_completion_tokens as sent (nil: absent)
	}{
		{"openai chat", New(OpenAI), wire.OpChat, `{` + msgs + `}`, 4096, map[string]any{"max_tokens": nil, "max_completion_tokens": 4096.0}},
		{"azure chat", New(Azure), wire.OpChat, `{` + msgs + `,"max_tokens":null}`, 4096, map[string]any{"max_tokens": nil, "max_completion_tokens": 4096.0}},
		{"azure before 2024-09-01", New(Azure), wire.OpChat, `{` + msgs + `}`, 4096, map[string]any{"max_tokens": 4096.0, "max_completion_tokens": nil}},
		{"compatible chat", New(Compatible), wire.OpChat, `{` + msgs + `}`, 4096, map[string]any{"max_tokens": 4096.0, "max_completion_tokens": nil}},
		{"openai completion", New(OpenAI), wire.OpCompletion, `{"prompt":"hi"}`, 16, map[string]any{"max_tokens": 16.0, "max_completion_tokens": nil}},
		{"client's cap", New(OpenAI), wire.OpChat, `{` + msgs + `,"max_tokens":7}`, 0, map[string]any{"max_tokens": 7.0, "max_completion_tokens": nil}},
		{"compatible mirrors max_completion_tokens", New(Compatible), wire.OpChat, `{` + msgs + `,"max_completion_tokens":9}`, 0,
			map[string]any{"max_tokens": 9.0, "max_completion_tokens": 9.0}},
		{"embeddings", New(OpenAI), wire.OpEmbedding, `{"input":"hi"}`, 0, map[string]any{"max_tokens": nil, "max_completion_tokens": nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := &wire.Target{BaseURL: "http://up/v1", Model: "m"}
			if strings.Contains(tc.name, "before") {
				target.APIVersion = "2024-06-01"
			}
			req, err := tc.p.NewRequest(context.Background(), target,
				&wire.Call{Op: tc.op, Body: []byte(tc.body), OutputCap: tc.outputCap})
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(req.Body)
			var sent map[string]any
			if err := json.Unmarshal(raw, &sent); err != nil {
				t.Fatal(err)
			}
			got := map[string]any{"max_tokens": sent["max_tokens"], "max_completion_tokens": sent["max_completion_tokens"]}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("caps sent (-got +want):\n%s\nbody %s", diff, raw)
			}
		})
	}
}
