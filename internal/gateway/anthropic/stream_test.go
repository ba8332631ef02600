package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

type emitted struct {
	Chunk     string
	UsageOnly bool
}

// recorder is an Emit keeping what it got; failAt > 0 makes that call
// (1-based) fail with failWith.
type recorder struct {
	got      []emitted
	failAt   int
	failWith error
}

func (r *recorder) emit(chunk []byte, usageOnly bool) error {
	r.got = append(r.got, emitted{string(chunk), usageOnly})
	if r.failAt > 0 && len(r.got) == r.failAt {
		return r.failWith
	}
	return nil
}

type toolSummary struct {
	Index          int
	ID, Name       string
	Type           string
	Arguments      string
	StartArgsEmpty bool // the starting delta had arguments ""
}

// summary is what a client rebuilds from the chunks.
type summary struct {
	ID, Model      string
	Created        int64
	Chunks         int
	FirstRole      string
	FirstContent   *string
	Content        string
	Tools          []toolSummary
	Finish         []string // the finish reasons, in order
	UsageOnlyAt    []int    // positions of the usage-only chunks
	Usage          *wire.UsageObject
	EmptyDeltaSeen bool // a delta without content or tool calls, but the final one
}

// summarize parses every chunk as a wire.ChatChunk, checks what must hold
// of each, and rebuilds the answer.
func summarize(t *testing.T, got []emitted) summary {
	t.Helper()
	var s summary
	for i, e := range got {
		dec := json.NewDecoder(strings.NewReader(e.Chunk))
		dec.DisallowUnknownFields()
		var ch wire.ChatChunk
		if err := dec.Decode(&ch); err != nil {
			t.Fatalf("chunk %d %s does not parse as a ChatChunk: %v", i, e.Chunk, err)
		}
		if ch.Object != "chat.completion.chunk" {
			t.Errorf("chunk %d: object %q", i, ch.Object)
		}
		if i == 0 {
			s.ID, s.Model, s.Created = ch.ID, ch.Model, ch.Created
		} else if ch.ID != s.ID || ch.Model != s.Model || ch.Created != s.Created {
			t.Errorf("chunk %d: id/model/created %q/%q/%d, first chunk had %q/%q/%d", i, ch.ID, ch.Model, ch.Created, s.ID, s.Model, s.Created)
		}
		s.Chunks++
		if e.UsageOnly {
			s.UsageOnlyAt = append(s.UsageOnlyAt, i)
			if ch.Choices == nil || len(ch.Choices) != 0 || !strings.Contains(e.Chunk, `"choices":[]`) {
				t.Errorf("usage-only chunk %d has choices: %s", i, e.Chunk)
			}
			if ch.Usage == nil {
				t.Errorf("usage-only chunk %d has no usage: %s", i, e.Chunk)
			}
			s.Usage = ch.Usage
			continue
		}
		if len(ch.Choices) != 1 || ch.Usage != nil {
			t.Fatalf("chunk %d: want one choice and no usage: %s", i, e.Chunk)
		}
		c := ch.Choices[0]
		if c.Index != 0 {
			t.Errorf("chunk %d: choice index %d", i, c.Index)
		}
		d := c.Delta
		if i == 0 {
			s.FirstRole, s.FirstContent = d.Role, d.Content
			continue
		}
		if d.Role != "" {
			t.Errorf("chunk %d repeats the role", i)
		}
		if c.FinishReason != nil {
			s.Finish = append(s.Finish, *c.FinishReason)
		}
		if d.Content != nil {
			s.Content += *d.Content
		}
		if d.Content == nil && len(d.ToolCalls) == 0 && c.FinishReason == nil {
			s.EmptyDeltaSeen = true
		}
		for _, tc := range d.ToolCalls {
			if tc.Index == nil {
				t.Fatalf("chunk %d: tool call without index: %s", i, e.Chunk)
			}
			k := *tc.Index
			switch {
			case k == len(s.Tools):
				s.Tools = append(s.Tools, toolSummary{Index: k, ID: tc.ID, Name: tc.Function.Name, Type: tc.Type,
					StartArgsEmpty: tc.Function.Arguments == "" && strings.Contains(e.Chunk, `"arguments":""`)})
			case k < len(s.Tools):
				if tc.ID != "" || tc.Function.Name != "" {
					t.Errorf("chunk %d: tool call %d restarts: %s", i, k, e.Chunk)
				}
			default:
				t.Fatalf("chunk %d: tool call index %d skips ahead", i, k)
			}
			s.Tools[k].Arguments += tc.Function.Arguments
		}
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func TestStream(t *testing.T) {
	tests := []struct {
		name      string
		sse       string
		want      summary
		wantUsage wire.Usage
		wantOK    bool
		wantErr   string
	}{
		{
			name: "documented text answer",
			sse:  streamBasic,
			want: summary{ID: "chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", Model: "claude", Created: testCreated, Chunks: 5,
				FirstRole: "assistant", FirstContent: ptr(""), Content: "Hello!", Finish: []string{"stop"}, UsageOnlyAt: []int{4},
				Usage: &wire.UsageObject{PromptTokens: 25, CompletionTokens: 15, TotalTokens: 40}},
			wantUsage: wire.Usage{PromptTokens: 25, CompletionTokens: 15},
			wantOK:    true,
		},
		{
			name: "documented tool-use answer",
			sse:  streamToolUse,
			want: summary{ID: "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U", Model: "claude", Created: testCreated,
				Chunks:    1 + 13 + 1 + 5 + 1 + 1, // role, text deltas, tool start, non-empty argument deltas, finish, usage
				FirstRole: "assistant", FirstContent: ptr(""), Content: toolUseText,
				Tools:  []toolSummary{{Index: 0, ID: "toolu_01T1x1fJ34qAmk2tNTrN7Up6", Name: "get_weather", Type: "function", Arguments: toolUseArgs, StartArgsEmpty: true}},
				Finish: []string{"tool_calls"}, UsageOnlyAt: []int{21},
				Usage: &wire.UsageObject{PromptTokens: 2572, CompletionTokens: 89, TotalTokens: 2661, PromptTokensDetails: &wire.PromptTokensDetails{CachedTokens: 2000}}},
			wantUsage: wire.Usage{PromptTokens: 2572, CachedTokens: 2000, CompletionTokens: 89},
			wantOK:    true,
		},
		{
			name: "thinking and server tool left out, two client tools, no message_stop",
			sse:  streamMixed,
			want: summary{ID: "chatcmpl-msg_mixed", Model: "claude", Created: testCreated, Chunks: 8,
				FirstRole: "assistant", FirstContent: ptr(""), Content: "Looking up both.",
				Tools: []toolSummary{
					{Index: 0, ID: "toolu_a", Name: "get_weather", Type: "function", Arguments: `{"city": "NYC"}`, StartArgsEmpty: true},
					{Index: 1, ID: "toolu_b", Name: "get_time", Type: "function", Arguments: `{}`, StartArgsEmpty: true},
				},
				Finish: []string{"tool_calls"}, UsageOnlyAt: []int{7},
				Usage: &wire.UsageObject{PromptTokens: 2679, CompletionTokens: 120, TotalTokens: 2799}},
			wantUsage: wire.Usage{PromptTokens: 2679, CompletionTokens: 120},
			wantOK:    true,
		},
		{
			name: "error event",
			sse:  streamOverloaded,
			want: summary{ID: "chatcmpl-msg_err", Model: "claude", Created: testCreated, Chunks: 2,
				FirstRole: "assistant", FirstContent: ptr(""), Content: "Hel"},
			wantUsage: wire.Usage{PromptTokens: 25, CompletionTokens: 1},
			wantErr:   "Anthropic error (overloaded_error): Overloaded",
		},
		{
			name: "cut before message_delta",
			sse:  streamCut,
			want: summary{ID: "chatcmpl-msg_cut", Model: "claude", Created: testCreated, Chunks: 2,
				FirstRole: "assistant", FirstContent: ptr(""), Content: "Half an ans"},
			wantUsage: wire.Usage{PromptTokens: 40, CachedTokens: 10, CompletionTokens: 1},
		},
		{
			name: "cut in the middle of an event",
			sse:  streamCut + "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_d",
			want: summary{ID: "chatcmpl-msg_cut", Model: "claude", Created: testCreated, Chunks: 2,
				FirstRole: "assistant", FirstContent: ptr(""), Content: "Half an ans"},
			wantUsage: wire.Usage{PromptTokens: 40, CachedTokens: 10, CompletionTokens: 1},
		},
		{
			name: "malformed event followed by more",
			sse:  streamCut + "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_d\n\n" + "event: ping\ndata: {\"type\": \"ping\"}\n\n",
			want: summary{ID: "chatcmpl-msg_cut", Model: "claude", Created: testCreated, Chunks: 2,
				FirstRole: "assistant", FirstContent: ptr(""), Content: "Half an ans"},
			wantUsage: wire.Usage{PromptTokens: 40, CachedTokens: 10, CompletionTokens: 1},
			wantErr:   "malformed Anthropic content_block_delta event: unexpected end of JSON input",
		},
		{
			name: "no usage in message_delta",
			sse:  streamNoFinalUsage,
			want: summary{ID: "chatcmpl-msg_01...", Model: "claude", Created: testCreated, Chunks: 3,
				FirstRole: "assistant", FirstContent: ptr(""), Content: "The greatest common divisor of 1071 and 462 is **21**.",
				Finish: []string{"stop"}},
		},
		{
			name: "max_tokens, CRLF line ends",
			sse:  strings.ReplaceAll(strings.Replace(streamBasic, `"stop_reason": "end_turn"`, `"stop_reason": "max_tokens"`, 1), "\n", "\r\n"),
			want: summary{ID: "chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", Model: "claude", Created: testCreated, Chunks: 5,
				FirstRole: "assistant", FirstContent: ptr(""), Content: "Hello!", Finish: []string{"length"}, UsageOnlyAt: []int{4},
				Usage: &wire.UsageObject{PromptTokens: 25, CompletionTokens: 15, TotalTokens: 40}},
			wantUsage: wire.Usage{PromptTokens: 25, CompletionTokens: 15},
			wantOK:    true,
		},
		{
			name:    "empty body",
			sse:     "",
			want:    summary{},
			wantOK:  false,
			wantErr: "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			c := &wire.Call{Op: wire.OpChat, Model: "claude", Stream: true}
			u, ok, err := New().Stream(c, testTarget(""), strings.NewReader(tc.sse), r.emit)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(gotErr, tc.wantErr); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(summarize(t, r.got), tc.want); diff != "" {
				t.Errorf("chunks (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(u, tc.wantUsage); diff != "" {
				t.Errorf("usage (-got +want):\n%s", diff)
			}
			if ok != tc.wantOK {
				t.Errorf("ok = %v, want %v", ok, tc.wantOK)
			}
		})
	}
}

// The exact chunks of the documented text answer.
func TestStreamChunks(t *testing.T) {
	var r recorder
	c := &wire.Call{Op: wire.OpChat, Model: "claude", Stream: true}
	if _, _, err := New().Stream(c, testTarget(""), strings.NewReader(streamBasic), r.emit); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	const head = `"id":"chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","object":"chat.completion.chunk","created":1700000000,"model":"claude"`
	want := []emitted{
		{`{` + head + `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`, false},
		{`{` + head + `,"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}`, false},
		{`{` + head + `,"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null}]}`, false},
		{`{` + head + `,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`, false},
		{`{` + head + `,"choices":[],"usage":{"prompt_tokens":25,"completion_tokens":15,"total_tokens":40}}`, true},
	}
	if diff := cmp.Diff(r.got, want); diff != "" {
		t.Errorf("chunks (-got +want):\n%s", diff)
	}
}

func TestStreamEmitError(t *testing.T) {
	errGone := errors.New("client went away")
	tests := []struct {
		name   string
		failAt int
		wantOK bool
	}{
		{"on the role chunk", 1, false},
		{"on a text delta", 3, false},
		{"on the tool call start", 15, false},
		{"on the finish chunk", 21, true},
		{"on the usage chunk", 22, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := recorder{failAt: tc.failAt, failWith: errGone}
			c := &wire.Call{Op: wire.OpChat, Model: "claude", Stream: true}
			body := &countingReader{r: strings.NewReader(streamToolUse)}
			_, ok, err := New().Stream(c, testTarget(""), body, r.emit)
			if err != errGone {
				t.Errorf("error = %v, want emit's error as is", err)
			}
			if got := len(r.got); got != tc.failAt {
				t.Errorf("emit called %d times, want %d (reading must stop at its error)", got, tc.failAt)
			}
			if ok != tc.wantOK {
				t.Errorf("ok = %v, want %v", ok, tc.wantOK)
			}
			if tc.failAt == 1 && body.n == len(streamToolUse) {
				t.Errorf("the whole body was read after emit failed on the first chunk")
			}
		})
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	// Small reads, so that stopping early shows.
	n, err := c.r.Read(p[:min(len(p), 256)])
	c.n += n
	return n, err
}

func TestStreamReadError(t *testing.T) {
	errReset := errors.New("connection reset by peer")
	var r recorder
	body := io.MultiReader(strings.NewReader(streamToolUseHead), iotest.ErrReader(errReset))
	u, ok, err := New().Stream(&wire.Call{Model: "claude", Stream: true}, testTarget(""), body, r.emit)
	if !errors.Is(err, errReset) {
		t.Errorf("error = %v, want %v", err, errReset)
	}
	if ok {
		t.Error("ok = true for a stream that broke before message_delta")
	}
	if diff := cmp.Diff(u, wire.Usage{PromptTokens: 2572, CachedTokens: 2000, CompletionTokens: 2}); diff != "" {
		t.Errorf("usage (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(summarize(t, r.got).Content, "Okay"); diff != "" {
		t.Errorf("content (-got +want):\n%s", diff)
	}
}

// Events the adapter does not know are skipped, known ones must parse.
func TestStreamUnknownEvents(t *testing.T) {
	sse := "event: future_event\ndata: not json\n\n" +
		"event: future_event\ndata: {\"type\":\"future_event\",\"x\":1}\n\n" +
		": a comment\n\n" + streamBasic
	var r recorder
	_, ok, err := New().Stream(&wire.Call{Model: "claude"}, testTarget(""), bytes.NewBufferString(sse), r.emit)
	if err != nil || !ok {
		t.Fatalf("Stream = ok %v, err %v; want ok, no error", ok, err)
	}
	if diff := cmp.Diff(summarize(t, r.got).Content, "Hello!"); diff != "" {
		t.Errorf("content (-got +want):\n%s", diff)
	}

	_, _, err = New().Stream(&wire.Call{Model: "claude"}, testTarget(""), strings.NewReader("event: message_start\ndata: {oops\n\nevent: ping\ndata: {}\n\n"), r.emit)
	if err == nil {
		t.Error("a malformed message_start was accepted")
	}
}
