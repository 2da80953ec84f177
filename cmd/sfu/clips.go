package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/clips"
	"github.com/parley/parley/pkg/notify"
	"github.com/parley/parley/pkg/server"
)

// ClipsSettings are the media messages' settings (YAML "clips", flags
// --clips…, --smtp-…): where clips are kept, the settings of rooms no
// preset speaks of (mozchat's keys), and the SMTP server notifications go
// through.
type ClipsSettings struct {
	Enabled bool   `yaml:"enabled"`
	Dir     string `yaml:"dir"`
	// PublicURL is the server as people reach it, for links in e-mails.
	PublicURL string         `yaml:"public_url"`
	Defaults  clips.Settings `yaml:"defaults"`
	SMTP      SMTPSettings   `yaml:"smtp"`
}

// SMTPSettings name the SMTP server notifications go through.
type SMTPSettings struct {
	Addr     string `yaml:"addr"`
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	From     string `yaml:"from"`
}

func init() {
	options = append(options,
		option{flag: "clips", usage: "media messages: voice and video clips posted to rooms (false: off)", boolean: true,
			set: boolOpt(func(c *Config) *bool { return &c.Clips.Enabled })},
		option{flag: "clips-dir", usage: "directory for media messages (<dir>/<room>/)", set: strOpt(func(c *Config) *string { return &c.Clips.Dir })},
		option{flag: "public-url", usage: "the server's address as people reach it (https://meet.example.com), for links in e-mails",
			set: strOpt(func(c *Config) *string { return &c.Clips.PublicURL })},
		option{flag: "smtp-addr", usage: "SMTP server (host:port) for e-mail notifications of new clips (empty: none)",
			set: strOpt(func(c *Config) *string { return &c.Clips.SMTP.Addr })},
		option{flag: "smtp-tls", usage: "starttls (default, port 587), tls (port 465) or none (a relay on this machine)",
			set: strOpt(func(c *Config) *string { return &c.Clips.SMTP.TLS })},
		option{flag: "smtp-username", usage: "SMTP user name", set: strOpt(func(c *Config) *string { return &c.Clips.SMTP.Username })},
		option{flag: "smtp-password", usage: "SMTP password (prefer the environment or the YAML file to a flag)",
			set: strOpt(func(c *Config) *string { return &c.Clips.SMTP.Password })},
		option{flag: "smtp-from", usage: "sender of the notifications (\"Parley <noreply@example.com>\")",
			set: strOpt(func(c *Config) *string { return &c.Clips.SMTP.From })},
	)
}

func defaultClips() ClipsSettings { return ClipsSettings{Enabled: true, Dir: "clips"} }

// clipsConfig makes the server's media-message configuration (nil: off).
func clipsConfig(c Config) (*server.ClipsConfig, error) {
	s := c.Clips
	if !s.Enabled || s.Dir == "" {
		return nil, nil
	}
	defaults, err := s.Defaults.Apply(clips.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("clips.defaults: %w", err)
	}
	// A room's settings are its preset's clips block (--rooms-dir) laid over
	// these.
	cc := &server.ClipsConfig{Dir: s.Dir, PublicURL: s.PublicURL, Defaults: &defaults}
	if s.PublicURL != "" {
		u, err := url.Parse(s.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("public_url %q: write scheme://host[:port], e.g. https://meet.example.com", s.PublicURL)
		}
	}
	if s.SMTP.Addr != "" {
		if s.SMTP.From == "" {
			return nil, errors.New("clips.smtp.from (--smtp-from) is needed to send notifications")
		}
		if s.PublicURL == "" && !strings.HasPrefix(c.Addr, "127.") && !strings.HasPrefix(c.Addr, "localhost") {
			return nil, errors.New("e-mail notifications link to the server: set public_url (--public-url) to its address as people reach it")
		}
		cc.Notify = &notify.Config{SMTP: notify.SMTP{Addr: s.SMTP.Addr, TLS: s.SMTP.TLS, Username: s.SMTP.Username,
			Password: s.SMTP.Password, From: s.SMTP.From}}
	}
	return cc, nil
}

// runClips serves "sfu clips from-mozchat": a mozchat thread's settings as
// a room preset.
func runClips(args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintf(stderr, "Usage: sfu clips from-mozchat THREAD_DIR|THREAD.ini [--room NAME]\n\n"+
			"Prints a room preset (configs/rooms/*.yaml) with the media-message settings of a mozchat thread:\n"+
			"its .ini (maxBlobBytes, maxClipSizeSec, clipLifetimeSec, maxMediaFolderBytes, maxClipCount,\n"+
			"allowVideo, videoOn, onRecorded) and, with notifyUsers, the addresses of its notify.ini.\n")
	}
	if len(args) == 0 || args[0] != "from-mozchat" {
		usage()
		return 2
	}
	fs := flag.NewFlagSet("sfu clips from-mozchat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	roomName := fs.String("room", "", "the room the preset is for (default: the thread's folder name)")
	fs.Usage = usage
	var positional []string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		rest = fs.Args()
		if len(rest) > 0 {
			positional = append(positional, rest[0])
			rest = rest[1:]
		}
	}
	if len(positional) != 1 {
		usage()
		return 2
	}
	path := positional[0]
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, ".ini")
	}
	thread := filepath.Base(filepath.Dir(path))
	if *roomName == "" {
		*roomName = thread
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(stderr, "sfu clips:", err)
		return 1
	}
	ini, err := clips.ReadMozchatINI(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(stderr, "sfu clips:", err)
		return 1
	}
	if ini.NotifyUsers {
		nf, err := os.Open(filepath.Join(filepath.Dir(path), "notify.ini"))
		if err != nil {
			fmt.Fprintln(stderr, "sfu clips: notifyUsers is on:", err)
			return 1
		}
		ini.Settings.Notify, err = clips.ReadMozchatNotify(nf)
		nf.Close()
		if err != nil {
			fmt.Fprintln(stderr, "sfu clips:", err)
			return 1
		}
	}
	if _, err := ini.Settings.Apply(clips.DefaultLimits()); err != nil {
		fmt.Fprintln(stderr, "sfu clips: the thread's settings do not hold together:", err)
		return 1
	}
	b, err := yaml.Marshal(struct {
		Rooms []string       `yaml:"rooms"`
		Clips clips.Settings `yaml:"clips"`
	}{[]string{*roomName}, ini.Settings})
	if err != nil {
		fmt.Fprintln(stderr, "sfu clips:", err)
		return 1
	}
	// What it prints is a room preset as --rooms-dir reads it.
	if _, err := access.ParsePreset(*roomName+".yaml", b); err != nil {
		fmt.Fprintln(stderr, "sfu clips:", err)
		return 1
	}
	fmt.Fprintf(stdout, "# Room preset made from mozchat thread %q by `sfu clips from-mozchat`.\n", thread)
	if len(ini.Ignored) > 0 {
		fmt.Fprintf(stdout, "# Not carried over (Parley has its own): %s\n", strings.Join(ini.Ignored, ", "))
	}
	_, _ = stdout.Write(b)
	return 0
}
