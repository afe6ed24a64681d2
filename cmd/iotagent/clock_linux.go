package main

import "syscall"

// staUnsync is the kernel's "clock not synchronised" status bit (timex.h).
const staUnsync = 0x0040

// ntpSynced asks the kernel (adjtimex) whether NTP has synchronised the
// clock, as timedatectl's "System clock synchronized" does.
func ntpSynced() (synced, known bool) {
	var tx syscall.Timex
	state, err := syscall.Adjtimex(&tx)
	if err != nil {
		return false, false
	}
	const timeError = 5 // TIME_ERROR: clock not synchronised
	return state != timeError && tx.Status&staUnsync == 0, true
}
