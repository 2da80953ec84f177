package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/server/servertest"
	"github.com/parley/parley/pkg/signaling"
	"github.com/parley/parley/pkg/testmedia"
)

// syllables are the loud spans of a voice that talks on and on: sounds of
// 250 to 400 ms with pauses of 100 to 150 ms.
func syllables(d time.Duration) []testmedia.Span {
	var out []testmedia.Span
	ms := time.Millisecond
	lengths, gaps := []time.Duration{350 * ms, 250 * ms, 400 * ms, 300 * ms}, []time.Duration{100 * ms, 150 * ms, 120 * ms}
	for i, at := 0, time.Duration(0); ; i++ {
		l := lengths[i%len(lengths)]
		if at+l > d {
			return out
		}
		out = append(out, testmedia.Span{From: at, To: at + l})
		at += l + gaps[i%len(gaps)]
	}
}

// speakerState is what a page shows of who speaks.
type speakerState struct {
	Big      string   `json:"big"`      // the remote participant on the big tile
	Speaking []string `json:"speaking"` // remote tiles with the speaking ring
	Self     bool     `json:"self"`     // the local tile has it
	Tiles    []string `json:"tiles"`    // remote camera tiles
}

const readSpeakers = `(() => {
  const tiles = [...document.querySelectorAll('#tiles .tile')];
  return {
    big: (tiles.find((t) => t.classList.contains('big')) || {dataset: {}}).dataset.name || '',
    speaking: tiles.filter((t) => t.classList.contains('speaking')).map((t) => t.dataset.name),
    self: document.querySelector('#local').classList.contains('speaking'),
    tiles: tiles.map((t) => t.dataset.name),
  };
})()`

func (p *page) speakers() speakerState {
	var s speakerState
	if err := p.eval(readSpeakers, &s); err != nil {
		p.t.Logf("%s: reading speakers: %v", p.name, err)
	}
	return s
}

