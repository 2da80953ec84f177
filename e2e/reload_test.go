package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestReloadKeepsParticipant: a page reload resumes the same participant at
// once (resume token in sessionStorage): no "name taken", the others see no
// LEFT/JOINED, and its video comes back.
func TestReloadKeepsParticipant(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("reload%d", time.Now().UnixNano()%100000)
	a := openPage(t, "a", fmt.Sprintf("%s/?room=%s&name=a", srv.URL(), room))
	b := openPage(t, "b", fmt.Sprintf("%s/?room=%s&name=b", srv.URL(), room))
	a.waitDecoding("b", "camera", true)
	b.waitDecoding("a", "camera", true)

	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	b.waitFor("status ESTABLISHED after the reload", func() (bool, string) {
		s := b.text("#status")
		return s == "ESTABLISHED", s + " " + b.text("#error")
	})
	b.waitDecoding("a", "camera", true)
	// a decodes the reloaded page's new camera stream.
	a.waitFor("b's new stream", func() (bool, string) {
		tm, ok := find(a.tiles(), "b", "camera")
		return ok && tm.Frames > 0, fmt.Sprintf("%+v", tm)
	})
	a.waitDecoding("b", "camera", true)
	var lines []string
	if err := a.eval(`[...document.querySelectorAll('#chatLog .chat-line')].map(e => e.textContent)`, &lines); err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if strings.Contains(l, "b - left") || strings.Count(strings.Join(lines, "\n"), "b - joined") > 1 {
			t.Errorf("the reload showed as leave/join on the other page: %q", lines)
			break
		}
	}
	if e := b.text("#error"); e != "" {
		t.Errorf("the reloaded page shows an error: %s", e)
	}
}
