//go:build !unix

package recorder

import "errors"

// FreeSpace is not implemented on this platform: a disk space floor cannot
// be checked (the error says so in the log) and recording goes on.
func FreeSpace(dir string) (int64, error) {
	return 0, errors.New("free disk space unknown on this platform")
}
