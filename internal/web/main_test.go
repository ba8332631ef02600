package web

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain quiets the in-process identity provider, which logs every request
// through the default logger.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}
