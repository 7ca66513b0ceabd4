//go:build !linux

package sched

import "time"

// preciseSleep sleeps d; outside Linux it is time.Sleep.
func preciseSleep(d time.Duration) { time.Sleep(d) }
