package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"chordshare/peer"
	"chordshare/peer/api"
	"chordshare/tui"
)

var tuiCmd = &command{
	name:  "tui",
	args:  "[--repo DIR]",
	short: "open the terminal UI of the running peer",
	long: `Shows the daemon of the repo in a terminal UI: an overview, the ring, the
transfers, the connected peers and the event log, and shares and fetches files
through it. Keys are shown at the bottom; q quits (the daemon keeps running).
A daemon that is not running yet, or stops, is waited for and reconnected to.
'peer daemon --tui' runs a daemon with the UI attached instead.`,
}

func runTUI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(tuiCmd, stderr)
	repo := fs.String("repo", "", "repo `DIR` of the daemon to show (default $PEER_REPO, else ~/.chordshare)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	c, err := newClient(*repo)
	if err != nil {
		return err
	}
	defer c.Close()
	return tui.Run(ctx, c, tui.Options{})
}

// daemonLogName is where `peer daemon --tui` writes the daemon's log lines,
// which would otherwise run over the UI.
const daemonLogName = "daemon.log"

// runDaemonTUI runs the started daemon with the UI attached: quitting the
// UI stops the daemon, and a daemon that stops on its own ends the UI.
func runDaemonTUI(ctx context.Context, d *peer.Daemon, dir string, logf *os.File) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() {
		ran <- d.Run(ctx)
		cancel()
	}()
	c, err := api.NewClient(dir)
	if err != nil {
		cancel()
		return errors.Join(err, <-ran)
	}
	defer c.Close()
	uiErr := tui.Run(ctx, c, tui.Options{Embedded: true})
	cancel()
	runErr := <-ran
	fmt.Fprintln(logf, "stopped")
	if runErr != nil {
		return runErr
	}
	if uiErr != nil {
		return fmt.Errorf("terminal UI: %w (the daemon has stopped; its log is %s)", uiErr, filepath.Join(dir, daemonLogName))
	}
	return nil
}

// openDaemonLog opens the log file of `peer daemon --tui` in the repo
// (created, as the daemon would, if it is not there yet).
func openDaemonLog(dir string) (*os.File, error) {
	// A repo path too long for its socket fails before anything is made.
	if _, err := api.SocketPath(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("repo %s: %w", dir, err)
	}
	path := filepath.Join(dir, daemonLogName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	return f, nil
}
