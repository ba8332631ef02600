package gemini

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// sse frames Gemini events the way the API sends them: "data: " lines
// ended by CRLF, a blank line after each event.
func sse(events ...string) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString("data: " + e + "\r\n\r\n")
	}
	return b.String()
}

// emitted is one chunk handed to emit.
type emitted struct {
	raw       []byte
	usageOnly bool
}

// streamSummary is what a client makes of the chunks.
type streamSummary struct {
	Text      map[int]string // concatenated content deltas by choice
	ToolCalls []string       // "choice/index name args[ sig=signature]" for each tool call delta
	Finishes  []string       // "choice:reason" in order
	Usage     *wire.UsageObject
}

// summarize checks the chunks' common fields and shape and sums them up:
// every chunk parses as wire.ChatChunk with the same id, created and model;
// each choice opens with one role chunk; only the last chunk may be
// usage-only, and it carries no choices.
func summarize(t *testing.T, chunks []emitted, model string) streamSummary {
	t.Helper()
	s := streamSummary{Text: map[int]string{}}
	var first wire.ChatChunk
	opened := map[int]bool{}
	for i, e := range chunks {
		var ch wire.ChatChunk
		if err := json.Unmarshal(e.raw, &ch); err != nil {
			t.Fatalf("chunk %d does not parse as wire.ChatChunk: %v\n%s", i, err, e.raw)
		}
		if i == 0 {
			first = ch
			if !strings.HasPrefix(ch.ID, "chatcmpl-") || ch.Created == 0 {
				t.Errorf("chunk 0: id %q, created %d", ch.ID, ch.Created)
			}
		}
		if ch.ID != first.ID || ch.Created != first.Created || ch.Model != model || ch.Object != "chat.completion.chunk" {
			t.Errorf("chunk %d: id %q created %d model %q object %q; want %q %d %q chat.completion.chunk",
				i, ch.ID, ch.Created, ch.Model, ch.Object, first.ID, first.Created, model)
		}
		if e.usageOnly {
			if i != len(chunks)-1 {
				t.Errorf("chunk %d of %d is usage-only; only the last may be", i, len(chunks))
			}
			if ch.Choices == nil || len(ch.Choices) != 0 || ch.Usage == nil || !strings.Contains(string(e.raw), `"choices":[]`) {
				t.Errorf("usage-only chunk: %s", e.raw)
			}
			s.Usage = ch.Usage
			continue
		}
		if ch.Usage != nil || len(ch.Choices) != 1 {
			t.Errorf("chunk %d: want one choice and no usage: %s", i, e.raw)
			continue
		}
		c := ch.Choices[0]
		if c.Delta.Role != "" {
			if opened[c.Index] || c.Delta.Role != "assistant" || c.Delta.Content == nil || *c.Delta.Content != "" {
				t.Errorf("chunk %d: a second or malformed opening chunk: %s", i, e.raw)
			}
			opened[c.Index] = true
			continue
		}
		if !opened[c.Index] {
			t.Errorf("chunk %d: choice %d has no opening chunk before it", i, c.Index)
		}
		if c.Delta.Content != nil {
			s.Text[c.Index] += *c.Delta.Content
		}
		for _, tc := range c.Delta.ToolCalls {
			if tc.Index == nil || !randomCallID.MatchString(tc.ID) || tc.Type != "function" {
				t.Errorf("chunk %d: tool call delta without index, id or type: %s", i, e.raw)
				continue
			}
			call := fmt.Sprintf("%d/%d %s %s", c.Index, *tc.Index, tc.Function.Name, tc.Function.Arguments)
			if sig := callSignature(tc.ID); sig != "" {
				call += " sig=" + sig
			}
			s.ToolCalls = append(s.ToolCalls, call)
		}
		if c.FinishReason != nil {
			if c.Delta.Content != nil || c.Delta.ToolCalls != nil {
				t.Errorf("chunk %d: the finish chunk has a delta: %s", i, e.raw)
			}
			s.Finishes = append(s.Finishes, fmt.Sprintf("%d:%s", c.Index, *c.FinishReason))
		}
	}
	return s
}

