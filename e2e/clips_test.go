package e2e

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/clips"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// pageClips is what a page's media-message panel shows and has played.
type pageClips struct {
	Rows []struct {
		ID     string `json:"id"`
		Author string `json:"author"`
		Own    bool   `json:"own"`
		Delete bool   `json:"delete"`
		Text   string `json:"text"`
		Kind   string `json:"kind"`
	} `json:"rows"`
	Current   string   `json:"current"`
	Preview   bool     `json:"preview"`
	Hint      bool     `json:"hint"`
	Played    []string `json:"played"`
	Recording bool     `json:"recording"`
	Attached  bool     `json:"attached"`
	Status    string   `json:"status"`
	Error     string   `json:"error"`
}

const readClips = `(() => {
  const c = window.parley && window.parley.clips;
  if (!c) return {rows: [], played: [], attached: false};
  const err = document.getElementById('error');
  return {
    rows: [...document.querySelectorAll('#clips .clip')].map(li => ({id: li.dataset.clip,
      author: li.querySelector('.clip-author').textContent, own: li.classList.contains('own'),
      delete: !!li.querySelector('.clip-delete'), text: li.innerText, kind: li.dataset.kind})),
    current: c.current ? c.current.id() : '', preview: !c.previewBox.hidden, hint: !c.hint.hidden,
    played: c.played.slice(), recording: !!c.recording, attached: !!c.access, status: c.status.textContent,
    error: err && !err.hidden ? err.textContent : '',
  };
})()`

func (p *page) clips() pageClips {
	var out pageClips
	if err := p.eval(readClips, &out); err != nil {
		p.t.Logf("%s: reading clips: %v", p.name, err)
	}
	return out
}

func (p *page) waitClips(what string, cond func(pageClips) bool) pageClips {
	p.t.Helper()
	var last pageClips
	p.waitFor(what, func() (bool, string) {
		last = p.clips()
		return cond(last), fmt.Sprintf("%+v", last)
	})
	return last
}

// key presses (down) or releases the spacebar in the page.
func (p *page) space(down bool) {
	p.t.Helper()
	typ := input.DispatchKeyEventTypeKeyUp
	if down {
		typ = input.DispatchKeyEventTypeKeyDown
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, input.DispatchKeyEvent, input.DispatchKeyEventParams{Type: typ, Key: " ", Code: "Space",
			WindowsVirtualKeyCode: 32})
		return err
	})); err != nil {
		p.t.Fatalf("%s: space: %v", p.name, err)
	}
}

// open navigates the page to url (a fresh page load: a new session).
func (p *page) open(url string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		p.t.Fatalf("%s: open %s: %v", p.name, url, err)
	}
}

// clipDurations are the durations (s) the server probed of the room's clips, oldest first.
func (p *page) clipDurations() []float64 {
	p.t.Helper()
	var d []float64
	if err := p.eval(`window.parley.room.getClips().then(l => l.map(c => c.durationMs() / 1000))`, &d); err != nil {
		p.t.Fatalf("%s: getClips: %v", p.name, err)
	}
	return d
}

