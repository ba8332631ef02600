package anthropic

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// event is one streamed Messages API event; the fields of the other
// event types stay empty.
type event struct {
	Type         string         `json:"type"`
	Message      *response      `json:"message"`       // message_start
	Index        int            `json:"index"`         // content_block_*
	ContentBlock *responseBlock `json:"content_block"` // content_block_start
	Delta        *eventDelta    `json:"delta"`         // content_block_delta, message_delta
	Usage        *usage         `json:"usage"`         // message_delta (cumulative)
	Error        *apiError      `json:"error"`         // error
}

type eventDelta struct {
	Type        string `json:"type"` // text_delta | input_json_delta | thinking_delta | …
	Text        string `json:"text"`
	PartialJSON string `json:"partial_json"`
	StopReason  string `json:"stop_reason"` // message_delta
}

// knownEvents are the event names whose data must parse.
var knownEvents = map[string]bool{
	"message_start": true, "content_block_start": true, "content_block_delta": true,
	"content_block_stop": true, "message_delta": true, "message_stop": true, "error": true,
}

// errStop ends reading at message_stop.
var errStop = errors.New("message_stop")

// streamer turns one Messages stream into OpenAI chunks.
type streamer struct {
	c       *wire.Call
	emit    wire.Emit
	id      string
	created int64
	started bool // the role chunk went out
	ended   bool // the finish chunk went out

	input, cacheRead, cacheCreation, output int64
	sawUsage                                bool // message_delta carried usage
	finish                                  string
	tools                                   map[int]int // content block index → tool call index

	// malformed is a known event whose data did not parse. It is an error
	// once another event follows; as the last one, it is the tail of a
	// stream cut short (ReadSSE delivers an unterminated last event).
	malformed error
}

// Stream reads an Anthropic event stream and emits OpenAI chunks as the
// events arrive. ok is true once message_delta reported the final usage,
// even when emit then failed (the usage is still what was consumed).
func (*Provider) Stream(c *wire.Call, t *wire.Target, body io.Reader, emit wire.Emit) (wire.Usage, bool, error) {
	s := &streamer{c: c, emit: emit, created: now().Unix(), tools: map[int]int{}}
	err := wire.ReadSSE(body, s.event)
	if err == nil && s.sawUsage {
		// Cut after message_delta: the answer is complete but for message_stop.
		err = s.end()
	}
	if err == errStop {
		err = nil
	}
	return s.usage(), s.sawUsage, err
}

func (s *streamer) usage() wire.Usage {
	return wire.Usage{
		PromptTokens:     s.input + s.cacheRead + s.cacheCreation,
		CachedTokens:     s.cacheRead,
		CompletionTokens: s.output,
	}
}

// takeInput records the input counts u carries (message_start has them
// all; a message_delta may repeat them, cumulatively, or leave them out).
func (s *streamer) takeInput(u *usage) {
	for _, f := range []struct {
		from *int64
		to   *int64
	}{{u.InputTokens, &s.input}, {u.CacheReadInputTokens, &s.cacheRead}, {u.CacheCreationInputTokens, &s.cacheCreation}} {
		if f.from != nil && *f.from > 0 {
			*f.to = *f.from
		}
	}
}

func (s *streamer) event(name string, data []byte) error {
	if s.malformed != nil {
		return s.malformed
	}
	var ev event
	if err := json.Unmarshal(data, &ev); err != nil {
		if knownEvents[name] {
			s.malformed = fmt.Errorf("malformed Anthropic %s event: %w", name, err)
		}
		return nil // else an event this adapter does not know: ignored
	}
	typ := ev.Type
	if typ == "" {
		typ = name
	}
	switch typ {
	case "message_start":
		if m := ev.Message; m != nil {
			s.id = m.ID
			if m.Usage != nil {
				s.takeInput(m.Usage)
				s.output = m.Usage.OutputTokens
			}
		}
		return s.start()
	case "content_block_start":
		cb := ev.ContentBlock
		if cb == nil {
			return nil
		}
		switch cb.Type {
		case "tool_use":
			k := len(s.tools)
			s.tools[ev.Index] = k
			return s.delta(wire.Delta{ToolCalls: []wire.ToolCall{{
				Index:    &k,
				ID:       cb.ID,
				Type:     "function",
				Function: wire.FunctionCall{Name: cb.Name, Arguments: ""},
			}}})
		case "text":
			if cb.Text != "" {
				return s.text(cb.Text)
			}
		}
	case "content_block_delta":
		d := ev.Delta
		if d == nil {
			return nil
		}
		switch d.Type {
		case "text_delta":
			if d.Text != "" {
				return s.text(d.Text)
			}
		case "input_json_delta":
			// Only client tools: a server_tool_use block has no index here.
			if k, ok := s.tools[ev.Index]; ok && d.PartialJSON != "" {
				return s.delta(wire.Delta{ToolCalls: []wire.ToolCall{{
					Index:    &k,
					Function: wire.FunctionCall{Arguments: d.PartialJSON},
				}}})
			}
		}
	case "message_delta":
		if ev.Delta != nil && ev.Delta.StopReason != "" {
			s.finish = finishReason(ev.Delta.StopReason)
		}
		if ev.Usage != nil {
			s.sawUsage = true
			s.takeInput(ev.Usage)
			s.output = ev.Usage.OutputTokens
		}
	case "message_stop":
		if err := s.end(); err != nil {
			return err
		}
		return errStop
	case "error":
		e := &upstreamError{}
		if ev.Error != nil {
			e.typ, e.msg = ev.Error.Type, ev.Error.Message
		}
		return e
	}
	return nil // content_block_stop, ping, and what is not known
}

// send emits one chunk.
func (s *streamer) send(choices []wire.ChunkChoice, u *wire.UsageObject, usageOnly bool) error {
	b, err := json.Marshal(wire.ChatChunk{
		ID:      "chatcmpl-" + s.id,
		Object:  "chat.completion.chunk",
		Created: s.created,
		Model:   s.c.Model,
		Choices: choices,
		Usage:   u,
	})
	if err != nil {
		return fmt.Errorf("encoding a chunk: %w", err)
	}
	return s.emit(b, usageOnly)
}

// start emits the role chunk, once.
func (s *streamer) start() error {
	if s.started {
		return nil
	}
	s.started = true
	empty := ""
	return s.send([]wire.ChunkChoice{{Delta: wire.Delta{Role: "assistant", Content: &empty}}}, nil, false)
}

func (s *streamer) delta(d wire.Delta) error {
	if err := s.start(); err != nil {
		return err
	}
	return s.send([]wire.ChunkChoice{{Delta: d}}, nil, false)
}

func (s *streamer) text(t string) error {
	return s.delta(wire.Delta{Content: &t})
}

// end emits the finish chunk and, when upstream reported usage, the
// usage-only chunk, once.
func (s *streamer) end() error {
	if s.ended {
		return nil
	}
	s.ended = true
	if err := s.start(); err != nil {
		return err
	}
	finish := s.finish
	if finish == "" {
		finish = "stop"
	}
	if err := s.send([]wire.ChunkChoice{{Delta: wire.Delta{}, FinishReason: &finish}}, nil, false); err != nil {
		return err
	}
	if !s.sawUsage {
		return nil
	}
	return s.send([]wire.ChunkChoice{}, s.usage().Object(), true)
}
