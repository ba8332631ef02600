package anthropic

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name      string
		body      string // Anthropic's answer
		want      string // the OpenAI answer
		wantUsage wire.Usage
		hasUsage  bool
	}{
		{
			name: "text",
			body: `{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
				"content":[{"type":"text","text":"Hi! My name is Claude."},{"type":"text","text":" How can I help?"}],
				"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503}}`,
			want: `{"id":"chatcmpl-msg_013Zva2CMHLNnXjNJJKqJ2EF","object":"chat.completion","created":1700000000,"model":"claude",
				"choices":[{"index":0,"message":{"role":"assistant","content":"Hi! My name is Claude. How can I help?","refusal":null},"finish_reason":"stop","logprobs":null}],
				"usage":{"prompt_tokens":2095,"completion_tokens":503,"total_tokens":2598}}`,
			wantUsage: wire.Usage{PromptTokens: 2095, CompletionTokens: 503},
			hasUsage:  true,
		},
		{
			name: "tool_use only",
			body: `{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5",
				"content":[{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location": "San Francisco, CA", "unit": "celsius"}},
					{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}],
				"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":20}}`,
			want: `{"id":"chatcmpl-msg_01Aq9w938a90dw8q","object":"chat.completion","created":1700000000,"model":"claude",
				"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[
					{"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}},
					{"id":"toolu_02","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
					"finish_reason":"tool_calls","logprobs":null}],
				"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}`,
			wantUsage: wire.Usage{PromptTokens: 10, CompletionTokens: 20},
			hasUsage:  true,
		},
		{
			name: "thinking, text and tool_use with cache usage",
			body: `{"id":"msg_c","type":"message","role":"assistant","model":"claude-sonnet-4-5",
				"content":[{"type":"thinking","thinking":"Let me look.","signature":"EqQB"},{"type":"text","text":"Checking."},
					{"type":"tool_use","id":"toolu_1","name":"lookup","input":{"q":"x"}}],
				"stop_reason":"tool_use","stop_sequence":null,
				"usage":{"input_tokens":50,"cache_creation_input_tokens":1000,"cache_read_input_tokens":3000,"output_tokens":40,"service_tier":"standard"}}`,
			want: `{"id":"chatcmpl-msg_c","object":"chat.completion","created":1700000000,"model":"claude",
				"choices":[{"index":0,"message":{"role":"assistant","content":"Checking.","refusal":null,"tool_calls":[
					{"id":"toolu_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":\"x\"}"}}]},
					"finish_reason":"tool_calls","logprobs":null}],
				"usage":{"prompt_tokens":4050,"completion_tokens":40,"total_tokens":4090,"prompt_tokens_details":{"cached_tokens":3000}}}`,
			wantUsage: wire.Usage{PromptTokens: 4050, CachedTokens: 3000, CompletionTokens: 40},
			hasUsage:  true,
		},
		{
			name: "max_tokens, no usage",
			body: `{"id":"msg_m","type":"message","role":"assistant","content":[{"type":"text","text":"Once upon"}],"stop_reason":"max_tokens"}`,
			want: `{"id":"chatcmpl-msg_m","object":"chat.completion","created":1700000000,"model":"claude",
				"choices":[{"index":0,"message":{"role":"assistant","content":"Once upon","refusal":null},"finish_reason":"length","logprobs":null}]}`,
		},
		{
			name: "refusal",
			body: `{"id":"msg_r","type":"message","role":"assistant","content":[],"stop_reason":"refusal","usage":{"input_tokens":5,"output_tokens":0}}`,
			want: `{"id":"chatcmpl-msg_r","object":"chat.completion","created":1700000000,"model":"claude",
				"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null},"finish_reason":"content_filter","logprobs":null}],
				"usage":{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5}}`,
			wantUsage: wire.Usage{PromptTokens: 5},
			hasUsage:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &wire.Call{Op: wire.OpChat, Model: "claude"}
			res, err := New().Decode(c, testTarget(""), []byte(tc.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(parseJSON(t, string(res.Body)), parseJSON(t, tc.want)); diff != "" {
				t.Errorf("body (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(res.Usage, tc.wantUsage); diff != "" {
				t.Errorf("usage (-got +want):\n%s", diff)
			}
			if res.HasUsage != tc.hasUsage {
				t.Errorf("HasUsage = %v, want %v", res.HasUsage, tc.hasUsage)
			}
		})
	}
}

func TestFinishReason(t *testing.T) {
	for _, tc := range []struct{ stop, want string }{
		{"end_turn", "stop"},
		{"stop_sequence", "stop"},
		{"max_tokens", "length"},
		{"tool_use", "tool_calls"},
		{"refusal", "content_filter"},
		{"pause_turn", "stop"},
		{"", "stop"},
	} {
		if got := finishReason(tc.stop); got != tc.want {
			t.Errorf("finishReason(%q) = %q, want %q", tc.stop, got, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", `<html>`, "decoding the Anthropic answer: invalid character '<' looking for beginning of value"},
		{"error body", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "Anthropic error: Overloaded"},
		{"other object", `{"type":"message_batch","id":"x"}`, `the Anthropic answer is a "message_batch", not a message`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New().Decode(&wire.Call{Model: "m"}, testTarget(""), []byte(tc.body))
			if err == nil {
				t.Fatalf("Decode(%s) succeeded, want error %q", tc.body, tc.want)
			}
			if diff := cmp.Diff(err.Error(), tc.want); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"invalid request", `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`, "max_tokens: Field required"},
		{"not found", `{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}`, "model: claude-x"},
		{"no message", `{"type":"error","error":{"type":"api_error"}}`, ""},
		{"no error", `{"type":"message"}`, ""},
		{"not JSON", `upstream connect error`, ""},
		{"empty", ``, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(New().ErrorMessage([]byte(tc.body)), tc.want); diff != "" {
				t.Errorf("ErrorMessage (-got +want):\n%s", diff)
			}
		})
	}
}