// TestClipsInBrowsers: two pages in rooms of the shipped presets
// (configs/rooms). In a media-chat room (uploads at once, 15 s clips), A
// records a clip with the Record button and another by holding the spacebar
// (the fake microphone); each uploads, and B gets CLIP_ADDED and plays it to
// its end by itself; "from here" on B plays both in order. B holds an
// invite token with the moderate grant: it has Delete on A's clips. A
// deletes its first clip and it disappears from B; B deletes A's second
// with the Room API's clip.delete() and it disappears from A. Then in a
// voice-stream room (2 s clips), A holds the spacebar 5 s: the page sends
// consecutive clips of at most 2 s, and B plays each, in order.
func TestClipsInBrowsers(t *testing.T) {
	key := auth.Key{ID: "k1", Secret: []byte(strings.Repeat("c", 32))}
	v, err := auth.NewVerifier([]auth.Key{key}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) {
		c.Auth = server.AuthConfig{Mode: server.AuthOpen, Tokens: v, RoomsDir: filepath.Join("..", "configs", "rooms")}
		c.Clips = &server.ClipsConfig{Dir: t.TempDir()}
	})
	n := time.Now().UnixNano() % 100000
	room := fmt.Sprintf("chat-%d", n)
	modTok := mustSign(t, key, auth.Spec{Identity: "mod-b", Name: "B", Room: room,
		Grants: auth.MustParseGrants("subscribe", "chat", "moderate")})
	a := openPage(t, "A", fmt.Sprintf("%s/?room=%s&name=A&publish=0", srv.URL(), room))
	b := openPage(t, "B", fmt.Sprintf("%s/?%s", srv.URL(), url.Values{"room": {room}, "token": {modTok}, "publish": {"0"}}.Encode()))
	for _, p := range []*page{a, b} {
		p.waitClips("the clips panel", func(c pageClips) bool { return c.Attached })
	}
	var lim protocol.ClipLimits
	if err := a.eval(`window.parley.room.clipsAccess().limits`, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.MaxClipSizeSec != 15 || lim.OnRecorded != clips.OnRecordedUpload || lim.VideoOn || lim.MaxBlobBytes != 5_000_000 {
		t.Errorf("%s's limits %+v, want media-chat.yaml's", room, lim)
	}

	// The Record button: click, 1.5 s, click.
	a.click("#clips .clips-record")
	a.waitClips("recording", func(c pageClips) bool { return c.Recording })
	time.Sleep(1500 * time.Millisecond)
	a.click("#clips .clips-record")
	first := b.waitClips("the first clip played to its end on B", func(c pageClips) bool {
		return len(c.Rows) == 1 && len(c.Played) == 1 && c.Played[0] == c.Rows[0].ID
	})
	id1 := first.Rows[0].ID
	if first.Rows[0].Author != "A" || first.Rows[0].Own || !first.Rows[0].Delete {
		t.Errorf("B's (a moderator's) row of A's clip: %+v", first.Rows[0])
	}

	// Push-to-talk: hold the spacebar 1.5 s.
	if err := a.eval(`(document.activeElement && document.activeElement.blur(), true)`, nil); err != nil {
		t.Fatal(err)
	}
	a.space(true)
	a.waitClips("push-to-talk recording", func(c pageClips) bool { return c.Recording })
	time.Sleep(1500 * time.Millisecond)
	a.space(false)
	second := b.waitClips("the second clip played on B", func(c pageClips) bool {
		return len(c.Rows) == 2 && len(c.Played) == 2 && c.Played[1] == c.Rows[1].ID
	})
	id2 := second.Rows[1].ID
	own := a.waitClips("A's own rows", func(c pageClips) bool { return len(c.Rows) == 2 })
	if !own.Rows[0].Own || !own.Rows[0].Delete || len(own.Played) != 0 {
		t.Errorf("A (author) shows %+v; its own clips must not play by themselves", own)
	}
	// The server's durations: about what was held (the fake microphone's beeps, Opus in WebM).
	durations := a.clipDurations()
	t.Logf("clip durations as probed: %v s; B's rows: %q, %q", durations, second.Rows[0].Text, second.Rows[1].Text)
	for _, d := range durations {
		if d < 1 || d > 3 {
			t.Errorf("a clip held 1.5 s lasts %.2f s", d)
		}
	}

	// "From here" on the first clip plays both, in order.
	b.click(fmt.Sprintf(`#clips [data-clip="%s"] .clip-from`, id1))
	b.waitClips("both clips played again, in order", func(c pageClips) bool {
		return len(c.Played) == 4 && c.Played[2] == id1 && c.Played[3] == id2
	})

	// The author deletes the first clip; it goes from B.
	a.click(fmt.Sprintf(`#clips [data-clip="%s"] .clip-delete`, id1))
	b.waitClips("the deleted clip gone from B", func(c pageClips) bool {
		return len(c.Rows) == 1 && c.Rows[0].ID == id2
	})
	// The moderator deletes A's second clip with the Room API; it goes from A.
	var deleted string
	if err := b.eval(fmt.Sprintf(`window.parley.room.getClips().then(l => l.find(c => c.id() === %q))
		.then(c => c.delete().then(() => 'ok', e => e.code || String(e)))`, id2), &deleted); err != nil || deleted != "ok" {
		t.Fatalf("the moderator's clip.delete(): %q %v", deleted, err)
	}
	a.waitClips("the clip the moderator deleted gone from A", func(c pageClips) bool { return len(c.Rows) == 0 })
	for _, p := range []*page{a, b} {
		if c := p.clips(); c.Error != "" && !strings.Contains(c.Error, "NotAllowed") {
			t.Errorf("%s shows an error: %s", p.name, c.Error)
		}
	}

	// A walkie-talkie: speech held past the room's 2 s limit goes as
	// consecutive clips, each played on the other page in order.
	walkie := fmt.Sprintf("walkie-%d", n)
	a.open(fmt.Sprintf("%s/?room=%s&name=A&publish=0", srv.URL(), walkie))
	b.open(fmt.Sprintf("%s/?room=%s&name=B2&publish=0", srv.URL(), walkie))
	for _, p := range []*page{a, b} {
		p.waitClips("the clips panel in "+walkie, func(c pageClips) bool { return c.Attached && len(c.Rows) == 0 })
	}
	if err := a.eval(`(document.activeElement && document.activeElement.blur(), true)`, nil); err != nil {
		t.Fatal(err)
	}
	a.space(true)
	a.waitClips("push-to-talk in "+walkie, func(c pageClips) bool { return c.Recording })
	time.Sleep(5 * time.Second)
	a.space(false)
	a.waitClips("the recording over", func(c pageClips) bool { return !c.Recording })
	stream := b.waitClips("every clip of the 5 s played on B, in order", func(c pageClips) bool {
		if len(c.Rows) < 3 || len(c.Played) != len(c.Rows) {
			return false
		}
		for i := range c.Rows {
			if c.Played[i] != c.Rows[i].ID {
				return false
			}
		}
		return true
	})
	durations = b.clipDurations()
	total := 0.0
	for _, d := range durations {
		total += d
		if d > 2.3 {
			t.Errorf("a voice-stream clip lasts %.2f s; the preset says 2 s", d)
		}
	}
	t.Logf("5 s of push-to-talk in %s: %d clips of %v s (%.1f s)", walkie, len(stream.Rows), durations, total)
	if total < 4 || total > 6.5 {
		t.Errorf("the clips of 5 s of speech last %.1f s together", total)
	}
}

