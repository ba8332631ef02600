package gemini

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// sigA looks like a real signature: standard base64 of protobuf bytes,
// with + and / in it and padding at the end.
const sigA = "CiQBlqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8e0E/R9E+4v5shFsu4UGvgd6FjfTsVJpYt5cLuWZFvI0vzwpg=="

var plainCallID = regexp.MustCompile(`^call_[0-9a-f]{24}$`)

func TestCallID(t *testing.T) {
	token := regexp.MustCompile(`^call_[0-9a-f]{24}(__ts_|__tx_)[A-Za-z0-9_-]+$`)
	for _, tc := range []struct {
		name, sig, wantForm string
	}{
		{"none", "", ""},
		{"short", "CiQB", "__ts_"},
		{"one padding byte", "CiQBjw==", "__ts_"},
		{"realistic", sigA, "__ts_"},
		{"unpadded base64", "CiQBjw", "__tx_"},
		{"base64url alphabet", "CiQB-_8=", "__tx_"},
		{"non-zero trailing bits", "CiQBjx==", "__tx_"},
		{"base64 with a line break", "CiQB\nCiQB", "__tx_"},
		{"dummy signature", "skip_thought_signature_validator", "__tx_"},
		{"not ASCII", "sig ü/✓", "__tx_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := callID(tc.sig)
			form := ""
			if m := token.FindStringSubmatch(id); m != nil {
				form = m[1]
			} else if !plainCallID.MatchString(id) {
				t.Fatalf("id %q is neither a plain nor a signed call id", id)
			}
			if got, want := form, tc.wantForm; got != want {
				t.Errorf("form of %q: got %q, want %q", id, got, want)
			}
			if got, want := callSignature(id), tc.sig; got != want {
				t.Errorf("callSignature(%q): got %q, want %q", id, got, want)
			}
			if id2 := callID(tc.sig); id2 == id {
				t.Errorf("two ids for the same signature are equal: %q", id)
			}
		})
	}
}

func TestCallSignatureLookAlikes(t *testing.T) {
	const hex = "0123456789abcdef01234567"
	for _, tc := range []struct {
		name, id, want string
	}{
		{"well formed", "call_" + hex + "__ts_CiQB", "CiQB"},
		{"well formed text form", "call_" + hex + "__tx_Q2lRQmp3", "CiQBjw"},
		{"plain generated id", "call_" + hex, ""},
		{"client id", "call_w", ""},
		{"anthropic id", "toolu_01A09q90qw90lq917835lq9", ""},
		{"hex too short", "call_0123456789abcdef__ts_CiQB", ""},
		{"hex too long", "call_" + hex + "89__ts_CiQB", ""},
		{"upper-case hex", "call_" + strings.ToUpper("abcdef0123456789abcdef01") + "__ts_CiQB", ""},
		{"upper-case prefix", "CALL_" + hex + "__ts_CiQB", ""},
		{"something before", "x-call_" + hex + "__ts_CiQB", ""},
		{"empty payload", "call_" + hex + "__ts_", ""},
		{"unknown tag", "call_" + hex + "__tz_CiQB", ""},
		{"one underscore", "call_" + hex + "_ts_CiQB", ""},
		{"bad character", "call_" + hex + "__ts_Ci*B", ""},
		{"standard alphabet", "call_" + hex + "__ts_Ci+B", ""},
		{"padding", "call_" + hex + "__ts_CiQ=", ""},
		{"impossible length", "call_" + hex + "__ts_CiQBj", ""},
		{"non-zero trailing bits", "call_" + hex + "__ts_CiR", ""},
		{"line break", "call_" + hex + "__ts_Ci\nQB", ""},
		{"space", "call_" + hex + "__ts_Ci QB", ""},
		{"text form not UTF-8", "call_" + hex + "__tx__w", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := callSignature(tc.id); got != tc.want {
				t.Errorf("callSignature(%q): got %q, want %q", tc.id, got, tc.want)
			}
		})
	}
}

// roundTripCall is a tool call as the client saw it.
type roundTripCall struct {
	ID, Name, Arguments string
}

// assistantTurn is the assistant message as the client saw it.
type assistantTurn struct {
	Text  string
	Calls []roundTripCall
}

