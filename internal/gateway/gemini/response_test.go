package gemini

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

var (
	randomChatID = regexp.MustCompile(`^chatcmpl-[0-9a-f]{24}$`)
	// randomCallID is a generated tool call id, with the thought signature
	// it may carry as the second group.
	randomCallID = regexp.MustCompile(`^call_([0-9a-f]{24})((?:__ts_|__tx_)[A-Za-z0-9_-]+)?$`)
)

// normalize checks the generated parts of an OpenAI answer or chunk (random
// ids, created) and replaces them with fixed values, so that the rest can
// be compared: a tool call id becomes call_RANDOM followed by the
// signature part it carries, if any. It returns the tool call ids it saw.
func normalize(t *testing.T, v any) []string {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("answer is not an object: %v", v)
	}
	if id, _ := m["id"].(string); randomChatID.MatchString(id) {
		m["id"] = "chatcmpl-RANDOM"
	}
	if c, ok := m["created"].(float64); ok {
		if now := float64(time.Now().Unix()); c < now-60 || c > now+1 {
			t.Errorf("created: got %v, want about %v", c, now)
		}
		m["created"] = 0.0
	}
	var ids []string
	choices, _ := m["choices"].([]any)
	for _, ch := range choices {
		ch, _ := ch.(map[string]any)
		for _, key := range []string{"message", "delta"} {
			msg, _ := ch[key].(map[string]any)
			calls, _ := msg["tool_calls"].([]any)
			for _, tc := range calls {
				tc, _ := tc.(map[string]any)
				id, _ := tc["id"].(string)
				m := randomCallID.FindStringSubmatch(id)
				if m == nil {
					t.Errorf("tool call id: got %q, want call_ and 24 hex digits (and a signature)", id)
					continue
				}
				ids = append(ids, id)
				tc["id"] = "call_RANDOM" + m[2]
			}
		}
	}
	return ids
}

