package e2e

import "syscall"

// procAttr puts a started process in its own process group and has the
// kernel send it deathSig if the test binary dies first.
func procAttr(deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
}
