package access

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/clips"
	"github.com/parley/parley/pkg/protocol"
)

func writePresets(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func presetPolicy(t *testing.T, mode string, files map[string]string) *Policy {
	t.Helper()
	v, err := auth.NewVerifier([]auth.Key{key}, auth.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Mode: mode, Tokens: v, Now: func() time.Time { return now }, RoomsDir: writePresets(t, files)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func errCode(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// A cheap hash for tests (bcrypt's minimum cost).
func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := HashPassword(pw, 4)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestMatchMostSpecific(t *testing.T) {
	p := presetPolicy(t, ModeOpen, map[string]string{
		"a-all.yaml":   "rooms: ['*']\n",
		"b-team.yaml":  "rooms: ['team-*']\n",
		"c-teama.yaml": "rooms: ['team-a*', 'x?']\n",
		"d-exact.yaml": "rooms: [team-alpha]\n",
		"notes.txt":    "not a preset",
	})
	for room, want := range map[string]string{"team-alpha": "d-exact.yaml", "team-abc": "c-teama.yaml",
		"team-b": "b-team.yaml", "lobby": "a-all.yaml", "xy": "c-teama.yaml"} {
		if got := p.Presets().Match(room); got == nil || got.Name() != want {
			t.Errorf("room %q: preset %v, want %s", room, got, want)
		}
	}
	if p.Presets().Len() != 4 {
		t.Errorf("%d presets", p.Presets().Len())
	}
}

func TestPresetErrors(t *testing.T) {
	for body, want := range map[string]string{
		"grants: [chat]\n":                        "no rooms",
		"rooms: ['[']\n":                          "not a valid glob",
		"rooms: [r]\npasword_hash: x\n":           "pasword_hash",
		"rooms: [r]\npassword_hash: plain\n":      "bcrypt",
		"rooms: [r]\ngrants: [publsh]\n":          "publsh",
		"rooms: [r]\ngrants: [admin]\n":           "admin",
		"rooms: [r]\nrecord: sometimes\n":         "sometimes",
		"rooms: [r]\ncodecs: [VP8]\n":             "MIME",
		"rooms: [r]\nlimits: {max_streams: -1}\n": "negative",
		// The clips block: mozchat's keys, each checked.
		"rooms: [r]\nclips: {maxBlobByte: 5}\n":                                     "maxBlobByte",
		"rooms: [r]\nclips: {maxBlobBytes: 0}\n":                                    "maxBlobBytes",
		"rooms: [r]\nclips: {maxBlobBytes: 2000000000}\n":                           "maxBlobBytes",
		"rooms: [r]\nclips: {maxClipSizeSec: 0}\n":                                  "maxClipSizeSec",
		"rooms: [r]\nclips: {clipLifetimeSec: -1}\n":                                "clipLifetimeSec",
		"rooms: [r]\nclips: {maxMediaFolderBytes: -1}\n":                            "maxMediaFolderBytes",
		"rooms: [r]\nclips: {maxBlobBytes: 5000, maxMediaFolderBytes: 4000}\n":      "below maxBlobBytes",
		"rooms: [r]\nclips: {maxClipCount: -2}\n":                                   "maxClipCount",
		"rooms: [r]\nclips: {onRecorded: later}\n":                                  "onRecorded",
		"rooms: [r]\nclips: {allowVideo: sometimes}\n":                              "line 2",
		"rooms: [r]\nclips: {notify: {ann: not-an-address}}\n":                      "notify",
		"rooms: [r]\nclips: {enabled: false, maxBlobBytes: -1}\n":                   "maxBlobBytes",
		"rooms: [r]\nclips: {maxClipSizeSec: 15, maxBlobBytes: 5000000, mode: x}\n": "mode",
	} {
		if _, err := ParsePreset("x.yaml", []byte(body)); err == nil || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "x.yaml") {
			t.Errorf("%q: %v, want an error naming x.yaml and %q", body, err, want)
		}
	}
	dir := writePresets(t, map[string]string{"a.yaml": "rooms: [r]\n", "b.yaml": "rooms: [r]\n"})
	if _, err := LoadPresets(dir); err == nil || !strings.Contains(err.Error(), "both name") {
		t.Errorf("two presets for one room: %v", err)
	}
	// A block that holds on its own but not over the server's defaults (a
	// folder smaller than their largest clip) fails the load, naming the file.
	dir = writePresets(t, map[string]string{"small.yaml": "rooms: [r]\nclips: {maxMediaFolderBytes: 1000}\n"})
	if _, err := LoadPresets(dir); err == nil || !strings.Contains(err.Error(), "small.yaml") ||
		!strings.Contains(err.Error(), "maxMediaFolderBytes") {
		t.Errorf("a folder below the defaults' clip size: %v", err)
	}
	p, err := ParsePreset("x.yaml", []byte("rooms: [r]\nrecord: on request\n"))
	if err != nil || p.RecordPolicy() != RecordOnRequest {
		t.Errorf("record: on request: %v %v", p, err)
	}
}

func TestPresetGrantsAndPublishers(t *testing.T) {
	p := presetPolicy(t, ModeToken, map[string]string{
		"webinar.yaml": "rooms: ['webinar-*']\ngrants: [subscribe, chat]\npublishers: [moderators, speaker-1]\n" +
			"limits: {max_participants: 200, max_streams: 1}\n",
	})
	// Without a token: the preset's grants, even in token mode.
	a, err := p.Admit(JoinRequest{Room: "webinar-1", Name: "guest"})
	if err != nil || a.Grants.PublishesAny() || !a.Grants.Chat || !a.Subscribe || *a.MaxParticipants != 200 || *a.MaxStreams != 1 {
		t.Fatalf("guest: %+v %v", a, err)
	}
	// A token adds its grants; publishing still needs to be among the publishers.
	pub := token(t, p, auth.Spec{Identity: "somebody", Room: "webinar-*", Grants: auth.MustParseGrants("publish")})
	if a, _ := p.Admit(JoinRequest{Room: "webinar-1", Token: pub}); a.Grants.PublishesAny() || !a.Grants.Chat {
		t.Errorf("a publisher not listed: %v", a.Grants)
	}
	speaker := token(t, p, auth.Spec{Identity: "speaker-1", Room: "webinar-*", Grants: auth.MustParseGrants("publish")})
	if a, _ := p.Admit(JoinRequest{Room: "webinar-1", Token: speaker}); !a.Grants.Camera {
		t.Errorf("the listed speaker: %v", a.Grants)
	}
	mod := token(t, p, auth.Spec{Identity: "host", Room: "webinar-*", Grants: auth.MustParseGrants("publish", "moderate")})
	if a, _ := p.Admit(JoinRequest{Room: "webinar-1", Token: mod}); !a.Grants.Camera {
		t.Errorf("a moderator: %v", a.Grants)
	}
	// Other rooms keep the mode's rules.
	_, err = p.Admit(JoinRequest{Room: "standup", Name: "guest"})
	forbidden(t, err, "access token only")
}

func TestPresetPassword(t *testing.T) {
	p := presetPolicy(t, ModeOpen, map[string]string{
		"board.yaml": "rooms: [board]\npassword_hash: '" + hash(t, "s3cret pass") + "'\n",
	})
	req := JoinRequest{Room: "board", Name: "ann", Remote: "192.0.2.7:5000"}
	if _, err := p.Admit(req); errCode(err) != protocol.CodePasswordRequired {
		t.Fatalf("no password: %v", err)
	}
	req.Password = "guess"
	if _, err := p.Admit(req); errCode(err) != protocol.CodeWrongPassword {
		t.Fatalf("wrong password: %v", err)
	}
	req.Password = "s3cret pass"
	if _, err := p.Admit(req); err != nil {
		t.Fatalf("right password: %v", err)
	}
	// A token for the room is its holder's credential: no password.
	tok := token(t, p, auth.Spec{Identity: "t", Room: "board", Grants: auth.MustParseGrants("subscribe")})
	if _, err := p.Admit(JoinRequest{Room: "board", Token: tok}); err != nil {
		t.Errorf("token holder: %v", err)
	}

	// Wrong guesses are limited per address and room: after the burst even
	// the right password gets RATE_LIMITED, without being checked.
	clock := now
	p.guesses.nowFunc = func() time.Time { return clock }
	req.Remote = "198.51.100.9:1234"
	for i := 0; i < guessBurst; i++ {
		req.Password = "wrong"
		if _, err := p.Admit(req); errCode(err) != protocol.CodeWrongPassword {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	req.Password = "s3cret pass"
	if _, err := p.Admit(req); errCode(err) != protocol.CodeRateLimited || !strings.Contains(err.Error(), "try again in") {
		t.Fatalf("after %d wrong guesses: %v", guessBurst, err)
	}
	// Another address is not affected; the limited one recovers.
	other := req
	other.Remote = "198.51.100.10:1"
	if _, err := p.Admit(other); err != nil {
		t.Errorf("another address: %v", err)
	}
	clock = clock.Add(guessEvery)
	if _, err := p.Admit(req); err != nil {
		t.Errorf("after waiting: %v", err)
	}
}

func TestPresetRecordPolicy(t *testing.T) {
	p := presetPolicy(t, ModeToken, map[string]string{
		"never.yaml":  "rooms: [quiet]\ngrants: [publish, subscribe, record]\nrecord: never\n",
		"always.yaml": "rooms: [court]\ngrants: [publish, subscribe]\nrecord: always\n",
	})
	_, err := p.Admit(JoinRequest{Room: "quiet", Name: "a", Record: true})
	forbidden(t, err, "never recorded")
	a, err := p.Admit(JoinRequest{Room: "quiet", Name: "a"})
	if err != nil || !a.NeverRecord() {
		t.Fatalf("quiet: %+v %v", a, err)
	}
	if _, err := a.CheckPublish(protocol.KindCamera, cameraOffer, true); errCode(err) != protocol.CodeForbidden {
		t.Errorf("publish with record in a never-recorded room: %v", err)
	}
	// always: recorded whatever the participant asks, grant or not.
	a, err = p.Admit(JoinRequest{Room: "court", Name: "b", Record: true})
	if err != nil || !a.Record || a.Grants.Record {
		t.Fatalf("court: %+v %v", a, err)
	}
	if _, err := a.CheckPublish(protocol.KindCamera, cameraOffer, true); err != nil {
		t.Errorf("publish with record in an always-recorded room: %v", err)
	}
}

func TestPresetCodecs(t *testing.T) {
	p := presetPolicy(t, ModeOpen, map[string]string{"audio.yaml": "rooms: ['audio-*']\ncodecs: [audio/opus]\n"})
	a, err := p.Admit(JoinRequest{Room: "audio-1", Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	audioOnly := strings.Split(cameraOffer, "m=video")[0]
	out, err := a.CheckPublish(protocol.KindCamera, audioOnly, false)
	if err != nil || !strings.Contains(out, "opus") {
		t.Fatalf("audio: %v\n%s", err, out)
	}
	if _, err := a.CheckPublish(protocol.KindCamera, cameraOffer, false); errCode(err) != protocol.CodeUnsupportedCodec ||
		!strings.Contains(err.Error(), "audio/opus") {
		t.Errorf("video in an audio-only room: %v", err)
	}
}

func TestFilterOffer(t *testing.T) {
	offer := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n" +
		"a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n" +
		"a=rtpmap:102 H264/90000\r\na=fmtp:102 profile-level-id=42e01f\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"
	out, err := FilterOffer(offer, []string{"video/H264"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\n") || strings.Contains(out, "VP8") ||
		strings.Contains(out, "apt=96") || !strings.Contains(out, "apt=102") || !strings.Contains(out, "a=mid:0") {
		t.Errorf("filtered offer:\n%s", out)
	}
}

func TestReloadKeepsOldOnError(t *testing.T) {
	dir := writePresets(t, map[string]string{"a.yaml": "rooms: [r]\ngrants: [subscribe]\n"})
	p, err := New(Config{RoomsDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("rooms: [r]\ngrants: [chat]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReloadPresets(); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.Admit(JoinRequest{Room: "r", Name: "x"}); !a.Grants.Chat || a.Grants.Subscribe {
		t.Errorf("after reload: %v", a.Grants)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("rooms: [r2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReloadPresets(); err == nil || !strings.Contains(err.Error(), "b.yaml") {
		t.Fatalf("bad file: %v", err)
	}
	if a, _ := p.Admit(JoinRequest{Room: "r", Name: "x"}); !a.Grants.Chat {
		t.Errorf("a bad reload changed the presets: %v", a.Grants)
	}
}

// A room's clip settings are its preset's clips block laid over the server's
// defaults; a reload applies to the next call, a broken one keeps the old.
func TestPresetClipLimits(t *testing.T) {
	defs := clips.DefaultLimits()
	defs.MaxBlobBytes, defs.MaxClipSec, defs.OnRecorded = 2_000_000, 30, clips.OnRecordedPreview
	dir := writePresets(t, map[string]string{
		"chat.yaml": "rooms: ['chat-*']\nclips:\n  maxClipSizeSec: 15\n  onRecorded: stop\n  videoOn: true\n" +
			"  notify: {ann: ann@example.com}\n",
		"off.yaml":   "rooms: [quiet]\nclips: {enabled: false}\n",
		"plain.yaml": "rooms: [plain]\n",
	})
	p, err := New(Config{RoomsDir: dir, ClipDefaults: &defs})
	if err != nil {
		t.Fatal(err)
	}
	chat := p.ClipLimits("chat-1")
	if chat.MaxClipSec != 15 || chat.MaxBlobBytes != 2_000_000 || chat.OnRecorded != clips.OnRecordedPreview || !chat.VideoOn ||
		chat.Notify["ann"] != "ann@example.com" || !chat.Enabled {
		t.Errorf("chat-1: %+v", chat)
	}
	if l := p.ClipLimits("quiet"); l.Enabled {
		t.Errorf("quiet: %+v", l)
	}
	for _, room := range []string{"plain", "lobby"} {
		if l := p.ClipLimits(room); l.MaxBlobBytes != 2_000_000 || l.MaxClipSec != 30 || l.VideoOn {
			t.Errorf("%s: %+v, want the defaults", room, l)
		}
	}

	if err := os.WriteFile(filepath.Join(dir, "chat.yaml"), []byte("rooms: ['chat-*']\nclips: {maxClipSizeSec: 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReloadPresets(); err != nil {
		t.Fatal(err)
	}
	if l := p.ClipLimits("chat-1"); l.MaxClipSec != 5 || l.VideoOn || len(l.Notify) != 0 {
		t.Errorf("after the reload: %+v", l)
	}
	// A block that does not hold together with these defaults (a folder
	// smaller than their 2 MB clips) is refused and the presets stay.
	if err := os.WriteFile(filepath.Join(dir, "chat.yaml"), []byte("rooms: ['chat-*']\nclips: {maxMediaFolderBytes: 1000000}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReloadPresets(); err == nil || !strings.Contains(err.Error(), "chat.yaml") {
		t.Fatalf("a block below the defaults: %v", err)
	}
	if l := p.ClipLimits("chat-1"); l.MaxClipSec != 5 {
		t.Errorf("a bad reload changed the limits: %+v", l)
	}
	if _, err := New(Config{ClipDefaults: &clips.Limits{Enabled: true}}); err == nil {
		t.Errorf("invalid clip defaults accepted")
	}
}

// The example presets shipped in configs/rooms load.
func TestExamplePresetsLoad(t *testing.T) {
	ps, err := LoadPresets("../../configs/rooms")
	if err != nil {
		t.Fatal(err)
	}
	// The media-message presets, shaped after mozchat's modes.
	forum, chat, stream := ps.Match("forum-travel"), ps.Match("chat-family"), ps.Match("walkie-site")
	if forum == nil || forum.Name() != "media-forum.yaml" || chat == nil || chat.Name() != "media-chat.yaml" ||
		stream == nil || stream.Name() != "voice-stream.yaml" {
		t.Fatalf("media presets: %v %v %v", forum, chat, stream)
	}
	f := forum.ClipLimits()
	if !f.Enabled || f.OnRecorded != clips.OnRecordedPreview || f.AutoPlay || f.MaxBlobBytes < 100_000_000 ||
		f.MaxClipSec < 600 || f.Lifetime < 30*24*time.Hour || f.MaxFolderBytes < 1_000_000_000 || !f.AllowVideo {
		t.Errorf("media-forum (long-lived, large, manual upload): %+v", f)
	}
	c := chat.ClipLimits()
	if want := (clips.Limits{Enabled: true, MaxBlobBytes: 5_000_000, MaxClipSec: 15, Lifetime: 100 * time.Hour,
		MaxFolderBytes: 50_000_000, MaxClipCount: 25, AllowVideo: true, VideoOn: false, OnRecorded: clips.OnRecordedUpload,
		AutoPlay: true}); !reflect.DeepEqual(c, want) {
		t.Errorf("media-chat: %+v\nwant %+v", c, want)
	}
	s := stream.ClipLimits()
	if s.MaxClipSec < 1 || s.MaxClipSec > 2 || s.OnRecorded != clips.OnRecordedUpload || !s.AutoPlay || s.AllowVideo ||
		s.Lifetime > time.Hour || s.MaxBlobBytes > 1_000_000 {
		t.Errorf("voice-stream (1-2 s clips, auto upload and play): %+v", s)
	}
	if l := ps.Match("board").ClipLimits(); !reflect.DeepEqual(l, clips.DefaultLimits()) {
		t.Errorf("board has no clips block: %+v, want the defaults", l)
	}
	if ps.Len() == 0 {
		t.Fatal("no example presets")
	}
	if b := ps.Match("board"); b == nil || !b.CheckPassword("change me") || b.RecordPolicy() != RecordAlways {
		t.Errorf("board.yaml: %+v (its comment says its password is \"change me\")", b)
	}
	if w := ps.Match("webinar-q4"); w == nil || w.Name() != "webinar.yaml" {
		t.Errorf("webinar-q4: %+v", w)
	}
}
