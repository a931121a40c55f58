//go:build !linux

package main

import "os/exec"

// dieWithParent: only Linux has a parent-death signal; elsewhere the lease
// alone stops the command.
func dieWithParent(*exec.Cmd) {}

// startTime: unknown here, so a reused owner pid goes unnoticed.
func startTime(int) string { return "" }
