// Package limits owns the simulator's process resource limits: raising the open-files limit
// (RLIMIT_NOFILE) to what the process may have, and reading it.
package limits

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// RaiseNoFile raises the soft open-files limit to the hard limit and returns the soft limit in
// effect afterwards. When raising fails, it returns the unchanged soft limit and the error.
func RaiseNoFile() (uint64, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if r.Cur >= r.Max {
		return r.Cur, nil
	}
	want := r
	want.Cur = r.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		return r.Cur, fmt.Errorf("raising RLIMIT_NOFILE from %d to the hard limit %d: %w", r.Cur, r.Max, err)
	}
	return want.Cur, nil
}

// NoFile returns the soft open-files limit.
func NoFile() (uint64, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	return r.Cur, nil
}
