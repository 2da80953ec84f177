package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
)

// TestRoomConvergesOnDecodableCodec: a page prefers H.264 (?codec=H264), but a
// member of the room can decode only VP8; the server steers the page to VP8,
// and that member receives VP8, not a stream it cannot show.
func TestRoomConvergesOnDecodableCodec(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("codec%d", time.Now().UnixNano()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws := strings.Replace(srv.URL(), "http", "ws", 1) + "/ws"
	vp8only, err := client.Dial(ctx, ws, client.Options{Username: "vp8only"})
	if err != nil {
		t.Fatal(err)
	}
	defer vp8only.Close()
	if _, err := vp8only.Join(ctx, client.JoinOptions{Room: room, Name: "vp8only",
		Codecs: []string{"audio/opus", "video/VP8"}}); err != nil {
		t.Fatal(err)
	}

	p := openPage(t, "h264fan", fmt.Sprintf("%s/?room=%s&name=h264fan&codec=H264", srv.URL(), room))
	p.waitFor("status ESTABLISHED", func() (bool, string) {
		s := p.text("#status")
		return s == "ESTABLISHED", s
	})
	tracks, err := vp8only.WaitRemoteTracks(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	for _, tr := range tracks {
		if tr.Kind() != "video" {
			continue
		}
		if tr.Codec() != "video/VP8" {
			t.Errorf("the VP8-only member receives %s", tr.Codec())
		}
		if tr.Packets() < 20 || !tr.FirstPacketKeyframe() {
			t.Errorf("VP8 from the page: %d packets, first a keyframe: %v", tr.Packets(), tr.FirstPacketKeyframe())
		}
	}

	// Without such a member, the page's preference stands: a second page
	// in another room publishes H.264 to a member who decodes everything.
	room2 := room + "b"
	any, err := client.Dial(ctx, ws, client.Options{Username: "any"})
	if err != nil {
		t.Fatal(err)
	}
	defer any.Close()
	if _, err := any.Join(ctx, client.JoinOptions{Room: room2, Name: "any"}); err != nil {
		t.Fatal(err)
	}
	openPage(t, "h264fan2", fmt.Sprintf("%s/?room=%s&name=h264fan2&codec=H264", srv.URL(), room2))
	tracks, err = any.WaitRemoteTracks(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range tracks {
		if tr.Kind() == "video" && tr.Codec() != "video/H264" {
			t.Errorf("with no constraint in the room the page's preferred H.264 was not used: %s", tr.Codec())
		}
	}
}