func runStream(t *testing.T, body io.Reader) ([]emitted, wire.Usage, bool, error) {
	t.Helper()
	var chunks []emitted
	u, ok, err := New().Stream(chatCall(t, `{"model": "gpt-4o", "messages": [], "stream": true}`, true), target, body,
		func(chunk []byte, usageOnly bool) error {
			chunks = append(chunks, emitted{append([]byte(nil), chunk...), usageOnly})
			return nil
		})
	return chunks, u, ok, err
}

func TestStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		want      streamSummary
		wantUsage wire.Usage
		wantOK    bool
		wantErr   string
	}{
		{
			name: "text",
			body: sse(
				`{"candidates": [{"content": {"parts": [{"text": "Thinking about it", "thought": true}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.5-flash","responseId": "r1"}`,
				`{"candidates": [{"content": {"parts": [{"text": "Hello"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.5-flash","responseId": "r1"}`,
				`{"candidates": [{"content": {"parts": [{"text": " there"}, {"text": ", friend"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.5-flash","responseId": "r1"}`,
				`{"candidates": [{"content": {"parts": [{"text": "!"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 4,"totalTokenCount": 32,"cachedContentTokenCount": 2,"thoughtsTokenCount": 20},"modelVersion": "gemini-2.5-flash","responseId": "r1"}`,
			),
			want: streamSummary{
				Text:     map[int]string{0: "Hello there, friend!"},
				Finishes: []string{"0:stop"},
				Usage:    &wire.UsageObject{PromptTokens: 8, CompletionTokens: 24, TotalTokens: 32, PromptTokensDetails: &wire.PromptTokensDetails{CachedTokens: 2}},
			},
			wantUsage: wire.Usage{PromptTokens: 8, CachedTokens: 2, CompletionTokens: 24},
			wantOK:    true,
		},
		{
			name: "function calls",
			body: sse(
				`{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"city": "Paris"}},"thoughtSignature": "CiQB"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 30,"totalTokenCount": 30},"modelVersion": "gemini-2.5-flash"}`,
				`{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_time","args": {}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 30,"candidatesTokenCount": 10,"totalTokenCount": 40},"modelVersion": "gemini-2.5-flash"}`,
			),
			want: streamSummary{
				Text:      map[int]string{},
				ToolCalls: []string{`0/0 get_weather {"city":"Paris"} sig=CiQB`, `0/1 get_time {}`},
				Finishes:  []string{"0:tool_calls"},
				Usage:     &wire.UsageObject{PromptTokens: 30, CompletionTokens: 10, TotalTokens: 40},
			},
			wantUsage: wire.Usage{PromptTokens: 30, CompletionTokens: 10},
			wantOK:    true,
		},
		{
			name: "stopped for safety, usage without candidates count",
			body: sse(
				`{"candidates": [{"content": {"parts": [{"text": "Sure, first"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 5,"totalTokenCount": 5}}`,
				`{"candidates": [{"finishReason": "SAFETY","index": 0,"safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT","probability": "HIGH","blocked": true}]}],"usageMetadata": {"promptTokenCount": 5,"totalTokenCount": 5}}`,
			),
			want: streamSummary{
				Text:     map[int]string{0: "Sure, first"},
				Finishes: []string{"0:content_filter"},
				Usage:    &wire.UsageObject{PromptTokens: 5, TotalTokens: 5},
			},
			wantUsage: wire.Usage{PromptTokens: 5},
			wantOK:    true,
		},
		{
			name: "prompt blocked",
			body: sse(`{"promptFeedback": {"blockReason": "SAFETY","safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT","probability": "HIGH"}]},"usageMetadata": {"promptTokenCount": 6,"totalTokenCount": 6},"modelVersion": "gemini-2.5-flash"}`),
			want: streamSummary{
				Text:     map[int]string{},
				Finishes: []string{"0:content_filter"},
				Usage:    &wire.UsageObject{PromptTokens: 6, TotalTokens: 6},
			},
			wantUsage: wire.Usage{PromptTokens: 6},
			wantOK:    true,
		},
		{
			name: "two candidates, index left out for the first, length",
			body: sse(
				`{"candidates": [{"content": {"parts": [{"text": "A"}],"role": "model"}},{"content": {"parts": [{"text": "B"}],"role": "model"},"index": 1}]}`,
				`{"candidates": [{"content": {"parts": [{"text": "a"}],"role": "model"},"finishReason": "MAX_TOKENS"},{"content": {"parts": [{"text": "b"}],"role": "model"},"finishReason": "STOP","index": 1}],"usageMetadata": {"promptTokenCount": 3,"candidatesTokenCount": 4,"totalTokenCount": 7}}`,
			),
			want: streamSummary{
				Text:     map[int]string{0: "Aa", 1: "Bb"},
				Finishes: []string{"0:length", "1:stop"},
				Usage:    &wire.UsageObject{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7},
			},
			wantUsage: wire.Usage{PromptTokens: 3, CompletionTokens: 4},
			wantOK:    true,
		},
		{
			name: "ended early",
			body: sse(
				`{"candidates": [{"content": {"parts": [{"text": "Once upon"}],"role": "model"}}],"usageMetadata": {"trafficType": "ON_DEMAND"},"modelVersion": "gemini-2.5-flash","responseId": "v1"}`,
				`{"candidates": [{"content": {"parts": [{"text": " a time"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 4,"totalTokenCount": 4},"modelVersion": "gemini-2.5-flash","responseId": "v1"}`,
			),
			want:      streamSummary{Text: map[int]string{0: "Once upon a time"}},
			wantUsage: wire.Usage{PromptTokens: 4},
		},
		{
			name:    "error event",
			body:    sse(`{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"index": 0}]}`, `{"error": {"code": 503,"message": "The model is overloaded. Please try again later.","status": "UNAVAILABLE"}}`),
			want:    streamSummary{Text: map[int]string{0: "Hi"}},
			wantErr: "The model is overloaded. Please try again later.",
		},
		{
			name:    "error event in an array",
			body:    sse(`[{"error": {"code": 500,"message": "Internal error encountered.","status": "INTERNAL"}}]`),
			want:    streamSummary{Text: map[int]string{}},
			wantErr: "Internal error encountered.",
		},
		{
			name:    "malformed event",
			body:    sse(`{"candidates": [`, `{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"index": 0}]}`),
			want:    streamSummary{Text: map[int]string{}},
			wantErr: "malformed stream event",
		},
		{
			name: "cut in the middle of an event",
			body: sse(`{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 4,"totalTokenCount": 4}}`) +
				`data: {"candidates": [{"content": {"parts": [{"te`,
			want:      streamSummary{Text: map[int]string{0: "Hi"}},
			wantUsage: wire.Usage{PromptTokens: 4},
		},
		{
			name: "garbage after the finish",
			body: sse(`{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 1,"totalTokenCount": 5}}`) +
				`data: {"candid`,
			want: streamSummary{
				Text:     map[int]string{0: "Hi"},
				Finishes: []string{"0:stop"},
				Usage:    &wire.UsageObject{PromptTokens: 4, CompletionTokens: 1, TotalTokens: 5},
			},
			wantUsage: wire.Usage{PromptTokens: 4, CompletionTokens: 1},
			wantOK:    true,
		},
		{
			name: "empty stream",
			want: streamSummary{Text: map[int]string{}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				r    io.Reader
			}{{"whole", strings.NewReader(tc.body)}, {"byte by byte", iotest.OneByteReader(strings.NewReader(tc.body))}} {
				chunks, u, ok, err := runStream(t, r.r)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Errorf("%s: error: got %v, want one containing %q", r.name, err, tc.wantErr)
					}
				} else if err != nil {
					t.Errorf("%s: Stream: %v", r.name, err)
				}
				if diff := cmp.Diff(summarize(t, chunks, "gpt-4o"), tc.want); diff != "" {
					t.Errorf("%s: chunks (-got +want):\n%s", r.name, diff)
				}
				if tc.wantErr == "" {
					if diff := cmp.Diff(u, tc.wantUsage); diff != "" {
						t.Errorf("%s: usage (-got +want):\n%s", r.name, diff)
					}
					if ok != tc.wantOK {
						t.Errorf("%s: ok: got %v, want %v", r.name, ok, tc.wantOK)
					}
				}
			}
		})
	}
}

