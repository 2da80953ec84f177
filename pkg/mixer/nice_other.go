//go:build !linux

package mixer

// setNice is a no-op where setpriority is not available.
func setNice(pid, nice int) error { return nil }
