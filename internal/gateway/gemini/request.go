package gemini

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// generateRequest is Gemini's GenerateContentRequest.
type generateRequest struct {
	Contents          []content         `json:"contents"`
	SystemInstruction *content          `json:"systemInstruction,omitempty"`
	Tools             []tool            `json:"tools,omitempty"`
	ToolConfig        *toolConfig       `json:"toolConfig,omitempty"`
	GenerationConfig  *generationConfig `json:"generationConfig,omitempty"`
}

// content is one turn: role user or model, and its parts.
type content struct {
	Role  string `json:"role,omitempty"`
	Parts []part `json:"parts"`
}

// part is one Gemini Part; exactly one of its data fields is set.
// ThoughtSignature sits beside the data (on functionCall parts, the one
// that matters; see signature.go).
type part struct {
	Text             string            `json:"text,omitempty"`
	Thought          bool              `json:"thought,omitempty"`
	InlineData       *blob             `json:"inlineData,omitempty"`
	FileData         *fileData         `json:"fileData,omitempty"`
	FunctionCall     *functionCall     `json:"functionCall,omitempty"`
	FunctionResponse *functionResponse `json:"functionResponse,omitempty"`
	ThoughtSignature string            `json:"thoughtSignature,omitempty"`
}

type blob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"` // base64
}

type fileData struct {
	MimeType string `json:"mimeType,omitempty"`
	FileURI  string `json:"fileUri"`
}

