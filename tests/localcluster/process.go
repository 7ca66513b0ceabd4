package localcluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process this package started.
type proc struct {
	Name, Bin, Log string
	PID            int
	cmd            *exec.Cmd
	exited         chan struct{} // closed when the process has exited (owned processes only)
	waitErr        error
}

// startProc starts bin with args, logging to dir/logs/<name>.log. Detached
// processes get their own session and outlive this program; the others get
// SIGKILL if this program dies, so a crashed test leaves nothing behind.
func startProc(dir, name, bin string, args []string, env []string, detach bool) (*proc, error) {
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	if detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &proc{Name: name, Bin: bin, Log: logPath, PID: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// hasExited reports whether the process is gone, with its exit status.
func (p *proc) hasExited() (bool, error) {
	if p.exited == nil {
		return !pidRuns(p.PID, p.Bin), nil
	}
	select {
	case <-p.exited:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// failure describes a process that exited early, with the end of its log.
func (p *proc) failure(err error) error {
	return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.Name, err, p.Log, tail(p.Log, 20))
}

// stop sends SIGTERM, waits up to grace for the process to go, then SIGKILL.
// It only signals the PID if it still runs p.Bin.
func (p *proc) stop(grace time.Duration) error {
	if gone, _ := p.hasExited(); gone {
		return nil
	}
	if p.exited == nil && !pidRuns(p.PID, p.Bin) {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s (pid %d): %w", p.Name, p.PID, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if gone, _ := p.hasExited(); gone {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // polling the process table, not synchronising
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s (pid %d): %w", p.Name, p.PID, err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if gone, _ := p.hasExited(); gone {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s (pid %d) still runs after SIGKILL", p.Name, p.PID)
}

// pidRuns reports whether pid is a live (non-zombie) process running bin.
// This guards against signalling a PID the kernel has since reused.
func pidRuns(pid int, bin string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	if exe != bin {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}

// PIDFile is the name, inside a cluster's Dir, of the file that records the
// processes a cluster runs: one "<pid> <name> <binary>" line each.
const PIDFile = "pids"

func writePIDs(dir string, procs []*proc) error {
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "%d %s %s\n", p.PID, p.Name, p.Bin)
	}
	path := filepath.Join(dir, PIDFile)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("recording PIDs: %w", err)
	}
	return nil
}

func readPIDs(dir string) ([]*proc, error) {
	path := filepath.Join(dir, PIDFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var procs []*proc
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"<pid> <name> <binary>\", got %q", path, n, s.Text())
		}
		pid, err := strconv.Atoi(fields[0])
		if err != nil || pid <= 1 {
			return nil, fmt.Errorf("%s:%d: bad pid %q", path, n, fields[0])
		}
		procs = append(procs, &proc{PID: pid, Name: fields[1], Bin: fields[2],
			Log: filepath.Join(dir, "logs", fields[1]+".log")})
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return procs, nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1, holding all the
// listeners until every port is known so that none is handed out twice.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the last n lines of a file (or why it cannot).
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
