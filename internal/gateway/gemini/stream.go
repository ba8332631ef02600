package gemini

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// Stream reads a streamGenerateContent?alt=sse body, whose every event is a
// GenerateContentResponse holding the new parts, and emits OpenAI chunks as
// the events arrive. The usage-only chunk closes the stream when upstream
// reported usage (ok); otherwise the gateway counts for itself. A stream
// cut short, even in the middle of an event, ends without an error.
func (*Provider) Stream(c *wire.Call, _ *wire.Target, body io.Reader, emit wire.Emit) (wire.Usage, bool, error) {
	s := &streamer{model: c.Model, created: time.Now().Unix(), emit: emit, choices: map[int]*streamChoice{}}
	if err := wire.ReadSSE(body, s.event); err != nil {
		return s.usage, s.ok, err
	}
	if !s.ok {
		return s.usage, false, nil
	}
	if err := s.send(s.chunk(nil, s.usage.Object()), true); err != nil {
		return s.usage, true, err
	}
	return s.usage, true, nil
}

type streamer struct {
	model   string
	created int64
	id      string
	emit    wire.Emit
	choices map[int]*streamChoice
	usage   wire.Usage // from the last usageMetadata with counts
	ok      bool       // upstream reported final usage

	// malformed is an event whose data did not parse. It is an error once
	// another event follows; as the last one, it is the tail of a stream
	// cut short (ReadSSE delivers an unterminated last event).
	malformed error
}

// streamChoice is what was emitted for one candidate.
type streamChoice struct {
	finished bool
	calls    int // tool calls emitted, the next one's index
}

func (s *streamer) event(_ string, data []byte) error {
	if s.malformed != nil {
		return s.malformed
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "[DONE]" {
		return nil
	}
	var r generateResponse
	if err := json.Unmarshal(data, &r); err != nil {
		if e := parseError(data); e != nil {
			return e
		}
		s.malformed = fmt.Errorf("gemini: malformed stream event: %w", err)
		return nil
	}
	if r.Error != nil {
		return r.Error
	}
	if s.id == "" {
		s.id = chatID(r.ResponseID)
	}
	counted := r.UsageMetadata.counted()
	if counted {
		s.usage = r.UsageMetadata.usage()
		if r.UsageMetadata.CandidatesTokenCount != nil {
			s.ok = true
		}
	}
	finished := false
	for pos := range r.Candidates {
		cand := &r.Candidates[pos]
		idx := cand.index(pos)
		ch, err := s.choice(idx)
		if err != nil {
			return err
		}
		if cand.Content != nil {
			for _, p := range cand.Content.Parts {
				switch {
				case p.Thought:
				case p.FunctionCall != nil:
					tc := toolCall(p.FunctionCall, p.ThoughtSignature)
					n := ch.calls
					tc.Index = &n
					ch.calls++
					if err := s.delta(idx, wire.Delta{ToolCalls: []wire.ToolCall{tc}}, nil); err != nil {
						return err
					}
				case p.Text != "":
					text := p.Text
					if err := s.delta(idx, wire.Delta{Content: &text}, nil); err != nil {
						return err
					}
				}
			}
		}
		if cand.FinishReason != "" && !ch.finished {
			ch.finished, finished = true, true
			reason := finishReason(cand.FinishReason, ch.calls > 0)
			if err := s.delta(idx, wire.Delta{}, &reason); err != nil {
				return err
			}
		}
	}
	if len(r.Candidates) == 0 && r.PromptFeedback != nil && r.PromptFeedback.BlockReason != "" {
		ch, err := s.choice(0)
		if err != nil {
			return err
		}
		if !ch.finished {
			ch.finished, finished = true, true
			reason := "content_filter"
			if err := s.delta(0, wire.Delta{}, &reason); err != nil {
				return err
			}
		}
	}
	if finished && counted {
		s.ok = true
	}
	return nil
}

// choice returns the state of candidate idx, emitting its opening chunk
// (role assistant, empty content) the first time.
func (s *streamer) choice(idx int) (*streamChoice, error) {
	if ch, ok := s.choices[idx]; ok {
		return ch, nil
	}
	ch := &streamChoice{}
	s.choices[idx] = ch
	empty := ""
	return ch, s.delta(idx, wire.Delta{Role: "assistant", Content: &empty}, nil)
}

func (s *streamer) delta(idx int, d wire.Delta, finish *string) error {
	return s.send(s.chunk([]wire.ChunkChoice{{Index: idx, Delta: d, FinishReason: finish}}, nil), false)
}

func (s *streamer) chunk(choices []wire.ChunkChoice, u *wire.UsageObject) *wire.ChatChunk {
	if choices == nil {
		choices = []wire.ChunkChoice{}
	}
	if s.id == "" {
		s.id = chatID("")
	}
	return &wire.ChatChunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model, Choices: choices, Usage: u}
}

func (s *streamer) send(ch *wire.ChatChunk, usageOnly bool) error {
	b, err := json.Marshal(ch)
	if err != nil {
		return fmt.Errorf("gemini: encoding a chunk: %w", err)
	}
	return s.emit(b, usageOnly)
}
