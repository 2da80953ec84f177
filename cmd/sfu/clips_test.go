package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/clips"
)

// TestClipsFromMozchat: `sfu clips from-mozchat` turns a mozchat thread's
// .ini (and notify.ini) into a room preset whose clips block reads as the
// same limits.
func TestClipsFromMozchat(t *testing.T) {
	thread := filepath.Join(t.TempDir(), "mediaForum")
	if err := os.MkdirAll(thread, 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{"mediaforum.ini": ".ini", "notify.ini": "notify.ini"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "pkg", "clips", "testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(thread, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	if code := runClips([]string{"from-mozchat", thread, "--room", "forum-*"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// It is a room preset: --rooms-dir loads it and matches the room.
	rooms := t.TempDir()
	if err := os.WriteFile(filepath.Join(rooms, "forum.yaml"), out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ps, err := access.LoadPresets(rooms)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	preset := ps.Match("forum-travel")
	if preset == nil || preset.Clips == nil {
		t.Fatalf("the preset does not apply to forum-travel:\n%s", out.String())
	}
	got := preset.ClipLimits()
	f, _ := os.Open(filepath.Join(thread, ".ini"))
	defer f.Close()
	ini, err := clips.ReadMozchatINI(f)
	if err != nil {
		t.Fatal(err)
	}
	ini.Settings.Notify = map[string]string{"AR": "supermonster@example.com", "Qwerty": "qwerty@example.com"}
	want, _ := ini.Settings.Apply(clips.DefaultLimits())
	if !reflect.DeepEqual(got, want) || len(preset.Rooms) != 1 || preset.Rooms[0] != "forum-*" {
		t.Errorf("preset %+v\nwant %+v", got, want)
	}
	if got.OnRecorded != clips.OnRecordedPreview || !strings.Contains(out.String(), "mediaFolder") {
		t.Errorf("output:\n%s", out.String())
	}
	if code := runClips([]string{"from-mozchat", filepath.Join(thread, "missing.ini")}, &out, &errb); code == 0 {
		t.Errorf("a missing .ini succeeded")
	}
}
