package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

func code(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// waitLog waits until the server's later log holds want.
func waitLog(t *testing.T, log interface{ String() string }, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the server never logged %q; its log:\n%s", want, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SIGHUP reloads the room presets: a password added to a room applies to
// the next join while the participant already in it stays; a broken file
// keeps the presets in force and the log says why.
func TestSIGHUPReloadsPresets(t *testing.T) {
	dir := t.TempDir()
	preset := filepath.Join(dir, "board.yaml")
	if err := os.WriteFile(preset, []byte("rooms: [board]\nlimits: {max_streams: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, base, log := startSFUWatch(t, buildSFU(t), nil, "--rooms-dir", dir)
	ws := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(name string) *client.Client {
		c, err := client.Dial(ctx, ws, client.Options{Username: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ann := dial("ann")
	if _, err := ann.Join(ctx, client.JoinOptions{Room: "board"}); err != nil {
		t.Fatal(err)
	}

	hash, err := access.HashPassword("open sesame", 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(preset, []byte("rooms: [board]\npassword_hash: '"+hash+"'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "room presets reloaded")
	bob := dial("bob")
	if _, err := bob.Join(ctx, client.JoinOptions{Room: "board"}); code(err) != protocol.CodePasswordRequired {
		t.Fatalf("join after the reload, no password: %v", err)
	}
	if _, err := bob.Join(ctx, client.JoinOptions{Room: "board", Password: "open sesame"}); err != nil {
		t.Fatalf("join with the password: %v", err)
	}
	// ann was not dropped: she sees bob arrive.
	if _, err := ann.WaitEvent(ctx, func(e protocol.Event) bool { return e.Event == protocol.EventJoined && e.Name == "bob" }); err != nil {
		t.Fatalf("ann after the reload: %v", err)
	}

	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("rooms: [x]\npasword: typo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "previous ones stay in force")
	if !strings.Contains(log.String(), "broken.yaml") {
		t.Errorf("the log does not name the broken file:\n%s", log.String())
	}
	carl := dial("carl")
	if _, err := carl.Join(ctx, client.JoinOptions{Room: "board"}); code(err) != protocol.CodePasswordRequired {
		t.Errorf("after a broken reload the password must still be asked: %v", err)
	}
}

func TestPasswordHashCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := runPassword([]string{"hash", "--cost", "4"}, strings.NewReader("correct horse\n"), &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	p, err := access.ParsePreset("t.yaml", []byte("rooms: [r]\npassword_hash: '"+strings.TrimSpace(out.String())+"'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.CheckPassword("correct horse") || p.CheckPassword("correct horse\n") || p.CheckPassword("wrong") {
		t.Error("the printed hash does not check the password read")
	}
	if rc := runPassword([]string{"hash", "secret-on-the-command-line"}, strings.NewReader(""), &out, &errb); rc != 2 {
		t.Errorf("a password as an argument: rc %d", rc)
	}
}
