package store

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"
)

// JSON is a raw JSON column: TEXT on SQLite, jsonb on PostgreSQL.
type JSON json.RawMessage

// Value stores the JSON as text (NULL when empty).
func (j JSON) Value() (driver.Value, error) {
	if len(j) == 0 {
		return nil, nil
	}
	return string(j), nil
}

// Scan reads text or bytes.
func (j *JSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case string:
		*j = JSON(v)
	case []byte:
		*j = append(JSON(nil), v...)
	default:
		return fmt.Errorf("store.JSON: cannot scan %T", src)
	}
	return nil
}

// MarshalJSON writes the raw JSON (null when empty).
func (j JSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return j, nil
}

// UnmarshalJSON keeps the raw JSON.
func (j *JSON) UnmarshalJSON(b []byte) error {
	*j = append((*j)[:0], b...)
	return nil
}

// MustJSON marshals v for a JSON column; v must be marshalable.
func MustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TimeOrNull is t for a JSON answer: nil (null) when t was never set, so no
// answer shows the zero time 0001-01-01T00:00:00Z.
func TimeOrNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