// playerEnd is what the page's one player showed when it reached the end of
// something: a clip from the server or the page's own recording (a blob).
type playerEnd struct {
	Blob   bool    `json:"blob"`
	Width  int     `json:"w"`
	Height int     `json:"h"`
	At     float64 `json:"at"`
}

// watchPlayer records every end the page's #clipPlayer reaches.
func (p *page) watchPlayer() {
	p.t.Helper()
	if err := p.eval(`(() => { window.__ends = []; document.getElementById('clipPlayer').addEventListener('ended', (e) => {
		const v = e.target; window.__ends.push({blob: v.currentSrc.startsWith('blob:'), w: v.videoWidth, h: v.videoHeight, at: v.currentTime});
	}); return true; })()`, nil); err != nil {
		p.t.Fatalf("%s: watching the player: %v", p.name, err)
	}
}

func (p *page) playerEnds() []playerEnd {
	var out []playerEnd
	if err := p.eval(`window.__ends || []`, &out); err != nil {
		p.t.Logf("%s: reading the player's ends: %v", p.name, err)
	}
	return out
}

func (p *page) serverClips() int {
	p.t.Helper()
	var n int
	if err := p.eval(`window.parley.room.getClips().then(l => l.length)`, &n); err != nil {
		p.t.Fatalf("%s: getClips: %v", p.name, err)
	}
	return n
}

