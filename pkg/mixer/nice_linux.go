//go:build linux

package mixer

import "syscall"

// setNice lowers a process's CPU priority.
func setNice(pid, nice int) error {
	if nice <= 0 {
		return nil
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, pid, nice)
}
