//go:build unix

package recorder

import (
	"fmt"
	"syscall"
)

// FreeSpace returns the bytes available to unprivileged users on the file
// system holding dir (statfs's f_bavail × f_bsize).
func FreeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs: %w", err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil //nolint:unconvert // field types differ by platform
}
