//go:build !linux

package main

func ntpSynced() (synced, known bool) { return false, false }