// TestClipPreviewVideoAndAutoplay: a media-forum room (configs/rooms: video
// on, a preview before upload, nothing plays by itself). A records a video
// clip with the camera and microphone (fake): the preview plays the
// recording (its pictures decoded) and Discard posts nothing; a second one
// is uploaded with Upload. B's browser allows sound only after a click
// (Chromium's document-user-activation-required autoplay policy) and B
// turns auto-play on: A's clip arrives while B records and waits for the
// end of B's recording; then the browser blocks it, the page shows the
// hint, and one real click on it plays the video clip to its end. Last, A
// turns "only from others" off, and A's own next clip plays on A by itself.
func TestClipPreviewVideoAndAutoplay(t *testing.T) {
	srv := startServer(t, func(c *server.Config) {
		c.Auth = server.AuthConfig{Mode: server.AuthOpen, RoomsDir: filepath.Join("..", "configs", "rooms")}
		c.Clips = &server.ClipsConfig{Dir: t.TempDir()}
	})
	room := fmt.Sprintf("forum-%d", time.Now().UnixNano()%100000)
	a := openPage(t, "A", fmt.Sprintf("%s/?room=%s&name=A&publish=0", srv.URL(), room))
	b := openPage(t, "B", fmt.Sprintf("%s/?room=%s&name=B&publish=0", srv.URL(), room),
		chromedp.Flag("autoplay-policy", "document-user-activation-required"))
	for _, p := range []*page{a, b} {
		p.waitClips("the clips panel", func(c pageClips) bool { return c.Attached })
		p.watchPlayer()
	}
	var lim protocol.ClipLimits
	if err := a.eval(`window.parley.room.clipsAccess().limits`, &lim); err != nil {
		t.Fatal(err)
	}
	var video bool
	if err := a.eval(`(() => { const v = document.getElementById('clipsVideo'); return v.checked && !v.parentElement.hidden; })()`, &video); err != nil {
		t.Fatal(err)
	}
	if lim.OnRecorded != clips.OnRecordedPreview || !lim.AllowVideo || !lim.VideoOn || lim.AutoPlay || !video {
		t.Fatalf("%s: limits %+v, video box checked and shown: %v; want media-forum.yaml's", room, lim, video)
	}
	// B turns auto-play on (a script's change: no user activation) and records.
	if err := b.eval(`(() => { const x = document.getElementById('clipsAuto'); x.checked = true; x.dispatchEvent(new Event('change')); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	b.click("#clips .clips-record")
	b.waitClips("B recording", func(c pageClips) bool { return c.Recording })

	record := func(what string) {
		a.click("#clips .clips-record")
		a.waitClips("A recording "+what, func(c pageClips) bool { return c.Recording })
		// While recording: the elapsed time and the room's limit.
		a.waitFor("the elapsed time and the limit", func() (bool, string) {
			s := a.text("#clips .clips-timer")
			return regexp.MustCompile(`^(0\.[1-9]|1\.[0-9]) / 1800 s$`).MatchString(s), s
		})
		time.Sleep(1500 * time.Millisecond)
		a.click("#clips .clips-record")
		a.waitClips("the preview of "+what, func(c pageClips) bool { return !c.Recording && c.Preview })
	}

	// A preview played and discarded: nothing posted.
	record("a discarded clip")
	if n := a.serverClips(); n != 0 {
		t.Fatalf("a clip in preview is on the server already (%d)", n)
	}
	a.click("#clips .clips-preview-play")
	var ends []playerEnd
	a.waitFor("the preview played to its end", func() (bool, string) {
		ends = a.playerEnds()
		return len(ends) == 1, fmt.Sprintf("%+v", ends)
	})
	if !ends[0].Blob || ends[0].Width != 320 || ends[0].Height != 240 || ends[0].At < 1 {
		t.Errorf("the preview played %+v; want the 320x240 recording of 1.5 s", ends[0])
	}
	a.click("#clips .clips-preview-discard")
	a.waitClips("the preview gone", func(c pageClips) bool { return !c.Preview })
	if n := a.serverClips(); n != 0 {
		t.Errorf("a discarded clip was posted (%d on the server)", n)
	}

	// The second one uploaded.
	record("an uploaded clip")
	a.click("#clips .clips-preview-upload")
	up := a.waitClips("the uploaded clip listed", func(c pageClips) bool { return !c.Preview && len(c.Rows) == 1 })
	id := up.Rows[0].ID
	// The row: author, time, duration, size, kind.
	if up.Rows[0].Kind != "video" || !up.Rows[0].Own ||
		!regexp.MustCompile(`^A\s+\d\d:\d\d\s+[12]\.\d s\s+(\d+ kB|\d+\.\d MB)\s+video\s`).MatchString(up.Rows[0].Text) {
		t.Errorf("A's row: %+v", up.Rows[0])
	}

	// On B it waits for the end of B's recording.
	b.waitClips("A's clip listed on B", func(c pageClips) bool { return len(c.Rows) == 1 && c.Rows[0].ID == id })
	time.Sleep(time.Second)
	if c := b.clips(); !c.Recording || c.Current != "" || len(c.Played) != 0 || len(b.playerEnds()) != 0 {
		t.Fatalf("B plays a clip over its own recording: %+v", c)
	}
	b.click("#clips .clips-record")
	blocked := b.waitClips("the autoplay hint on B", func(c pageClips) bool { return !c.Recording && c.Hint })
	if len(blocked.Played) != 0 || blocked.Error != "" {
		t.Errorf("B, blocked: %+v", blocked)
	}
	b.click("#clips .clips-preview-discard") // B's own recording (the room previews)
	// One real click (a user activation) on the hint plays the queue.
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	_, err := chromedp.Run(ctx, chromedp.Click(chromedp.CSS("#clips .clips-hint")))
	cancel()
	if err != nil {
		t.Fatalf("clicking the hint: %v", err)
	}
	played := b.waitClips("A's video clip played on B", func(c pageClips) bool { return len(c.Played) == 1 && c.Played[0] == id })
	if played.Hint {
		t.Errorf("the hint stays after the click: %+v", played)
	}
	ends = b.playerEnds()
	if len(ends) != 1 || ends[0].Blob || ends[0].Width != 320 || ends[0].Height != 240 || ends[0].At < 1 {
		t.Errorf("B played %+v; want A's 320x240 clip of 1.5 s from the server", ends)
	}

	// "Only from others" off: A's own new clip plays on A by itself.
	if err := a.eval(`(() => { const x = document.getElementById('clipsAuto'); x.checked = true; x.dispatchEvent(new Event('change'));
		document.getElementById('clipsOthers').click(); return !document.getElementById('clipsOthers').checked; })()`, &video); err != nil || !video {
		t.Fatalf("turning 'only from others' off: %v %v", video, err)
	}
	record("A's own clip for itself")
	a.click("#clips .clips-preview-upload")
	own := a.waitClips("A's own clip played on A", func(c pageClips) bool { return len(c.Rows) == 2 && len(c.Played) == 1 })
	if own.Played[0] != own.Rows[1].ID {
		t.Errorf("A played %v, want its new clip %s", own.Played, own.Rows[1].ID)
	}
	for _, p := range []*page{a, b} {
		if c := p.clips(); c.Error != "" {
			t.Errorf("%s shows an error: %s", p.name, c.Error)
		}
	}
}
