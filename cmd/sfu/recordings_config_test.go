package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The recordings' settings: private by default; public only when said; sizes
// with units; every way in (file, environment, flag); bad values named.
func TestRecordingsConfig(t *testing.T) {
	def, err := loadConfig(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if def.Recordings != "private" || def.RecordMinFree != 1<<30 || def.RecordMaxBytes != 0 || def.RecordMaxDuration != 0 {
		t.Errorf("defaults: recordings %q, min free %d, max bytes %d, max duration %v", def.Recordings, def.RecordMinFree,
			def.RecordMaxBytes, def.RecordMaxDuration)
	}
	sc, err := serverConfig(def, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Recordings.Public || sc.Recordings.MinFreeBytes != 1<<30 || sc.Recordings.LinkTTL != 72*time.Hour {
		t.Errorf("server config from the defaults: %+v", sc.Recordings)
	}

	file := filepath.Join(t.TempDir(), "sfu.yaml")
	if err := os.WriteFile(file, []byte("recordings: public\nrecord_max_bytes: 500MB\nrecord_min_free: 2GiB\nrecord_max_duration: 2h\n"+
		"recordings_url_secret: 0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"--config", file, "--record-min-free", "300M"},
		env(map[string]string{"PARLEY_RECORD_MAX_BYTES": "1GiB"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Recordings != "public" || cfg.RecordMaxBytes != 1<<30 || cfg.RecordMinFree != 300<<20 ||
		time.Duration(cfg.RecordMaxDuration) != 2*time.Hour {
		t.Errorf("loaded: %q %d %d %v", cfg.Recordings, cfg.RecordMaxBytes, cfg.RecordMinFree, cfg.RecordMaxDuration)
	}
	sc, err = serverConfig(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Recordings.Public || sc.Recordings.MaxBytes != 1<<30 || sc.Auth.URLs == nil {
		t.Errorf("server config: %+v, signer %v", sc.Recordings, sc.Auth.URLs)
	}
	if got, err := loadConfig([]string{"--record-max-bytes", "500MB"}, env(nil), &bytes.Buffer{}); err != nil || got.RecordMaxBytes != 500e6 {
		t.Errorf("500MB: %d %v", got.RecordMaxBytes, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--recordings", "open"}, "recordings"},
		{[]string{"--record-max-bytes", "lots"}, "record-max-bytes"},
		{[]string{"--record-min-free", "5 parsecs"}, "record-min-free"},
		{[]string{"--recordings-url-secret", "short"}, "recordings_url_secret"},
		{[]string{"--recordings-link-ttl", "0s"}, "recordings_link_ttl"},
	} {
		_, err := loadConfig(tc.args, env(nil), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}
