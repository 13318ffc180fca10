package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// proc is a process started by the tests, in its own process group.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// startProc starts bin with args, stdout and stderr appended to logPath, and
// exactly the environment given (no inheritance). deathSig is sent to the
// process if the test binary dies without cleaning up (a -timeout panic).
func startProc(name, logPath string, environ []string, dir string, deathSig syscall.Signal, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = environ
	cmd.Dir = dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = procAttr(deathSig)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process, waits up to grace, then SIGKILLs it;
// finally it SIGKILLs whatever is left in its process group (plugin
// processes of a killed Vault, an Agent's child), which only this process
// and its descendants can be in.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	pid := p.pid()
	if !p.exited() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-p.done
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
