//go:build !linux

package e2e

import "syscall"

// procAttr puts a started process in its own process group (no parent-death
// signal outside Linux: a test binary killed by -timeout leaves its
// processes behind there).
func procAttr(syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