// TestBigTileFollowsTheSpeaker: two Chromium pages, ann's fake microphone a
// voice from a file (synthetic speech), ben's a quiet one. On ben's page ann
// gets the big tile and the speaking ring, and her own page rings her tile.
// Once ann mutes her microphone she stops speaking but keeps the big tile
// (no one else spoke); then cai, a Pion client with a camera and a voice
// (real Opus with audio levels), talks, and the big tile follows cai, on
// ben's page and on ann's.
func TestBigTileFollowsTheSpeaker(t *testing.T) {
	dir := t.TempDir()
	loud, err := testmedia.SpeechWAV(dir, testmedia.Options{Duration: 40 * time.Second}, []testmedia.Span{{From: 0, To: 40 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := testmedia.SpeechWAV(dir, testmedia.Options{Duration: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, nil)
	room := fmt.Sprintf("talk%d", time.Now().UnixNano()%100000)
	ann := openPage(t, "ann", fmt.Sprintf("%s/?room=%s&name=ann", srv.URL(), room),
		chromedp.Flag("use-file-for-fake-audio-capture", loud))
	ben := openPage(t, "ben", fmt.Sprintf("%s/?room=%s&name=ben", srv.URL(), room),
		chromedp.Flag("use-file-for-fake-audio-capture", quiet))
	ben.waitDecoding("ann", "camera", true)

	ben.waitFor("ann on the big tile, speaking", func() (bool, string) {
		s := ben.speakers()
		return s.Big == "ann" && len(s.Speaking) == 1 && s.Speaking[0] == "ann" && !s.Self, fmt.Sprintf("%+v", s)
	})
	ann.waitFor("ann's own tile ringed", func() (bool, string) {
		s := ann.speakers()
		return s.Self, fmt.Sprintf("%+v", s)
	})
	var level float64
	_ = ann.eval(`(async () => { let l = 0; for (const pc of window.__pcs) (await pc.getStats()).forEach((s) => {
	  if (s.type === 'media-source' && s.kind === 'audio') l = s.audioLevel; }); return l; })()`, &level)
	t.Logf("ann's microphone level as her page measures it: %.3f of full scale", level)

	ann.click("#muteAudio")
	ben.waitFor("ann silent, still on the big tile", func() (bool, string) {
		s := ben.speakers()
		return s.Big == "ann" && len(s.Speaking) == 0, fmt.Sprintf("%+v", s)
	})

	// cai joins with a camera and talks.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cai, err := client.Dial(ctx, servertest.WSURL(srv), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cai.Close()
	if _, err := cai.Join(ctx, client.JoinOptions{Room: room, Name: "cai"}); err != nil {
		t.Fatal(err)
	}
	ogg, pcm, err := testmedia.SpeechOpus(dir, testmedia.Options{Duration: 30 * time.Second}, []testmedia.Span{{From: 0, To: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	voice, err := client.NewOpusLevelSource(ogg, pcm, true)
	if err != nil {
		t.Fatal(err)
	}
	ivf, err := testmedia.VP8IVF(dir, testmedia.Options{Width: 320, Height: 180, Duration: 3 * time.Second, Bitrate: 200_000})
	if err != nil {
		t.Fatal(err)
	}
	cam, err := client.NewIVFSource(ivf, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cai.Publish(ctx, client.PublishOptions{Video: cam, Audio: voice}); err != nil {
		t.Fatal(err)
	}
	ben.waitDecoding("cai", "camera", true)
	ben.waitFor("the big tile to follow cai", func() (bool, string) {
		s := ben.speakers()
		return s.Big == "cai" && len(s.Speaking) == 1 && s.Speaking[0] == "cai", fmt.Sprintf("%+v", s)
	})
	ann.waitFor("cai on ann's big tile", func() (bool, string) {
		s := ann.speakers()
		return s.Big == "cai" && !s.Self, fmt.Sprintf("%+v", s)
	})
	// The big tile is really bigger: the grid gives it two columns and rows.
	var sizes map[string]float64
	if err := ben.eval(`(() => { const o = {}; for (const t of document.querySelectorAll('#tiles .tile')) o[t.dataset.name] = t.getBoundingClientRect().width; return o; })()`, &sizes); err != nil {
		t.Fatal(err)
	}
	if sizes["cai"] < 1.5*sizes["ann"] {
		t.Errorf("tile widths on ben's page %v: cai's big tile is not bigger", sizes)
	}
}

// stage is what a page shows of a room with more cameras than fit.
type stage struct {
	OnStage  []string `json:"onStage"`  // remote camera tiles shown
	Offstage []string `json:"offstage"` // remote camera tiles hidden
	Names    []string `json:"names"`    // name tiles in the strip's page
	Page     string   `json:"page"`
	Big      string   `json:"big"`
}

const readStage = `(() => {
  const cams = [...document.querySelectorAll('#tiles .tile')].filter((t) => t.dataset.kind === 'camera');
  const strip = document.querySelector('#speakerStrip');
  return {
    onStage: cams.filter((t) => !t.hidden).map((t) => t.dataset.name),
    offstage: cams.filter((t) => t.hidden).map((t) => t.dataset.name),
    names: strip && !strip.hidden ? [...strip.querySelectorAll('.name-tile')].map((n) => n.dataset.name) : [],
    page: strip ? strip.querySelector('.strip-page').textContent : '',
    big: (cams.find((t) => t.classList.contains('big')) || {dataset: {}}).dataset.name || '',
  };
})()`

// TestStageShowsRecentSpeakers: a Chromium page in a room of 11 Pion
// cameras, the last to join (cai) talking. On a laptop-sized window the
// stage has 9 tiles: the page's own and 8 cameras, cai's among them (big, as
// the dominant speaker) though it joined last; the other 3 are name tiles
// whose audio still plays and whose video the server no longer sends. On a
// phone-sized one the stage has 4, and the 8 name tiles are paged 4 at a time.
func TestStageShowsRecentSpeakers(t *testing.T) {
	dir := t.TempDir()
	quiet, err := testmedia.SpeechWAV(dir, testmedia.Options{Duration: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) { c.Signaling.AddressLimits = signaling.AddressLimits{} })
	room := fmt.Sprintf("stage%d", time.Now().UnixNano()%100000)
	cams := servertest.Cameras(t, servertest.WSURL(srv), room, "cam", 10, servertest.SmallCamera)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cai, err := client.Dial(ctx, servertest.WSURL(srv), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cai.Close()
	if _, err := cai.Join(ctx, client.JoinOptions{Room: room, Name: "cai", Subscribe: new(bool)}); err != nil {
		t.Fatal(err)
	}
	ogg, pcm, err := testmedia.SpeechOpus(dir, testmedia.Options{Duration: 30 * time.Second}, syllables(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	voice, err := client.NewOpusLevelSource(ogg, pcm, true)
	if err != nil {
		t.Fatal(err)
	}
	ivf, err := testmedia.VP8IVF(servertest.MediaDir(t), servertest.SmallCamera)
	if err != nil {
		t.Fatal(err)
	}
	cam, err := client.NewIVFSource(ivf, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cai.Publish(ctx, client.PublishOptions{Video: cam, Audio: voice}); err != nil {
		t.Fatal(err)
	}

	p := openPage(t, "viewer", fmt.Sprintf("%s/?room=%s&name=viewer", srv.URL(), room),
		chromedp.Flag("use-file-for-fake-audio-capture", quiet))
	var st stage
	read := func() string {
		if err := p.eval(readStage, &st); err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%+v", st)
	}
	p.waitFor("8 cameras on the stage, cai's big, 3 name tiles", func() (bool, string) {
		s := read()
		return len(st.OnStage) == 8 && len(st.Offstage) == 3 && len(st.Names) == 3 && st.Big == "cai" &&
			slices.Contains(st.OnStage, "cai"), s
	})
	// The cameras off the stage are heard: their audio goes on.
	off := slices.Clone(st.Offstage)
	before := map[string]float64{}
	for _, tm := range p.tiles() {
		before[tm.Name] = tm.Samples
	}
	p.waitFor("audio from the cameras off the stage", func() (bool, string) {
		now := map[string]float64{}
		for _, tm := range p.tiles() {
			now[tm.Name] = tm.Samples
		}
		for _, name := range off {
			if now[name] <= before[name] {
				return false, fmt.Sprintf("%s: %v then %v samples", name, before[name], now[name])
			}
		}
		return true, ""
	})

	// The page reports the hidden tiles (roomapi.js's tile watcher): the
	// server sends no video for them, and goes on with the stage's.
	prev := map[string]float64{}
	p.waitFor("no video for the cameras off the stage, video for cai's", func() (bool, string) {
		now := map[string]float64{}
		for _, tm := range p.tiles() {
			now[tm.Name] = tm.Frames
		}
		defer func() { prev = now }()
		if len(prev) == 0 {
			return false, "first look"
		}
		for _, name := range off {
			if now[name] > prev[name] {
				return false, fmt.Sprintf("%s: %v then %v frames", name, prev[name], now[name])
			}
		}
		return now["cai"] > prev["cai"], fmt.Sprintf("cai: %v then %v frames", prev["cai"], now["cai"])
	})

	// A phone: 4 tiles on the stage (the page's own, cai's and 2 more), 8 name tiles, 4 a page.
	if _, err := chromedp.Run(p.ctx, chromedp.EmulateViewport(400, 800)); err != nil {
		t.Fatal(err)
	}
	p.waitFor("a phone's stage", func() (bool, string) {
		s := read()
		return len(st.OnStage) == 3 && slices.Contains(st.OnStage, "cai") && len(st.Offstage) == 8 &&
			len(st.Names) == 4 && st.Page == "1/2", s
	})
	first := slices.Clone(st.Names)
	p.click("#speakerStrip .strip-next")
	p.waitFor("the strip's second page", func() (bool, string) {
		s := read()
		if st.Page != "2/2" || len(st.Names) != 4 {
			return false, s
		}
		for _, n := range st.Names {
			if slices.Contains(first, n) {
				return false, s
			}
		}
		return true, s
	})
	if len(cams) != 10 {
		t.Fatalf("%d cameras", len(cams))
	}
}
