package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// twoDevices gives a page two fake cameras and microphones: fake_device_0
// draws a green pattern, fake_device_1 a grey one (a depth camera's picture:
// Chromium shows it in a <video> but its WebRTC sender sends no frames of it).
var twoDevices = chromedp.Flag("use-fake-device-for-media-stream", "device-count=2")

// receivedPicture is the connection mark's words for a decoded picture: "…, 360p at 20 fps".
var receivedPicture = regexp.MustCompile(`, [1-9][0-9]*p at [0-9]+ fps$`)

// picture is the mean colour of what a <video> shows, read through a canvas.
type picture struct {
	W, H    int
	R, G, B float64
}

func (c picture) green() bool { return c.W > 0 && c.G > c.R+40 && c.G > c.B+40 }
func (c picture) grey() bool {
	return c.W > 0 && c.G < c.R+15 && c.G > c.R-15 && c.B < c.R+15 && c.B > c.R-15
}

// videoPicture reads the mean colour of the <video> matched by sel.
func (p *page) videoPicture(sel string) picture {
	var c picture
	err := p.eval(fmt.Sprintf(`(() => {
	  const v = document.querySelector(%q);
	  if (!v || !v.videoWidth) return {W: 0};
	  const c = document.createElement('canvas'); c.width = 64; c.height = 48;
	  const g = c.getContext('2d'); g.drawImage(v, 0, 0, 64, 48);
	  const px = g.getImageData(0, 0, 64, 48).data; let r = 0, gr = 0, b = 0;
	  for (let i = 0; i < px.length; i += 4) { r += px[i]; gr += px[i+1]; b += px[i+2]; }
	  const n = px.length / 4;
	  return {W: v.videoWidth, H: v.videoHeight, R: r / n, G: gr / n, B: b / n};
	})()`, sel), &c)
	if err != nil {
		p.t.Logf("%s: picture of %s: %v", p.name, sel, err)
	}
	return c
}

func tileVideo(name, kind string) string {
	return fmt.Sprintf(`#tiles .tile[data-name=%q][data-kind=%q] video`, name, kind)
}

