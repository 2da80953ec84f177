package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/parley/parley/pkg/access"
)

// runPassword is "sfu password hash": it reads a room password from standard
// input (never from the command line, where ps shows it) and prints its
// bcrypt hash for a room preset's password_hash.
func runPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "hash" {
		fmt.Fprintln(stderr, "Usage: sfu password hash [--cost N] < password")
		return 2
	}
	fs := flag.NewFlagSet("sfu password hash", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", 12, "bcrypt cost (each step doubles the work of a check, and of a guess)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sfu password hash [--cost N]\n\nReads a room password from standard input (one line) and prints "+
			"its bcrypt hash for password_hash in a room preset (configs/rooms/*.yaml).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "sfu password hash: the password is read from standard input, not from arguments")
		return 2
	}
	fmt.Fprint(stderr, "password: ")
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "\nsfu password hash:", err)
		return 1
	}
	fmt.Fprintln(stderr)
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) > 72 {
		fmt.Fprintln(stderr, "sfu password hash: bcrypt uses at most 72 bytes of a password; choose a shorter one")
		return 2
	}
	h, err := access.HashPassword(pw, *cost)
	if err != nil {
		fmt.Fprintln(stderr, "sfu password hash:", err)
		return 2
	}
	fmt.Fprintln(stdout, h)
	return 0
}