func TestDecodeChat(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		want      string
		wantUsage wire.Usage
		hasUsage  bool
	}{
		{
			name: "text with thoughts left out",
			body: `{
				"candidates": [{
					"content": {"parts": [
						{"text": "Let me think about greetings.", "thought": true},
						{"text": "Hello"},
						{"text": ", world!", "thoughtSignature": "EjQKMgEM"}
					], "role": "model"},
					"finishReason": "STOP",
					"index": 0
				}],
				"usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 6, "totalTokenCount": 35, "thoughtsTokenCount": 14,
					"promptTokensDetails": [{"modality": "TEXT", "tokenCount": 15}]},
				"modelVersion": "gemini-2.5-flash",
				"responseId": "Il0taoSYJ5Cez7"
			}`,
			want: `{
				"id": "chatcmpl-Il0taoSYJ5Cez7", "object": "chat.completion", "created": 0, "model": "gpt-4o",
				"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello, world!", "refusal": null},
					"finish_reason": "stop", "logprobs": null}],
				"usage": {"prompt_tokens": 15, "completion_tokens": 20, "total_tokens": 35}
			}`,
			wantUsage: wire.Usage{PromptTokens: 15, CompletionTokens: 20},
			hasUsage:  true,
		},
		{
			name: "function calls",
			body: `{
				"candidates": [{
					"content": {"parts": [
						{"functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}}, "thoughtSignature": "CiQB"},
						{"functionCall": {"name": "get_time"}}
					], "role": "model"},
					"finishReason": "STOP",
					"index": 0
				}],
				"usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12, "totalTokenCount": 52, "cachedContentTokenCount": 32},
				"modelVersion": "gemini-2.5-pro"
			}`,
			want: `{
				"id": "chatcmpl-RANDOM", "object": "chat.completion", "created": 0, "model": "gpt-4o",
				"choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
						{"id": "call_RANDOM__ts_CiQB", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}},
						{"id": "call_RANDOM", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
					]},
					"finish_reason": "tool_calls", "logprobs": null}],
				"usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52, "prompt_tokens_details": {"cached_tokens": 32}}
			}`,
			wantUsage: wire.Usage{PromptTokens: 40, CachedTokens: 32, CompletionTokens: 12},
			hasUsage:  true,
		},
		{
			name: "candidate stopped for safety",
			body: `{
				"candidates": [{
					"finishReason": "SAFETY",
					"index": 0,
					"safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]
				}],
				"usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
				"modelVersion": "gemini-2.5-flash"
			}`,
			want: `{
				"id": "chatcmpl-RANDOM", "object": "chat.completion", "created": 0, "model": "gpt-4o",
				"choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null},
					"finish_reason": "content_filter", "logprobs": null}],
				"usage": {"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9}
			}`,
			wantUsage: wire.Usage{PromptTokens: 9},
			hasUsage:  true,
		},
		{
			name: "prompt blocked",
			body: `{
				"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
				"usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
				"modelVersion": "gemini-2.5-flash"
			}`,
			want: `{
				"id": "chatcmpl-RANDOM", "object": "chat.completion", "created": 0, "model": "gpt-4o",
				"choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null},
					"finish_reason": "content_filter", "logprobs": null}],
				"usage": {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}
			}`,
			wantUsage: wire.Usage{PromptTokens: 7},
			hasUsage:  true,
		},
		{
			name: "two candidates, one cut at max tokens, no usage",
			body: `{
				"candidates": [
					{"content": {"parts": [{"text": "A"}], "role": "model"}, "finishReason": "STOP"},
					{"content": {"parts": [{"text": "B is"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1},
					{"content": {"parts": [], "role": "model"}, "finishReason": "RECITATION", "index": 2}
				]
			}`,
			want: `{
				"id": "chatcmpl-RANDOM", "object": "chat.completion", "created": 0, "model": "gpt-4o",
				"choices": [
					{"index": 0, "message": {"role": "assistant", "content": "A", "refusal": null}, "finish_reason": "stop", "logprobs": null},
					{"index": 1, "message": {"role": "assistant", "content": "B is", "refusal": null}, "finish_reason": "length", "logprobs": null},
					{"index": 2, "message": {"role": "assistant", "content": null, "refusal": null}, "finish_reason": "content_filter", "logprobs": null}
				]
			}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := New().Decode(chatCall(t, `{"model": "gpt-4o", "messages": []}`, false), target, []byte(tc.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			var resp wire.ChatResponse
			if err := json.Unmarshal(res.Body, &resp); err != nil {
				t.Errorf("body does not parse as wire.ChatResponse: %v", err)
			}
			got := generic(t, res.Body)
			ids := normalize(t, got)
			if len(ids) == 2 && ids[0] == ids[1] {
				t.Errorf("tool call ids are not unique: %q", ids)
			}
			if diff := cmp.Diff(got, generic(t, []byte(tc.want))); diff != "" {
				t.Errorf("body (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(res.Usage, tc.wantUsage); diff != "" {
				t.Errorf("usage (-got +want):\n%s", diff)
			}
			if res.HasUsage != tc.hasUsage {
				t.Errorf("HasUsage: got %v, want %v", res.HasUsage, tc.hasUsage)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"not JSON", `<html>`, "decoding the generateContent answer"},
		{"no candidates", `{"usageMetadata": {"promptTokenCount": 3}}`, "the answer has no candidates"},
		{"error object", `{"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}`, "Internal error encountered."},
		{"error array", `[{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}]`, "The model is overloaded."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := New().Decode(chatCall(t, `{"model": "m", "messages": []}`, false), target, []byte(tc.body))
			if err == nil {
				t.Fatalf("Decode: got %s, want an error containing %q", res.Body, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error: got %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestDecodeEmbeddings(t *testing.T) {
	body := `{"embeddings": [{"values": [0.0123, -0.5, 1e-7]}, {"values": [0.25, 0, -1]}]}`
	res, err := New().Decode(embedCall(t, `{"model": "text-embedding-3-small", "input": ["a", "b"]}`), target, []byte(body))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := `{"object": "list", "data": [
		{"object": "embedding", "index": 0, "embedding": [0.0123, -0.5, 1e-7]},
		{"object": "embedding", "index": 1, "embedding": [0.25, 0, -1]}
	], "model": "text-embedding-3-small", "usage": {"prompt_tokens": 0, "total_tokens": 0}}`
	if diff := cmp.Diff(generic(t, res.Body), generic(t, []byte(want))); diff != "" {
		t.Errorf("body (-got +want):\n%s", diff)
	}
	if res.HasUsage || res.Usage != (wire.Usage{}) {
		t.Errorf("usage: got %+v, HasUsage %v; want none", res.Usage, res.HasUsage)
	}
	if _, err := New().Decode(embedCall(t, `{"model": "e", "input": "a"}`), target, []byte(`{"embeddings": `)); err == nil {
		t.Errorf("Decode of a truncated body: got no error")
	}
}

func TestErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"object", `{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
			"details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}`,
			"API key not valid. Please pass a valid API key."},
		{"one-element array", `[{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}]`,
			"Resource has been exhausted (e.g. check quota)."},
		{"no error", `{"candidates": []}`, ""},
		{"empty array", `[]`, ""},
		{"not JSON", `502 Bad Gateway`, ""},
		{"empty", ``, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := New().ErrorMessage([]byte(tc.body)); got != tc.want {
				t.Errorf("ErrorMessage: got %q, want %q", got, tc.want)
			}
		})
	}
}