// TestStreamChunks pins the exact JSON of each chunk.
func TestStreamChunks(t *testing.T) {
	body := sse(
		`{"candidates": [{"content": {"parts": [{"text": "Let me look."}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 30,"totalTokenCount": 30},"responseId": "abc"}`,
		`{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"city": "Paris"}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 30,"candidatesTokenCount": 10,"totalTokenCount": 40},"responseId": "abc"}`,
	)
	chunks, _, _, err := runStream(t, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	var got []any
	var usageOnly []bool
	for _, c := range chunks {
		v := generic(t, c.raw)
		normalize(t, v)
		got = append(got, v)
		usageOnly = append(usageOnly, c.usageOnly)
	}
	head := `"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o"`
	want := []string{
		`{` + head + `, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}`,
		`{` + head + `, "choices": [{"index": 0, "delta": {"content": "Let me look."}, "finish_reason": null}]}`,
		`{` + head + `, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_RANDOM", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}, "finish_reason": null}]}`,
		`{` + head + `, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}`,
		`{` + head + `, "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 10, "total_tokens": 40}}`,
	}
	var wantV []any
	for _, w := range want {
		wantV = append(wantV, generic(t, []byte(w)))
	}
	if diff := cmp.Diff(got, wantV); diff != "" {
		t.Errorf("chunks (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(usageOnly, []bool{false, false, false, false, true}); diff != "" {
		t.Errorf("usageOnly flags (-got +want):\n%s", diff)
	}
}

func TestStreamEmitErrorStops(t *testing.T) {
	body := sse(
		`{"candidates": [{"content": {"parts": [{"text": "one"}],"role": "model"},"index": 0}]}`,
		`{"candidates": [{"content": {"parts": [{"text": "two"}],"role": "model"},"index": 0}]}`,
		`{"candidates": [{"content": {"parts": [{"text": "three"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 1,"candidatesTokenCount": 3,"totalTokenCount": 4}}`,
	)
	for _, stopAt := range []int{1, 2, 5} { // the opening chunk, the first text, the usage chunk
		t.Run(fmt.Sprint(stopAt), func(t *testing.T) {
			gone := errors.New("client went away")
			calls := 0
			_, _, err := New().Stream(chatCall(t, `{"model": "m", "messages": []}`, true), target, strings.NewReader(body),
				func([]byte, bool) error {
					calls++
					if calls == stopAt {
						return gone
					}
					return nil
				})
			if err != gone {
				t.Errorf("error: got %v, want emit's error as is", err)
			}
			if calls != stopAt {
				t.Errorf("emit calls: got %d, want %d (none after the error)", calls, stopAt)
			}
		})
	}
}

func TestStreamReadError(t *testing.T) {
	body := io.MultiReader(
		strings.NewReader(sse(`{"candidates": [{"content": {"parts": [{"text": "partial"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 2,"totalTokenCount": 2}}`)),
		iotest.ErrReader(io.ErrUnexpectedEOF),
	)
	chunks, u, ok, err := runStream(t, body)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error: got %v, want %v", err, io.ErrUnexpectedEOF)
	}
	if diff := cmp.Diff(summarize(t, chunks, "gpt-4o"), streamSummary{Text: map[int]string{0: "partial"}}); diff != "" {
		t.Errorf("chunks (-got +want):\n%s", diff)
	}
	if ok || u != (wire.Usage{PromptTokens: 2}) {
		t.Errorf("usage: got %+v ok %v, want prompt 2 and ok false", u, ok)
	}
}
