package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// failingCamera makes the page's camera fail as a browser does when it
// cannot be opened: getUserMedia with video rejects with the DOMException
// named by window.__camError (NotAllowedError: blocked; NotFoundError: none;
// NotReadableError: in use by another program). Audio alone still opens.
const failingCamera = `(() => {
  window.__camError = 'NotAllowedError';
  const orig = MediaDevices.prototype.getUserMedia;
  MediaDevices.prototype.getUserMedia = function(c) {
    if (c && c.video && window.__camError) {
      return Promise.reject(new DOMException('the test says: ' + window.__camError, window.__camError));
    }
    return orig.call(this, c);
  };
})();`

// countSignaling counts the signaling messages the page sends, by type
// (window.__sent.publish, window.__sent.offer: the offers of its publish
// connections), and the offers its peer connections make (window.__offers).
const countSignaling = `(() => {
  window.__sent = {};
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function(d) {
    try { const m = JSON.parse(d); window.__sent[m.type] = (window.__sent[m.type] || 0) + 1; } catch (e) {}
    return send.call(this, d);
  };
  window.__offers = 0;
  const offer = RTCPeerConnection.prototype.createOffer;
  RTCPeerConnection.prototype.createOffer = function(...args) { window.__offers++; return offer.apply(this, args); };
})();`