// TestThoughtSignatureRoundTrip answers with Gemini parts, takes the tool
// calls a client gets from Decode or Stream, sends them back the way
// clients do (the assistant message, then a tool message per call), and
// checks that the model turn Gemini receives is the one it sent:
// every signature on its own functionCall part, byte for byte, and none
// anywhere else.
func TestThoughtSignatureRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		parts     []string // the model's parts, sent back unchanged
		wantCalls []string // "name signed|plain" by the ids the client got
		wantResp  string   // the functionResponse parts of the follow-up
	}{
		{
			name:      "one call",
			parts:     []string{`{"functionCall": {"name": "check_flight", "args": {"flight": "AA100"}}, "thoughtSignature": "` + sigA + `"}`},
			wantCalls: []string{"check_flight signed"},
			wantResp:  `[{"functionResponse": {"name": "check_flight", "response": {"n": 0}}}]`,
		},
		{
			name: "parallel calls, only the first signed",
			parts: []string{
				`{"functionCall": {"name": "get_current_temperature", "args": {"location": "Paris"}}, "thoughtSignature": "` + sigA + `"}`,
				`{"functionCall": {"name": "get_current_temperature", "args": {"location": "London"}}}`,
				`{"functionCall": {"name": "get_time", "args": {}}}`,
			},
			wantCalls: []string{"get_current_temperature signed", "get_current_temperature plain", "get_time plain"},
			wantResp: `[
				{"functionResponse": {"name": "get_current_temperature", "response": {"n": 0}}},
				{"functionResponse": {"name": "get_current_temperature", "response": {"n": 1}}},
				{"functionResponse": {"name": "get_time", "response": {"n": 2}}}
			]`,
		},
		{
			name: "text before a signed call",
			parts: []string{
				`{"text": "Let me check."}`,
				`{"functionCall": {"name": "check_flight", "args": {"flight": "AA100"}}, "thoughtSignature": "CiQB"}`,
			},
			wantCalls: []string{"check_flight signed"},
			wantResp:  `[{"functionResponse": {"name": "check_flight", "response": {"n": 0}}}]`,
		},
		{
			name:      "signature that is not canonical base64",
			parts:     []string{`{"functionCall": {"name": "book_taxi", "args": {"time": "10 AM"}}, "thoughtSignature": "CiQBjw_-x"}`},
			wantCalls: []string{"book_taxi signed"},
			wantResp:  `[{"functionResponse": {"name": "book_taxi", "response": {"n": 0}}}]`,
		},
		{
			name: "no signatures",
			parts: []string{
				`{"functionCall": {"name": "get_current_temperature", "args": {"location": "Paris"}}}`,
				`{"functionCall": {"name": "get_time", "args": {}}}`,
			},
			wantCalls: []string{"get_current_temperature plain", "get_time plain"},
			wantResp: `[
				{"functionResponse": {"name": "get_current_temperature", "response": {"n": 0}}},
				{"functionResponse": {"name": "get_time", "response": {"n": 1}}}
			]`,
		},
	} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tc.name, stream), func(t *testing.T) {
				var turn assistantTurn
				if stream {
					turn = streamedTurn(t, tc.parts)
				} else {
					turn = decodedTurn(t, tc.parts)
				}

				var gotCalls []string
				for _, c := range turn.Calls {
					switch {
					case plainCallID.MatchString(c.ID):
						gotCalls = append(gotCalls, c.Name+" plain")
					case randomCallID.MatchString(c.ID) && callSignature(c.ID) != "":
						gotCalls = append(gotCalls, c.Name+" signed")
					default:
						t.Errorf("tool call id %q is not a call id", c.ID)
					}
				}
				if diff := cmp.Diff(gotCalls, tc.wantCalls); diff != "" {
					t.Errorf("tool calls (-got +want):\n%s", diff)
				}

				got := generic(t, followUp(t, turn))
				want := generic(t, []byte(`{"contents": [
					{"role": "user", "parts": [{"text": "Check it."}]},
					{"role": "model", "parts": [`+strings.Join(tc.parts, ",")+`]},
					{"role": "user", "parts": `+tc.wantResp+`}
				]}`))
				if diff := cmp.Diff(got, want); diff != "" {
					t.Errorf("follow-up request (-got +want):\n%s", diff)
				}
			})
		}
	}
}

// decodedTurn is the message of a generateContent answer with parts.
func decodedTurn(t *testing.T, parts []string) assistantTurn {
	t.Helper()
	body := `{"candidates": [{"content": {"role": "model", "parts": [` + strings.Join(parts, ",") + `]}, "finishReason": "STOP", "index": 0}],
		"usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 10, "totalTokenCount": 30}}`
	res, err := New().Decode(chatCall(t, `{"model": "gpt-4o", "messages": []}`, false), target, []byte(body))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	var resp wire.ChatResponse
	if err := json.Unmarshal(res.Body, &resp); err != nil || len(resp.Choices) != 1 {
		t.Fatalf("answer: %v %s", err, res.Body)
	}
	m := resp.Choices[0].Message
	var out assistantTurn
	if m.Content != nil {
		out.Text = *m.Content
	}
	for _, tc := range m.ToolCalls {
		out.Calls = append(out.Calls, roundTripCall{tc.ID, tc.Function.Name, tc.Function.Arguments})
	}
	return out
}

// streamedTurn is the message of a stream sending one part an event.
func streamedTurn(t *testing.T, parts []string) assistantTurn {
	t.Helper()
	var events []string
	for i, p := range parts {
		finish := ""
		if i == len(parts)-1 {
			finish = `, "finishReason": "STOP"`
		}
		events = append(events, `{"candidates": [{"content": {"role": "model", "parts": [`+p+`]}, "index": 0`+finish+`}]}`)
	}
	chunks, _, _, err := runStream(t, strings.NewReader(sse(events...)))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	summarize(t, chunks, "gpt-4o") // checks the chunks' shape
	var out assistantTurn
	for _, c := range chunks {
		var ch wire.ChatChunk
		if err := json.Unmarshal(c.raw, &ch); err != nil {
			t.Fatalf("chunk: %v", err)
		}
		for _, choice := range ch.Choices {
			if choice.Delta.Content != nil {
				out.Text += *choice.Delta.Content
			}
			for _, tc := range choice.Delta.ToolCalls {
				out.Calls = append(out.Calls, roundTripCall{tc.ID, tc.Function.Name, tc.Function.Arguments})
			}
		}
	}
	return out
}

