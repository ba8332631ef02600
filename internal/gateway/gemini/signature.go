package gemini

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// Thinking models (Gemini 3, Gemini 2.5 with thinking) put a
// thoughtSignature beside the functionCall of a response part, and Gemini 3
// rejects a later request whose history replays that call without it
// ("Function call is missing a thought_signature"). OpenAI's wire format
// has no field for it, but clients echo a tool call's id verbatim (in the
// assistant message's tool_calls[].id and in the tool message's
// tool_call_id), so the signature travels inside the id:
//
//	call_<24 hex digits>__ts_<the signature's bytes, base64url without padding>
//	call_<24 hex digits>__tx_<the signature string itself, base64url without padding>
//
// The first form is the usual one (a signature is standard base64 and
// re-encoding its bytes gives it back); the second keeps any other string
// exactly. Either way the id is a single token of [A-Za-z0-9_-], accepted
// wherever tool call ids are (Anthropic's tool_use ids, for one). An id
// without a signature stays call_<24 hex digits>.
//
// Of parallel calls only the first functionCall part carries a signature,
// and it must go back on that same part: each call's signature rides in its
// own id, so the others' ids stay plain and their parts get none.
const (
	callPrefix = "call_"
	callHexLen = 24      // the digits of randomHex
	sigBytes   = "__ts_" // followed by the decoded signature
	sigText    = "__tx_" // followed by the signature string
)

var rawURL = base64.RawURLEncoding.Strict()

// callID is a new tool call id carrying signature ("" for none).
func callID(signature string) string {
	id := callPrefix + randomHex()
	if signature == "" {
		return id
	}
	if b, err := base64.StdEncoding.Strict().DecodeString(signature); err == nil && len(b) > 0 &&
		base64.StdEncoding.EncodeToString(b) == signature {
		return id + sigBytes + rawURL.EncodeToString(b)
	}
	return id + sigText + rawURL.EncodeToString([]byte(signature))
}

// callSignature is the thought signature an id made by callID carries, ""
// for any other id: only the exact form callID produces is read, so ids
// that merely look alike are plain ids.
func callSignature(id string) string {
	rest, ok := strings.CutPrefix(id, callPrefix)
	if !ok || len(rest) <= callHexLen+len(sigBytes) || !lowerHex(rest[:callHexLen]) {
		return ""
	}
	tag, payload := rest[callHexLen:callHexLen+len(sigBytes)], rest[callHexLen+len(sigBytes):]
	b, err := rawURL.DecodeString(payload)
	// The decoder skips line breaks; re-encoding admits only the canonical
	// payload.
	if err != nil || len(b) == 0 || rawURL.EncodeToString(b) != payload {
		return ""
	}
	switch tag {
	case sigBytes:
		return base64.StdEncoding.EncodeToString(b)
	case sigText:
		if utf8.Valid(b) { // a signature read from JSON is valid UTF-8
			return string(b)
		}
	}
	return ""
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