// TestPrejoinDeviceErrors: an invite link opens the pre-join screen on a
// browser whose camera cannot be opened. The screen says, in words, what is
// wrong and what to do, for a blocked camera, no camera and a camera in use by
// another program (each after "Try again"); the user joins without the camera
// and the other participant hears her (audio decoded, no video).
func TestPrejoinDeviceErrors(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("nocam%d", time.Now().UnixNano()%100000)
	a := openPageScripts(t, "a", fmt.Sprintf("%s/?room=%s", srv.URL(), room), []string{failingCamera})

	type shown struct {
		Kind   string `json:"kind"`
		Device string `json:"device"`
		Title  string `json:"title"`
		Help   string `json:"help"`
		Retry  string `json:"retry"`
		Alert  string `json:"alert"`
		Off    string `json:"off"`
		Count  int    `json:"count"`
	}
	errorShown := func() shown {
		var r shown
		_ = a.eval(`(() => { const box = document.querySelector('#prejoinErrors');
		  const e = box.hidden ? null : box.querySelector('.prejoin-error');
		  return {kind: e ? e.dataset.kind : '', device: e ? e.dataset.device : '',
		    title: e ? e.querySelector('strong').textContent : '', help: e ? e.querySelector('p').textContent : '',
		    retry: e ? e.querySelector('button').textContent : '', alert: box.getAttribute('role') || '',
		    off: document.querySelector('#prejoinOff').textContent, count: box.querySelectorAll('.prejoin-error').length}; })()`, &r)
		return r
	}
	cases := []struct {
		name, kind, title string
		help              []string
	}{
		{"NotAllowedError", "blocked", "Camera: access is blocked", []string{"Allow it in the browser", "address bar", "join without it"}},
		{"NotFoundError", "notfound", "Camera: none found", []string{"Connect one", "join without it"}},
		{"NotReadableError", "inuse", "Camera: in use by another program", []string{"Close the other program", "join without it"}},
	}
	for i, c := range cases {
		if i > 0 {
			if err := a.eval(fmt.Sprintf(`(() => { window.__camError = %q;
			  document.querySelector('#prejoinErrors .prejoin-error button').click(); return true; })()`, c.name), nil); err != nil {
				t.Fatal(err)
			}
		}
		var got shown
		a.waitFor("the words for "+c.name, func() (bool, string) {
			got = errorShown()
			return got.Kind == c.kind, fmt.Sprintf("%+v", got)
		})
		if got.Device != "camera" || got.Title != c.title || got.Retry != "Try again" || got.Alert != "alert" || got.Count != 1 {
			t.Errorf("%s: shown %+v, want the camera's error %q with Try again, in an alert", c.name, got, c.title)
		}
		for _, h := range c.help {
			if !strings.Contains(got.Help, h) {
				t.Errorf("%s: help %q does not say %q", c.name, got.Help, h)
			}
		}
		if got.Off != "No camera picture" {
			t.Errorf("%s: the preview says %q", c.name, got.Off)
		}
		t.Logf("%s: %q: %q", c.name, got.Title, got.Help)
	}

	// Join without the camera: the microphone alone is published, no error.
	if err := a.eval(`(() => { document.querySelector('#prejoinName').value = 'Nocam'; return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	a.click("#prejoinJoin")
	b := openPage(t, "b", fmt.Sprintf("%s/?room=%s&name=b&publish=0", srv.URL(), room))
	b.waitFor("Nocam's sound", func() (bool, string) {
		tm, ok := find(b.tiles(), "Nocam", "camera")
		return ok && tm.Samples > 0, fmt.Sprintf("%+v", tm)
	})
	var st struct {
		Audio   int    `json:"audio"`
		Video   int    `json:"video"`
		Error   string `json:"error"`
		Status  string `json:"status"`
		NoVideo bool   `json:"noVideo"`
	}
	if err := a.eval(`(() => { const s = window.parley.room.getLocalStreams().find(s => s.kind() === 'camera');
	  const e = document.querySelector('#error');
	  return {audio: s.getMediaStream().getAudioTracks().length, video: s.getMediaStream().getVideoTracks().length,
	    error: e.hidden ? '' : e.textContent, status: s.status(), noVideo: document.querySelector('#local').classList.contains('novideo')}; })()`, &st); err != nil {
		t.Fatal(err)
	}
	if st.Audio != 1 || st.Video != 0 || st.Error != "" || st.Status != "PUBLISHING" || !st.NoVideo {
		t.Errorf("joined without the camera: %+v, want the microphone alone publishing and no error", st)
	}
	tm, _ := find(b.tiles(), "Nocam", "camera")
	if tm.Frames != 0 {
		t.Errorf("b decoded %v frames from a page without a camera", tm.Frames)
	}
}

// audioIn is what a page receives of the audio of name's camera tile.
type audioIn struct {
	Packets float64 `json:"packets"`
	Samples float64 `json:"samples"`
	Energy  float64 `json:"energy"`
}

func (p *page) audioFrom(name string) audioIn {
	var r audioIn
	_ = p.eval(fmt.Sprintf(`(async () => {
	  const t = document.querySelector(%q); const ms = t && t.querySelector('video').srcObject;
	  const tr = ms && ms.getAudioTracks()[0]; if (!tr) return {};
	  for (const pc of window.__pcs) {
	    if (pc.connectionState === 'closed') continue;
	    let out = null;
	    (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.trackIdentifier === tr.id)
	      out = {packets: s.packetsReceived || 0, samples: s.totalSamplesReceived || 0, energy: s.totalAudioEnergy || 0}; });
	    if (out) return out;
	  }
	  return {};
	})()`, fmt.Sprintf(`#tiles .tile[data-name=%q][data-kind="camera"]`, name)), &r)
	return r
}

// videoBytesFrom is the video bytes a page received of name's camera tile.
func (p *page) videoBytesFrom(name string) float64 {
	var n float64
	_ = p.eval(fmt.Sprintf(`(async () => {
	  const t = document.querySelector(%q); const ms = t && t.querySelector('video').srcObject;
	  const tr = ms && ms.getVideoTracks()[0]; if (!tr) return 0;
	  let n = 0;
	  for (const pc of window.__pcs) {
	    if (pc.connectionState === 'closed') continue;
	    (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.trackIdentifier === tr.id) n += s.bytesReceived || 0; });
	  }
	  return n;
	})()`, fmt.Sprintf(`#tiles .tile[data-name=%q][data-kind="camera"]`, name)), &n)
	return n
}