// followUp is the contents of the request a client makes after running
// the calls of turn: the assistant message as received, then one tool
// result each.
func followUp(t *testing.T, turn assistantTurn) []byte {
	t.Helper()
	type fn struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	}
	type toolCall struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function fn     `json:"function"`
	}
	var content any // null without text
	if turn.Text != "" {
		content = turn.Text
	}
	tcs := []toolCall{}
	for _, c := range turn.Calls {
		tcs = append(tcs, toolCall{c.ID, "function", fn{c.Name, c.Arguments}})
	}
	msgs := []any{
		map[string]any{"role": "user", "content": "Check it."},
		map[string]any{"role": "assistant", "content": content, "tool_calls": tcs},
	}
	for i, c := range turn.Calls {
		msgs = append(msgs, map[string]any{"role": "tool", "tool_call_id": c.ID, "content": fmt.Sprintf(`{"n": %d}`, i)})
	}
	body, err := json.Marshal(map[string]any{"model": "gpt-4o", "messages": msgs})
	if err != nil {
		t.Fatal(err)
	}
	return contentsOf(t, string(body))
}

// contentsOf sends an OpenAI request through NewRequest and returns the
// Gemini body's contents as {"contents": …}.
func contentsOf(t *testing.T, body string) []byte {
	t.Helper()
	req, err := New().NewRequest(context.Background(), target, chatCall(t, body, false))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(requestBody(t, req), &all); err != nil {
		t.Fatalf("request body: %v", err)
	}
	out, _ := json.Marshal(map[string]json.RawMessage{"contents": all["contents"]})
	return out
}

// TestNewRequestPlainIDs checks that ids without a signature, whether
// generated, chosen by the client, or merely looking like signed ones,
// give the same request as before: no thoughtSignature, no error, and the
// tool result matched to its call by the whole id.
func TestNewRequestPlainIDs(t *testing.T) {
	const hex = "0123456789abcdef01234567"
	for _, tc := range []struct {
		name, id string
	}{
		{"generated", callID("")},
		{"client id", "call_w"},
		{"anthropic id", "toolu_01A09q90qw90lq917835lq9"},
		{"uuid", "function-call-1d6a1a61-6f4f-4029-80ce-61586bd86da5"},
		{"hex too short", "call_0123456789abcdef__ts_CiQB"},
		{"upper-case prefix", "CALL_" + hex + "__ts_CiQB"},
		{"empty payload", "call_" + hex + "__ts_"},
		{"unknown tag", "call_" + hex + "__tz_CiQB"},
		{"bad character", "call_" + hex + "__ts_Ci*B"},
		{"padding", "call_" + hex + "__ts_CiQ="},
		{"impossible length", "call_" + hex + "__ts_CiQBj"},
		{"non-zero trailing bits", "call_" + hex + "__ts_CiR"},
		{"text form not UTF-8", "call_" + hex + "__tx__w"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := followUp(t, assistantTurn{Text: "On it.", Calls: []roundTripCall{
				{tc.id, "get_time", `{"zone": "UTC"}`},
				{"call_other", "get_date", ``},
			}})
			want := `{"contents": [
				{"role": "user", "parts": [{"text": "Check it."}]},
				{"role": "model", "parts": [
					{"text": "On it."},
					{"functionCall": {"name": "get_time", "args": {"zone": "UTC"}}},
					{"functionCall": {"name": "get_date", "args": {}}}
				]},
				{"role": "user", "parts": [
					{"functionResponse": {"name": "get_time", "response": {"n": 0}}},
					{"functionResponse": {"name": "get_date", "response": {"n": 1}}}
				]}
			]}`
			if diff := cmp.Diff(generic(t, got), generic(t, []byte(want))); diff != "" {
				t.Errorf("request (-got +want):\n%s", diff)
			}
			if strings.Contains(string(got), "thoughtSignature") {
				t.Errorf("request has a thoughtSignature: %s", got)
			}
		})
	}
}

// TestNewRequestSignedIDMatchesToolResult checks that a tool result is
// matched by the whole signed id: another signature on the same digits is
// another call.
func TestNewRequestSignedIDMatchesToolResult(t *testing.T) {
	const hex = "0123456789abcdef01234567"
	body := `{"model": "m", "messages": [
		{"role": "user", "content": "hi"},
		{"role": "assistant", "tool_calls": [{"id": "call_` + hex + `__ts_CiQB", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
		{"role": "tool", "tool_call_id": "call_` + hex + `__ts_CiQC", "content": "x"}
	]}`
	_, err := New().NewRequest(context.Background(), target, chatCall(t, body, false))
	if want := "matches no tool call"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("NewRequest: got error %v, want one containing %q", err, want)
	}
}
