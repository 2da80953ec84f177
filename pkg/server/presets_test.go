package server_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// roomsDir writes room presets into a fresh directory.
func roomsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A room preset's password, limits, record policy and codecs apply through
// the server; rooms it does not name keep the server's rules.
func TestRoomPresets(t *testing.T) {
	hash, err := access.HashPassword("hunter2", 4)
	if err != nil {
		t.Fatal(err)
	}
	k := hsKey("k1", 'p')
	dir := roomsDir(t, map[string]string{
		"board.yaml": "rooms: [board]\npassword_hash: '" + hash + "'\nrecord: always\nlimits: {max_participants: 2, max_streams: 1}\n",
		"audio.yaml": "rooms: ['audio-*']\ncodecs: [audio/opus]\n",
	})
	srv := tokenServer(t, server.AuthOpen, []auth.Key{k}, func(c *server.Config) {
		c.Auth.RoomsDir = dir
		c.RecordsDir = t.TempDir()
	})

	a := dial(t, srv, client.Options{Username: "a"})
	_, err = a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "board"})
	if errCode(err) != protocol.CodePasswordRequired {
		t.Fatalf("no password: %v", err)
	}
	_, err = a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "board", Password: "Hunter2"})
	if errCode(err) != protocol.CodeWrongPassword {
		t.Fatalf("wrong password: %v", err)
	}
	st, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "board", Password: "hunter2"})
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	if !st.Recording {
		t.Error("record: always, but the room does not record")
	}
	publishCamera(t, a)
	_, err = a.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Kind: protocol.KindScreen, Video: vp8Source(t)})
	if errCode(err) != protocol.CodeTooManyStreams {
		t.Errorf("second stream with max_streams 1: %v", err)
	}
	// A token holder needs no password; the third participant is one too many.
	b := dial(t, srv, client.Options{Token: sign(t, k, "b", "board", "subscribe")})
	join(t, b, "board", "")
	c := dial(t, srv, client.Options{Username: "c"})
	if _, err := c.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "board", Password: "hunter2"}); errCode(err) != protocol.CodeRoomFull {
		t.Errorf("third participant with max_participants 2: %v", err)
	}

	// Codecs: an audio room refuses video, answers Opus.
	d := dial(t, srv, client.Options{Username: "d"})
	join(t, d, "audio-1", "d")
	_, err = d.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t)})
	if errCode(err) != protocol.CodeUnsupportedCodec {
		t.Errorf("video in an audio room: %v", err)
	}
	pub, err := d.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Audio: opusSource(t)})
	if err != nil {
		t.Fatalf("audio in an audio room: %v", err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}

	// Another room: the server's rules (open mode, no password).
	e := dial(t, srv, client.Options{Username: "e"})
	if st := join(t, e, "elsewhere", "e"); st.Recording {
		t.Error("a room without a preset records")
	}
}
