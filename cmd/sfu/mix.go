package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/parley/parley/pkg/mixer"
)

// runMix is "sfu mix MANIFEST [-o OUT] [--mixer-config FILE]": it redoes a
// recording's mix by hand, with a progress bar.
func runMix(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sfu mix", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output file (default: mix.<format> next to the manifest)")
	config := fs.String("mixer-config", getenv("PARLEY_MIXER_CONFIG"), "offline mixer settings, JSON (see configs/offline_mixer.json)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sfu mix MANIFEST [-o OUT] [--mixer-config FILE]\n\nMixes a recorded room session (its manifest.json) into one file.\n\n")
		fs.PrintDefaults()
	}
	// Flags may come after the manifest, as in "sfu mix manifest.json -o out.mp4".
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fs.Usage()
		return 2
	}
	manifest := positional[0]
	settings := mixer.DefaultSettings()
	if *config != "" {
		var err error
		if settings, err = mixer.LoadSettings(*config); err != nil {
			fmt.Fprintln(stderr, "sfu mix:", err)
			return 2
		}
	}
	if *out == "" {
		*out = filepath.Join(filepath.Dir(manifest), "mix."+strings.ToLower(string(settings.Format)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mixer.Mix(ctx, manifest, *out, settings, mixer.ProgressBar(stderr)); err != nil {
		fmt.Fprintln(stderr, "sfu mix:", err)
		return 1
	}
	fmt.Fprintln(stderr, "mixed to", *out)
	return 0
}
