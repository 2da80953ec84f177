package clips

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestReadMozchatINI(t *testing.T) {
	f, err := os.Open("testdata/mediachat.ini")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ini, err := ReadMozchatINI(f)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ini.Settings.Apply(DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{Enabled: true, MaxBlobBytes: 5_000_000, MaxClipSec: 15, Lifetime: 100 * time.Hour,
		MaxFolderBytes: 50_000_000, MaxClipCount: 25, AllowVideo: true, VideoOn: false, OnRecorded: OnRecordedUpload, AutoPlay: true}
	if l.Enabled != want.Enabled || l.MaxBlobBytes != want.MaxBlobBytes || l.MaxClipSec != want.MaxClipSec ||
		l.Lifetime != want.Lifetime || l.MaxFolderBytes != want.MaxFolderBytes || l.MaxClipCount != want.MaxClipCount ||
		l.AllowVideo != want.AllowVideo || l.VideoOn != want.VideoOn || l.OnRecorded != want.OnRecorded {
		t.Errorf("got %+v\nwant %+v", l, want)
	}
	// The same as the media-chat preset's clips block.
	yb, err := os.ReadFile("testdata/media-chat.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var preset struct {
		Clips Settings `yaml:"clips"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(yb))
	dec.KnownFields(true)
	if err := dec.Decode(&preset); err != nil {
		t.Fatal(err)
	}
	pl, err := preset.Clips.Apply(DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pl, l) {
		t.Errorf("the mozchat .ini reads as %+v\nthe preset as %+v", l, pl)
	}
	for _, k := range []string{"mediaFolder", "iceString", "pollFactor", "title"} {
		if !slices.Contains(ini.Ignored, k) {
			t.Errorf("%s not listed as ignored: %v", k, ini.Ignored)
		}
	}

	// mozchat's mediaForum: "stop" is the preview, notifyUsers with notify.ini.
	f2, _ := os.Open("testdata/mediaforum.ini")
	defer f2.Close()
	forum, err := ReadMozchatINI(f2)
	if err != nil {
		t.Fatal(err)
	}
	if *forum.Settings.OnRecorded != OnRecordedPreview || !forum.NotifyUsers {
		t.Errorf("mediaForum: %+v", forum)
	}
	f3, _ := os.Open("testdata/notify.ini")
	defer f3.Close()
	notify, err := ReadMozchatNotify(f3)
	if err != nil || notify["AR"] != "supermonster@example.com" || len(notify) != 2 {
		t.Errorf("notify.ini: %v %v", notify, err)
	}
	forum.Settings.Notify = notify
	fl, err := forum.Settings.Apply(DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if got := fl.NotifyFor("AR"); len(got) != 1 || got[0] != "qwerty@example.com" {
		t.Errorf("NotifyFor(author AR): %v", got)
	}

	for name, text := range map[string]string{
		"bad number":   "[common]\nmaxBlobBytes=lots\n",
		"bad bool":     "[client]\nallowVideo=maybe\n",
		"bad mode":     "[client]\nonRecorded=\"play\"\n",
		"open quote":   "[client]\ntitle=\"x\n",
		"no equals":    "[common]\nmaxBlobBytes\n",
		"open section": "[common\n",
	} {
		if _, err := ReadMozchatINI(strings.NewReader(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Values that read but do not hold together are refused by Apply.
	bad, err := ReadMozchatINI(strings.NewReader("[common]\nmaxBlobBytes=5000000\nmaxMediaFolderBytes=1000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Settings.Apply(DefaultLimits()); err == nil {
		t.Errorf("a folder smaller than one clip accepted")
	}
}
