package secret

import "testing"

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://app:hunter2@db:5432/tg?sslmode=disable", "postgres://app:xxxxx@db:5432/tg?sslmode=disable"},
		{"postgresql://app@db/tg", "postgresql://app@db/tg"},
		{"postgres://db/tg?user=app&password=hunter2", "postgres://db/tg?password=xxxxx&user=app"},
		{"postgress://user:hunter2@db/tg", "postgress://user:xxxxx@db/tg"},
		{"mysql://root:hunter2@tcp(db:3306)/tg", "mysql://(an unparseable URL, not shown)"},
		{"redis://:hunter2@127.0.0.1:6379/0", "redis://:xxxxx@127.0.0.1:6379/0"},
		{"rediss://default:hunter2@cache:6380", "rediss://default:xxxxx@cache:6380"},
		{"https://user:hunter2@idp.example/realms/x", "https://user:xxxxx@idp.example/realms/x"},
		{"http://proxy:hunter2@10.0.0.1:3128", "http://proxy:xxxxx@10.0.0.1:3128"},
		{"socks5://u:hunter2@proxy:1080", "socks5://u:xxxxx@proxy:1080"},
		{"https://idp.example/?client_secret=hunter2&x=1", "https://idp.example/?client_secret=xxxxx&x=1"},
		{"postgres://app:hun ter2%zz@db/tg", "postgres://(an unparseable URL, not shown)"},
		{"host=db password=hunter2", "(an unparseable URL, not shown)"},
		{"sqlite:data/tg.db", "sqlite:data/tg.db"},
		{"mailto:user:hunter2@example.com", "mailto:xxxxx@example.com"},
	} {
		got := RedactURL(tc.in)
		if got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
