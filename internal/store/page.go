package store

import (
	"encoding/base64"
	"strconv"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/errs"
)

// Page is a keyset page request over time-ordered (UUIDv7) ids, newest first.
type Page struct {
	Limit int
	After string // id of the last item of the previous page
}

// Page limits.
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// ParsePage reads ?limit= and ?cursor=, refusing bad values with a 400.
func ParsePage(limit, cursor string) (Page, error) {
	p := Page{Limit: DefaultPageLimit}
	f := errs.Fields{}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > MaxPageLimit {
			f.Add("limit", "must be a whole number from 1 to 100")
		} else {
			p.Limit = n
		}
	}
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !ValidID(string(raw)) {
			f.Add("cursor", "is not a cursor this API returned; start again without it")
		} else {
			p.After = string(raw)
		}
	}
	return p, f.Err()
}

// Apply adds the keyset condition, order and limit (one extra row, to know
// whether another page follows) on the id column col.
func (p Page) Apply(q *gorm.DB, col string) *gorm.DB {
	if p.After != "" {
		q = q.Where(col+" < ?", p.After)
	}
	return q.Order(col + " DESC").Limit(p.Limit + 1)
}

// Trim cuts the extra row Apply fetched and returns the cursor for the next
// page, or nil when this is the last page.
func Trim[T any](items []T, p Page, id func(T) string) ([]T, *string) {
	if len(items) <= p.Limit {
		return items, nil
	}
	items = items[:p.Limit]
	c := base64.RawURLEncoding.EncodeToString([]byte(id(items[len(items)-1])))
	return items, &c
}