type functionCall struct {
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

type functionResponse struct {
	Name     string          `json:"name"`
	Response json.RawMessage `json:"response"`
}

type tool struct {
	FunctionDeclarations []functionDeclaration `json:"functionDeclarations"`
}

type functionDeclaration struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

type toolConfig struct {
	FunctionCallingConfig functionCallingConfig `json:"functionCallingConfig"`
}

type functionCallingConfig struct {
	Mode                 string   `json:"mode"` // AUTO | ANY | NONE
	AllowedFunctionNames []string `json:"allowedFunctionNames,omitempty"`
}

type generationConfig struct {
	Temperature      *float64        `json:"temperature,omitempty"`
	TopP             *float64        `json:"topP,omitempty"`
	MaxOutputTokens  *int64          `json:"maxOutputTokens,omitempty"`
	StopSequences    []string        `json:"stopSequences,omitempty"`
	CandidateCount   *int            `json:"candidateCount,omitempty"`
	PresencePenalty  *float64        `json:"presencePenalty,omitempty"`
	FrequencyPenalty *float64        `json:"frequencyPenalty,omitempty"`
	Seed             *int64          `json:"seed,omitempty"`
	ResponseMimeType string          `json:"responseMimeType,omitempty"`
	ResponseSchema   json.RawMessage `json:"responseSchema,omitempty"`
}

func (g *generationConfig) empty() bool {
	return g.Temperature == nil && g.TopP == nil && g.MaxOutputTokens == nil && len(g.StopSequences) == 0 &&
		g.CandidateCount == nil && g.PresencePenalty == nil && g.FrequencyPenalty == nil && g.Seed == nil &&
		g.ResponseMimeType == "" && len(g.ResponseSchema) == 0
}

// add appends parts as a turn of role, merged into the previous turn when
// that has the same role (Gemini wants user and model turns to alternate).
func (r *generateRequest) add(role string, parts []part) {
	if len(parts) == 0 {
		return
	}
	if n := len(r.Contents); n > 0 && r.Contents[n-1].Role == role {
		r.Contents[n-1].Parts = append(r.Contents[n-1].Parts, parts...)
		return
	}
	r.Contents = append(r.Contents, content{Role: role, Parts: parts})
}

// chatBody translates an OpenAI chat request into a GenerateContentRequest.
func chatBody(r *wire.ChatRequest) (*generateRequest, error) {
	out := &generateRequest{Contents: []content{}}
	var system []string
	callNames := map[string]string{} // tool_call_id → function name
	for i := range r.Messages {
		m := &r.Messages[i]
		where := fmt.Sprintf("messages[%d]", i)
		ps, err := m.Parts()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		switch m.Role {
		case "system", "developer":
			text, err := textOnly(where, m.Role, ps)
			if err != nil {
				return nil, err
			}
			if text != "" {
				system = append(system, text)
			}
		case "user":
			parts, err := contentParts(where, ps)
			if err != nil {
				return nil, err
			}
			out.add("user", parts)
		case "assistant":
			parts, err := contentParts(where, ps)
			if err != nil {
				return nil, err
			}
			for j, tc := range m.ToolCalls {
				if tc.Function.Name == "" {
					return nil, fmt.Errorf("%s.tool_calls[%d]: the function name is missing", where, j)
				}
				if tc.ID != "" {
					callNames[tc.ID] = tc.Function.Name
				}
				parts = append(parts, part{
					FunctionCall:     &functionCall{Name: tc.Function.Name, Args: argsObject(tc.Function.Arguments)},
					ThoughtSignature: callSignature(tc.ID), // back on the part it came with
				})
			}
			out.add("model", parts)
		case "tool", "function":
			name := m.Name
			if m.Role == "tool" {
				if n, ok := callNames[m.ToolCallID]; ok {
					name = n
				}
			}
			if name == "" {
				return nil, fmt.Errorf("%s: tool_call_id %q matches no tool call of an earlier assistant message", where, m.ToolCallID)
			}
			text, err := textOnly(where, m.Role, ps)
			if err != nil {
				return nil, err
			}
			out.add("user", []part{{FunctionResponse: &functionResponse{Name: name, Response: responseObject(text)}}})
		default:
			return nil, fmt.Errorf("%s: role %q is not supported", where, m.Role)
		}
	}
	if len(out.Contents) == 0 {
		return nil, errors.New("messages must contain at least one non-empty user, assistant or tool message besides system messages")
	}
	if len(system) > 0 {
		out.SystemInstruction = &content{Parts: []part{{Text: strings.Join(system, "\n\n")}}}
	}

	gc := &generationConfig{
		Temperature:      r.Temperature,
		TopP:             r.TopP,
		StopSequences:    r.StopList(),
		CandidateCount:   r.N,
		PresencePenalty:  r.PresencePenalty,
		FrequencyPenalty: r.FrequencyPenalty,
		Seed:             r.Seed,
	}
	if n := r.MaxOutput(); n > 0 {
		gc.MaxOutputTokens = &n
	}
	if err := responseFormat(r.ResponseFormat, gc); err != nil {
		return nil, err
	}
	if !gc.empty() {
		out.GenerationConfig = gc
	}

	if len(r.Tools) > 0 {
		decls := make([]functionDeclaration, 0, len(r.Tools))
		for i, t := range r.Tools {
			if t.Type != "" && t.Type != "function" {
				return nil, fmt.Errorf("tools[%d]: tool type %q is not supported by Gemini (only function tools are)", i, t.Type)
			}
			if t.Function.Name == "" {
				return nil, fmt.Errorf("tools[%d]: the function name is missing", i)
			}
			d := functionDeclaration{Name: t.Function.Name, Description: t.Function.Description}
			if p := bytes.TrimSpace(t.Function.Parameters); len(p) > 0 && string(p) != "null" {
				d.Parameters = p
			}
			decls = append(decls, d)
		}
		out.Tools = []tool{{FunctionDeclarations: decls}}
	}
	tc, err := toolChoice(r.ToolChoice)
	if err != nil {
		return nil, err
	}
	out.ToolConfig = tc
	return out, nil
}

// textOnly joins the text parts of a message that may carry nothing else.
func textOnly(where, role string, ps []wire.ContentPart) (string, error) {
	var b strings.Builder
	for j, p := range ps {
		if p.Type != "text" {
			return "", fmt.Errorf("%s.content[%d]: %s messages may only contain text parts, not %q", where, j, role, p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// contentParts translates text and image parts.
func contentParts(where string, ps []wire.ContentPart) ([]part, error) {
	var out []part
	for j, p := range ps {
		switch p.Type {
		case "text":
			if p.Text != "" {
				out = append(out, part{Text: p.Text})
			}
		case "image_url":
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return nil, fmt.Errorf("%s.content[%d]: image_url.url is missing", where, j)
			}
			ip, err := imagePart(p.ImageURL.URL)
			if err != nil {
				return nil, fmt.Errorf("%s.content[%d]: %w", where, j, err)
			}
			out = append(out, ip)
		default:
			return nil, fmt.Errorf("%s.content[%d]: content part type %q is not supported by Gemini", where, j, p.Type)
		}
	}
	return out, nil
}

// imagePart turns a data: URL into inline data and an http(s) URL into
// file data.
func imagePart(u string) (part, error) {
	if len(u) >= 5 && strings.EqualFold(u[:5], "data:") {
		meta, data, ok := strings.Cut(u[5:], ",")
		if !ok {
			return part{}, errors.New("malformed data: URL in image_url")
		}
		mt, b64 := strings.CutSuffix(meta, ";base64")
		if i := strings.IndexByte(mt, ';'); i >= 0 {
			mt = mt[:i]
		}
		if mt == "" {
			return part{}, errors.New("the data: URL in image_url has no media type")
		}
		if !b64 {
			raw, err := url.PathUnescape(data)
			if err != nil {
				return part{}, errors.New("malformed data: URL in image_url")
			}
			data = base64.StdEncoding.EncodeToString([]byte(raw))
		}
		return part{InlineData: &blob{MimeType: strings.ToLower(mt), Data: data}}, nil
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return part{}, errors.New("image_url must be an http(s) URL or a data: URL")
	}
	return part{FileData: &fileData{MimeType: imageType(pu.Path), FileURI: u}}, nil
}

// imageType guesses an image's media type from its file extension.
func imageType(p string) string {
	switch strings.ToLower(path.Ext(p)) {
	case ".png":
		return "image/png"
	case ".gif":
		return "image/gif"
	case ".webp":
		return "image/webp"
	case ".heic":
		return "image/heic"
	case ".heif":
		return "image/heif"
	}
	return "image/jpeg"
}

// argsObject is a tool call's arguments as a JSON object, {} when they are
// empty or not an object.
func argsObject(args string) json.RawMessage {
	var b bytes.Buffer
	if s := strings.TrimSpace(args); strings.HasPrefix(s, "{") && json.Compact(&b, []byte(s)) == nil {
		return b.Bytes()
	}
	return json.RawMessage("{}")
}

// responseObject is a tool result as Gemini's response object: the result
// itself when it is a JSON object, else {"content": result}.
func responseObject(text string) json.RawMessage {
	var b bytes.Buffer
	if s := strings.TrimSpace(text); strings.HasPrefix(s, "{") && json.Compact(&b, []byte(s)) == nil {
		return b.Bytes()
	}
	raw, _ := marshal(map[string]string{"content": text})
	return raw
}

// responseFormat sets the JSON output mode of response_format.
func responseFormat(raw json.RawMessage, gc *generationConfig) error {
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var rf struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(raw, &rf); err != nil {
		return errors.New(`response_format must be an object like {"type":"json_object"}`)
	}
	switch rf.Type {
	case "", "text":
	case "json_object":
		gc.ResponseMimeType = "application/json"
	case "json_schema":
		gc.ResponseMimeType = "application/json"
		if rf.JSONSchema != nil {
			if s := bytes.TrimSpace(rf.JSONSchema.Schema); len(s) > 0 && string(s) != "null" {
				gc.ResponseSchema = s
			}
		}
	default:
		return fmt.Errorf("response_format type %q is not supported by Gemini", rf.Type)
	}
	return nil
}

// toolChoice translates tool_choice into Gemini's function calling mode.
func toolChoice(raw json.RawMessage) (*toolConfig, error) {
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	mode := func(m string, names ...string) *toolConfig {
		return &toolConfig{FunctionCallingConfig: functionCallingConfig{Mode: m, AllowedFunctionNames: names}}
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "auto":
			return mode("AUTO"), nil
		case "none":
			return mode("NONE"), nil
		case "required":
			return mode("ANY"), nil
		}
		return nil, fmt.Errorf("tool_choice %q is not supported (use auto, none, required or a named function)", s)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(raw, &named) != nil || (named.Type != "" && named.Type != "function") || named.Function.Name == "" {
		return nil, errors.New(`tool_choice must be "auto", "none", "required" or {"type":"function","function":{"name":…}}`)
	}
	return mode("ANY", named.Function.Name), nil
}

// batchEmbedRequest is Gemini's BatchEmbedContentsRequest.
type batchEmbedRequest struct {
	Requests []embedRequest `json:"requests"`
}

type embedRequest struct {
	Model                string  `json:"model"`
	Content              content `json:"content"`
	OutputDimensionality *int    `json:"outputDimensionality,omitempty"`
}

// embedBody translates an OpenAI embeddings request, one Gemini request per
// input.
func embedBody(model string, e *wire.EmbeddingRequest) (*batchEmbedRequest, error) {
	switch e.EncodingFormat {
	case "", "float":
	case "base64":
		return nil, errors.New(`encoding_format "base64" is not supported for Gemini embedding models; use "float"`)
	default:
		return nil, fmt.Errorf("encoding_format %q is not supported; use \"float\"", e.EncodingFormat)
	}
	in, ok := e.Inputs()
	if !ok {
		return nil, errors.New("token arrays are not supported by Gemini embedding models")
	}
	if len(in) == 0 {
		return nil, errors.New("input must not be empty")
	}
	out := &batchEmbedRequest{Requests: make([]embedRequest, 0, len(in))}
	for i, s := range in {
		if s == "" {
			return nil, fmt.Errorf("input[%d] must not be an empty string", i)
		}
		out.Requests = append(out.Requests, embedRequest{
			Model:                "models/" + model,
			Content:              content{Parts: []part{{Text: s}}},
			OutputDimensionality: e.Dimensions,
		})
	}
	return out, nil
}