// TestConferencePage, two pages:
//   - an invite link without a name opens the pre-join screen: it lists both
//     fake cameras and the microphones, shows the camera, its level meter
//     moves with the fake microphone's beeps; the user picks the second
//     camera (its preview turns grey), turns the microphone off and joins: her
//     camera stream sends that camera's track, muted microphone, and the name
//     is remembered;
//   - the muted microphone shows on the other's page, and goes when unmuted;
//   - switching the camera during the call (Devices) changes what the other
//     decodes to the first camera's (green) picture, without a new offer (the
//     second fake camera is a depth camera whose frames WebRTC does not send);
//   - the camera's track ending (unplugged) brings the default camera, with a note;
//   - a raised hand reaches the other (tile and participant list);
//   - pin and full screen change the other's layout.
func TestConferencePage(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("pre%d", time.Now().UnixNano()%100000)
	a := openPage(t, "a", fmt.Sprintf("%s/?room=%s", srv.URL(), room), twoDevices)

	var devs struct {
		Cams     []string `json:"cams"`
		Mics     []string `json:"mics"`
		Speakers []string `json:"speakers"`
		Width    int      `json:"width"`
		Shown    bool     `json:"shown"`
		Joined   bool     `json:"joined"`
	}
	a.waitFor("the pre-join screen with two cameras and a camera picture", func() (bool, string) {
		_ = a.eval(`(() => {
		  const opts = (id) => [...document.querySelectorAll('#' + id + ' option')].filter(o => o.value).map(o => o.textContent);
		  return {cams: opts('camSelect'), mics: opts('micSelect'), speakers: opts('speakerSelect'),
		    width: document.querySelector('#prejoinVideo').videoWidth,
		    shown: !document.querySelector('#prejoin').hidden, joined: !!(window.parley && window.parley.room)};
		})()`, &devs)
		return devs.Shown && len(devs.Cams) == 2 && len(devs.Mics) >= 2 && devs.Width > 0, fmt.Sprintf("%+v", devs)
	})
	if devs.Joined {
		t.Fatal("the page joined before the user pressed Join")
	}
	if devs.Cams[0] == devs.Cams[1] {
		t.Errorf("two cameras with one label: %q", devs.Cams)
	}
	t.Logf("pre-join lists cameras %q, microphones %q, speakers %q", devs.Cams, devs.Mics, devs.Speakers)

	// The meter follows the fake microphone: beeps and silence, read over 3 s.
	var levels []int
	for i := 0; i < 30; i++ {
		var l string
		_ = a.eval(`document.querySelector('#micLevel').dataset.level || '0'`, &l)
		var n int
		fmt.Sscan(l, &n)
		levels = append(levels, n)
		time.Sleep(100 * time.Millisecond)
	}
	lo, hi := 100, 0
	for _, l := range levels {
		lo, hi = min(lo, l), max(hi, l)
	}
	t.Logf("microphone level over 3 s: %v", levels)
	if hi < 30 || hi-lo < 20 {
		t.Fatalf("the level meter does not move with the microphone: %v", levels)
	}

	// Second camera, microphone off, a name; join.
	if err := a.eval(`(async () => {
	  const sel = document.querySelector('#camSelect');
	  sel.value = sel.options[1].value; sel.dispatchEvent(new Event('change'));
	  document.querySelector('#prejoinMic').click();
	  document.querySelector('#prejoinName').value = 'Ada';
	  return true;
	})()`, nil); err != nil {
		t.Fatal(err)
	}
	a.waitFor("the preview of the second (grey) camera", func() (bool, string) {
		c := a.videoPicture("#prejoinVideo")
		return c.grey(), fmt.Sprintf("%+v", c)
	})
	a.click("#prejoinJoin")
	a.waitFor("status ESTABLISHED", func() (bool, string) {
		s := a.text("#status")
		return s == "ESTABLISHED", s + " " + a.text("#error")
	})

	// Alone in the room: the page says so, with the invite link.
	a.waitFor("'You are the only one here' with the invite link", func() (bool, string) {
		var r struct {
			Shown bool   `json:"shown"`
			Link  string `json:"link"`
		}
		_ = a.eval(`(() => { const e = document.querySelector('#alone');
		  return {shown: !e.hidden && e.getBoundingClientRect().height > 0, link: document.querySelector('#aloneLink').href}; })()`, &r)
		return r.Shown && strings.HasSuffix(r.Link, "/?room="+room), fmt.Sprintf("%+v", r)
	})

	b := openPage(t, "b", fmt.Sprintf("%s/?room=%s&name=b", srv.URL(), room))
	b.waitFor("Ada's camera tile and sound", func() (bool, string) {
		tm, ok := find(b.tiles(), "Ada", "camera")
		return ok && tm.Samples > 0, fmt.Sprintf("%+v", tm)
	})
	// Ada publishes what she chose: the second camera, the microphone muted.
	var st struct {
		AudioMuted bool   `json:"audioMuted"`
		VideoMuted bool   `json:"videoMuted"`
		Camera     string `json:"camera"`
		Name       string `json:"name"`
	}
	if err := a.eval(`(() => { const s = window.parley.room.getLocalStreams().find(s => s.kind() === 'camera');
	  const sender = s.getPeerConnection().getSenders().find(x => x.track && x.track.kind === 'video');
	  return {audioMuted: s.isAudioMuted(), videoMuted: s.isVideoMuted(), camera: sender.track.label,
	    name: localStorage.getItem('parley.pref.name')}; })()`, &st); err != nil {
		t.Fatal(err)
	}
	if !st.AudioMuted || st.VideoMuted || st.Camera != "fake_device_1" || st.Name != "Ada" {
		t.Errorf("joined with the microphone on, the camera off, another camera or the name not remembered: %+v", st)
	}
	if addr := a.text("#invite"); !strings.Contains(addr, room) {
		t.Errorf("invite link %q", addr)
	}

	// Ada joined with her microphone off: b marks it, and the mark goes when she unmutes.
	adaTile := `#tiles .tile[data-name="Ada"][data-kind="camera"]`
	micMark := func() (string, int) {
		var r struct {
			Off   string `json:"off"`
			Marks int    `json:"marks"`
		}
		_ = b.eval(fmt.Sprintf(`(() => { const t = document.querySelector(%q);
		  return {off: t ? t.dataset.micOff || '' : 'no tile', marks: t ? t.querySelectorAll('.mark.mic-off').length : 0}; })()`, adaTile), &r)
		return r.Off, r.Marks
	}
	b.waitFor("Ada's muted-microphone mark", func() (bool, string) {
		off, n := micMark()
		return off == "true" && n == 1, fmt.Sprintf("micOff=%s marks=%d", off, n)
	})
	a.click("#muteAudio")
	b.waitFor("Ada's muted-microphone mark to go", func() (bool, string) {
		off, n := micMark()
		return off == "false" && n == 0, fmt.Sprintf("micOff=%s marks=%d", off, n)
	})

	// Switch to the first (green) camera during the call: b decodes its picture
	// (the depth camera's frames never left Ada's browser), with no new offer
	// and the same stream.
	streamOnB := func() string {
		var id string
		_ = b.eval(fmt.Sprintf(`(document.querySelector(%q) || {dataset: {}}).dataset.stream || ''`, adaTile), &id)
		return id
	}
	before := streamOnB()
	// Ada's subscribe connection (b's camera) is made once b's camera arrives:
	// it must be there before the peer connections are counted.
	a.waitDecoding("b", "camera", true)
	if err := a.eval(`(() => {
	  window.__offers = 0;
	  const orig = RTCPeerConnection.prototype.createOffer;
	  RTCPeerConnection.prototype.createOffer = function(...args) { window.__offers++; return orig.apply(this, args); };
	  window.__pcCount = window.__pcs.length;
	  return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	a.click("#devicesButton")
	a.waitFor("both cameras in the in-call menu", func() (bool, string) {
		var n int
		_ = a.eval(`[...document.querySelectorAll('#callCam option')].filter(o => o.value).length`, &n)
		return n == 2, fmt.Sprint(n)
	})
	if err := a.eval(`(() => { const sel = document.querySelector('#callCam');
	  const o = [...sel.options].find(o => o.textContent === 'fake_device_0');
	  sel.value = o.value; sel.dispatchEvent(new Event('change')); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	b.waitFor("Ada's picture from the first (green) camera", func() (bool, string) {
		c := b.videoPicture(tileVideo("Ada", "camera"))
		return c.green(), fmt.Sprintf("%+v", c)
	})
	var neg struct {
		Offers int    `json:"offers"`
		PCs    int    `json:"pcs"`
		Before int    `json:"before"`
		Label  string `json:"label"`
	}
	if err := a.eval(`(() => { const s = window.parley.room.getLocalStreams().find(s => s.kind() === 'camera');
	  return {offers: window.__offers, pcs: window.__pcs.length, before: window.__pcCount,
	    label: s.getMediaStream().getVideoTracks()[0].label}; })()`, &neg); err != nil {
		t.Fatal(err)
	}
	b.waitDecoding("Ada", "camera", false)
	if neg.Offers != 0 || neg.PCs != neg.Before || neg.Label != "fake_device_0" {
		t.Errorf("the camera switch renegotiated or did not switch: %+v", neg)
	}
	if after := streamOnB(); after != before || before == "" {
		t.Errorf("Ada's stream on b changed from %q to %q", before, after)
	}

	// Quality at a glance: b's tile of Ada has a connection mark with the
	// received picture's size (from b's getStats; the simulcast layer the
	// server sends for the tile's size, so any height).
	b.waitFor("the connection mark on Ada's tile", func() (bool, string) {
		var r struct {
			Level string `json:"level"`
			Label string `json:"label"`
		}
		_ = b.eval(fmt.Sprintf(`(() => { const t = document.querySelector(%q); const q = t && t.querySelector('.conn-quality');
		  return {level: q ? q.dataset.level : '', label: q ? q.getAttribute('aria-label') : ''}; })()`, adaTile), &r)
		return r.Level != "" && strings.HasPrefix(r.Label, "Connection "+r.Level+": loss ") && receivedPicture.MatchString(r.Label),
			fmt.Sprintf("%+v", r)
	})

	// The camera unplugged (its track ends): the default camera takes over, with a note.
	if err := a.eval(`(() => { window.parley.room.getLocalStreams().find(s => s.kind() === 'camera')
	  .getMediaStream().getVideoTracks()[0].stop(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	a.waitFor("the default camera after the unplug, with a note", func() (bool, string) {
		var r struct {
			State string `json:"state"`
			Note  string `json:"note"`
		}
		_ = a.eval(`(() => { const s = window.parley.room.getLocalStreams().find(s => s.kind() === 'camera');
		  return {state: s.getMediaStream().getVideoTracks()[0].readyState, note: document.querySelector('#callNote').textContent}; })()`, &r)
		return r.State == "live" && strings.Contains(r.Note, "was disconnected; now using"), fmt.Sprintf("%+v", r)
	})
	b.waitDecoding("Ada", "camera", false)

	// A raised hand reaches b: on the tile, in the list and its count.
	a.click("#handButton")
	b.waitFor("Ada's raised hand", func() (bool, string) {
		var r struct {
			Tile  string `json:"tile"`
			List  string `json:"list"`
			Count string `json:"count"`
		}
		_ = b.eval(fmt.Sprintf(`(() => { const t = document.querySelector(%q);
		  const li = document.querySelector('#peopleList li[data-name="Ada"]');
		  return {tile: t ? t.dataset.hand || '' : '', list: li ? li.dataset.hand : '', count: document.querySelector('#handCount').textContent}; })()`, adaTile), &r)
		return r.Tile == "true" && r.List == "true" && r.Count == "1 hand", fmt.Sprintf("%+v", r)
	})

	// Keyboard: M on b's page mutes b's microphone; Ada's page marks it.
	ctxKey, cancelKey := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancelKey()
	if err := chromedp.Do(ctxKey, chromedp.KeyEvent("m")); err != nil {
		t.Fatalf("press M: %v", err)
	}
	a.waitFor("b's muted-microphone mark after M", func() (bool, string) {
		var off string
		_ = a.eval(`(document.querySelector('#tiles .tile[data-name="b"][data-kind="camera"]') || {dataset: {}}).dataset.micOff || ''`, &off)
		return off == "true" && b.text("#muteAudio") == "Unmute mic", off + " " + b.text("#muteAudio")
	})

	// Chat closed on b: a line from Ada counts as unread; opening the chat clears it.
	b.click("#chatButton")
	if err := a.eval(`(() => { const i = document.querySelector('#chatText'); i.value = 'are you there?';
	  document.querySelector('#chatSend').click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	b.waitFor("an unread count of 1", func() (bool, string) {
		s := b.text("#chatUnread")
		return s == "1 unread", s
	})
	b.click("#chatButton")
	if s := b.text("#chatUnread"); s != "" {
		t.Errorf("unread count %q after opening the chat", s)
	}

	// Pin: Ada's tile fills the stage, b's own goes to the strip; unpin restores.
	type box struct{ W, H float64 }
	sizes := func() (ada, own box) {
		var r struct{ Ada, Own box }
		_ = b.eval(fmt.Sprintf(`(() => { const r = (e) => { const b = e.getBoundingClientRect(); return {W: b.width, H: b.height}; };
		  return {Ada: r(document.querySelector(%q)), Own: r(document.querySelector('#local'))}; })()`, adaTile), &r)
		return r.Ada, r.Own
	}
	ada0, own0 := sizes()
	b.click(adaTile + " .tool-pin")
	b.waitFor("the pinned layout", func() (bool, string) {
		ada, own := sizes()
		return ada.W > 2.5*own.W && ada.H > own.H, fmt.Sprintf("before %+v %+v, now %+v %+v", ada0, own0, ada, own)
	})
	b.click(adaTile + " .tool-pin")
	b.waitFor("the grid again after unpinning", func() (bool, string) {
		ada, own := sizes()
		return ada.W < 1.2*own.W && own.W < 1.2*ada.W, fmt.Sprintf("%+v %+v", ada, own)
	})

	// Full screen (a real click: the browser wants a user gesture).
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(adaTile+" .tool-full")); err != nil {
		t.Fatalf("click full screen: %v", err)
	}
	b.waitFor("Ada's tile in full screen", func() (bool, string) {
		var r struct {
			Name string  `json:"name"`
			W    float64 `json:"w"`
			VW   float64 `json:"vw"`
		}
		_ = b.eval(`(() => { const f = document.fullscreenElement;
		  return {name: f ? f.dataset.name || '' : '', w: f ? f.getBoundingClientRect().width : 0, vw: window.innerWidth}; })()`, &r)
		return r.Name == "Ada" && r.W >= r.VW-1, fmt.Sprintf("%+v", r)
	})

	// The WebSocket drops: the reconnecting banner shows while the session
	// resumes, and goes once it is back; the call goes on.
	if err := b.eval(`(() => { window.__banner = false; const e = document.querySelector('#reconnecting');
	  new MutationObserver(() => { if (!e.hidden) window.__banner = true; }).observe(e, {attributes: true});
	  window.parley.connection._ws.close(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the reconnecting banner, then the session back", func() (bool, string) {
		var r struct {
			Seen   bool `json:"seen"`
			Hidden bool `json:"hidden"`
		}
		_ = b.eval(`({seen: window.__banner, hidden: document.querySelector('#reconnecting').hidden})`, &r)
		st := b.text("#status")
		return r.Seen && r.Hidden && st == "ESTABLISHED", fmt.Sprintf("%+v %s", r, st)
	})
	b.waitDecoding("Ada", "camera", true)
}