// key presses a key on the page (a real key event, as a user would).
func (p *page) key(k string) {
	p.t.Helper()
	// Not typing in a field: the page leaves keys pressed there alone.
	if err := p.eval(`(() => { if (document.activeElement) document.activeElement.blur(); return true; })()`, nil); err != nil {
		p.t.Fatalf("%s: blur: %v", p.name, err)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.KeyEvent(k)); err != nil {
		p.t.Fatalf("%s: press %s: %v", p.name, k, err)
	}
}

// TestInCallDevicesCameraKeyAndPrivateChat, three pages (a with two fake
// microphones, b, c watching):
//   - a switches the microphone in the call: the sender gets the other
//     microphone's track with no new offer (no publish or offer message, no
//     createOffer), and b goes on decoding a's sound;
//   - a picks another speaker: the media elements of the call play on it
//     (their sinkId);
//   - key V turns a's camera off: b learns it (PRESENCE), shows a's initial
//     instead of a frozen picture, and receives no more video bytes from a; V
//     again brings the picture back;
//   - c joins from the pre-join screen with the camera off: after its first
//     frames b receives no video bytes from it and shows its initial; V on c's
//     page brings its picture to b;
//   - b's private message to a is marked private on a's page (in words, as
//     text) and never reaches c.
func TestInCallDevicesCameraKeyAndPrivateChat(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("dev%d", time.Now().UnixNano()%100000)
	a := openPageScripts(t, "a", fmt.Sprintf("%s/?room=%s&name=a", srv.URL(), room), []string{countSignaling}, twoDevices)
	b := openPage(t, "b", fmt.Sprintf("%s/?room=%s&name=b", srv.URL(), room))
	c := openPage(t, "c", fmt.Sprintf("%s/?room=%s", srv.URL(), room))
	c.waitFor("the pre-join screen", func() (bool, string) {
		s := c.text("#prejoinOff")
		return s == "Starting the camera…" || s == "", s
	})
	c.click("#prejoinCam")
	if err := c.eval(`(() => { document.querySelector('#prejoinName').value = 'c'; return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	c.click("#prejoinJoin")
	b.waitDecoding("a", "camera", true)
	a.waitDecoding("b", "camera", true)

	// The microphone, switched in the call.
	type sending struct {
		Label   string         `json:"label"`
		Sender  string         `json:"sender"`
		Offers  int            `json:"offers"`
		Sent    map[string]int `json:"sent"`
		PCs     int            `json:"pcs"`
		Options []string       `json:"options"`
		Value   string         `json:"value"`
	}
	readSending := func() sending {
		var r sending
		_ = a.eval(`(() => { const s = window.parley.room.getLocalStreams().find(s => s.kind() === 'camera');
		  const tr = s.getMediaStream().getAudioTracks()[0];
		  const snd = s.getPeerConnection().getSenders().find(x => x.track && x.track.kind === 'audio');
		  const sel = document.querySelector('#callMic');
		  return {label: tr.label, sender: snd ? snd.track.label : '', offers: window.__offers, sent: window.__sent,
		    pcs: window.__pcs.length, options: [...sel.options].filter(o => o.value).map(o => o.textContent), value: sel.value}; })()`, &r)
		return r
	}
	a.click("#devicesButton")
	var before sending
	// Chromium lists the default input besides the two fake microphones.
	other := ""
	a.waitFor("two microphones in the in-call menu", func() (bool, string) {
		before = readSending()
		other = ""
		for _, o := range before.Options {
			if o != before.Label && !strings.Contains(o, "Default") {
				other = o
			}
		}
		return len(before.Options) >= 2 && other != "", fmt.Sprintf("%+v", before)
	})
	if err := a.eval(fmt.Sprintf(`(() => { const sel = document.querySelector('#callMic');
	  sel.value = [...sel.options].find(o => o.textContent === %q).value; sel.dispatchEvent(new Event('change')); return true; })()`, other), nil); err != nil {
		t.Fatal(err)
	}
	var after sending
	a.waitFor("the other microphone on the sender", func() (bool, string) {
		after = readSending()
		return after.Label == other && after.Sender == other, fmt.Sprintf("%+v", after)
	})
	t.Logf("microphone %q -> %q; signaling before %v, after %v", before.Label, after.Label, before.Sent, after.Sent)
	if after.Offers != before.Offers || after.Sent["publish"] != before.Sent["publish"] || after.Sent["offer"] != before.Sent["offer"] || after.PCs != before.PCs {
		t.Errorf("the microphone switch renegotiated: before %+v, after %+v", before, after)
	}
	a0 := b.audioFrom("a")
	b.waitFor("a's sound after the switch", func() (bool, string) {
		now := b.audioFrom("a")
		return now.Packets > a0.Packets+100 && now.Samples > a0.Samples && now.Energy > a0.Energy, fmt.Sprintf("%+v then %+v", a0, now)
	})

	// The speaker: every media element of the call plays on the chosen output.
	var sp struct {
		Can     bool     `json:"can"`
		Options []string `json:"options"`
		Value   string   `json:"value"`
	}
	if err := a.eval(`(() => { const sel = document.querySelector('#callSpeaker');
	  return {can: 'setSinkId' in HTMLMediaElement.prototype, options: [...sel.options].map(o => o.value), value: sel.value}; })()`, &sp); err != nil {
		t.Fatal(err)
	}
	t.Logf("speakers offered: %q (selected %q)", sp.Options, sp.Value)
	if !sp.Can {
		t.Fatal("this Chromium has no setSinkId")
	}
	var pick string
	for _, o := range sp.Options {
		if o != "" && o != sp.Value {
			pick = o
		}
	}
	if pick == "" {
		t.Fatalf("the speaker menu offers no other output than %q: %q", sp.Value, sp.Options)
	}
	if err := a.eval(fmt.Sprintf(`(() => { const sel = document.querySelector('#callSpeaker');
	  sel.value = %q; sel.dispatchEvent(new Event('change')); return true; })()`, pick), nil); err != nil {
		t.Fatal(err)
	}
	a.waitFor("the call's media elements on the chosen speaker", func() (bool, string) {
		var sinks []string
		_ = a.eval(`[...document.querySelectorAll('#tiles video, #tiles audio')].map(e => e.sinkId)`, &sinks)
		ok := len(sinks) > 0
		for _, s := range sinks {
			ok = ok && s == pick
		}
		return ok, fmt.Sprintf("%q", sinks)
	})
	if err := a.eval(`(() => { document.querySelector('#devicesButton').click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}

	// Key V: a's camera off, then on.
	presenceOf := func(name string) (camOff, tile string) {
		var r struct{ CamOff, Tile string }
		_ = b.eval(fmt.Sprintf(`(() => { const p = window.parley.room.getParticipant(%q);
		  const t = document.querySelector('#tiles .tile[data-name=%q][data-kind="camera"]');
		  return {CamOff: String(!!(p && p.presence().camOff)),
		    Tile: t ? (t.dataset.camOff || '') + (t.classList.contains('cam-off') ? ' shown' : ' not shown') : 'no tile'}; })()`, name, name), &r)
		return r.CamOff, r.Tile
	}
	presence := func() (string, string) { return presenceOf("a") }
	x0 := b.videoBytesFrom("a")
	time.Sleep(2 * time.Second)
	x1 := b.videoBytesFrom("a")
	a.key("v")
	b.waitFor("a's camera off on b's page", func() (bool, string) {
		off, tile := presence()
		return off == "true" && tile == "true shown", off + " " + tile
	})
	if s := a.text("#muteVideo"); s != "Start camera" {
		t.Errorf("a's camera button says %q after V", s)
	}
	time.Sleep(time.Second) // what was on its way
	y0 := b.videoBytesFrom("a")
	time.Sleep(2 * time.Second)
	y1 := b.videoBytesFrom("a")
	t.Logf("video bytes from a in 2 s: %.0f with the camera on, %.0f with it off", x1-x0, y1-y0)
	if x1-x0 < 20000 || y1-y0 > 1000 {
		t.Errorf("b received %.0f video bytes from a in 2 s with the camera on and %.0f with it off", x1-x0, y1-y0)
	}
	a.key("v")
	b.waitFor("a's camera on again on b's page", func() (bool, string) {
		off, tile := presence()
		return off == "false" && tile == "false not shown", off + " " + tile
	})
	b.waitDecoding("a", "camera", true)

	// c joined with the camera off: after its first frames, nothing; V brings the picture.
	b.waitFor("c's camera off on b's page", func() (bool, string) {
		off, tile := presenceOf("c")
		return off == "true" && tile == "true shown", off + " " + tile
	})
	b.waitFor("c's sound", func() (bool, string) {
		s := b.audioFrom("c")
		return s.Packets > 0, fmt.Sprintf("%+v", s)
	})
	time.Sleep(3 * time.Second) // the first frames (two seconds), and what was on its way
	z0 := b.videoBytesFrom("c")
	time.Sleep(2 * time.Second)
	z1 := b.videoBytesFrom("c")
	t.Logf("video bytes from c (joined with the camera off) in 2 s: %.0f", z1-z0)
	if z1-z0 > 1000 {
		t.Errorf("b received %.0f video bytes in 2 s from c, whose camera is off", z1-z0)
	}
	c.key("v")
	b.waitFor("c's camera on, on b's page", func() (bool, string) {
		off, tile := presenceOf("c")
		return off == "false" && tile == "false not shown", off + " " + tile
	})
	b.waitDecoding("c", "camera", true)

	// A private message, b to a: marked on a's page, and not on c's.
	if err := b.eval(`(() => { document.querySelector('#chatTo').value = 'a';
	  document.querySelector('#chatText').value = 'psst <b>only you</b>';
	  document.querySelector('#chatSend').click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	type line struct {
		Class string `json:"class"`
		From  string `json:"from"`
		Mark  string `json:"mark"`
		Text  string `json:"text"`
		Bold  int    `json:"bold"`
	}
	lineOf := func(p *page, text string) (line, bool) {
		var r []line
		_ = p.eval(fmt.Sprintf(`[...document.querySelectorAll('#chatLog .chat-line')].filter(l => l.textContent.includes(%q)).map(l => ({
		  class: l.className, from: l.querySelector('.from').textContent,
		  mark: (l.querySelector('.private-mark') || {}).textContent || '',
		  text: l.querySelector('.text').textContent, bold: l.querySelectorAll('b').length}))`, text), &r)
		if len(r) == 0 {
			return line{}, false
		}
		return r[0], true
	}
	var got line
	a.waitFor("b's private message", func() (bool, string) {
		var ok bool
		got, ok = lineOf(a, "psst")
		return ok, fmt.Sprintf("%+v", got)
	})
	if !strings.Contains(got.Class, "private") || got.From != "b" || got.Mark != " (private)" || got.Text != "psst <b>only you</b>" || got.Bold != 0 {
		t.Errorf("a shows b's private message as %+v, want it from b, marked (private), as text", got)
	}
	own, ok := lineOf(b, "psst")
	if !ok || !strings.Contains(own.Class, "private") || own.Mark != " \u2192 a" {
		t.Errorf("b shows its own private message as %+v (found %v), want it marked → a", own, ok)
	}
	// Then a message to everyone: once c has it, the private one would have come before.
	if err := b.eval(`(() => { document.querySelector('#chatTo').value = '';
	  document.querySelector('#chatText').value = 'hello all';
	  document.querySelector('#chatSend').click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	c.waitFor("b's message to everyone", func() (bool, string) {
		l, ok := lineOf(c, "hello all")
		return ok, fmt.Sprintf("%+v", l)
	})
	if l, ok := lineOf(c, "psst"); ok {
		t.Errorf("c got b's private message to a: %+v", l)
	}
	if l, _ := lineOf(a, "hello all"); l.Mark != "" || strings.Contains(l.Class, "private") {
		t.Errorf("a shows b's message to everyone as private: %+v", l)
	}
}
