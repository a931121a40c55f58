package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/peer/api"
)

var shareCmd = &command{
	name:  "share",
	args:  "[--repo DIR] [--json] [--stall-timeout DURATION] FILE",
	short: "share a file on the ring and print its root CID",
	long: `Sends FILE to the daemon of the repo, which cuts it into blocks (a UnixFS DAG:
CIDv1, raw leaves, 256 KiB chunks, as 'ipfs add --cid-version=1 --raw-leaves'
makes it) and stores each block on its replicas. It succeeds once every block
has been written durably by the write quorum (W of its r replicas; 2 of 3
unless the daemon was given others, see 'peer daemon -h'); then the
root CID alone is printed on stdout: anyone on the ring can fetch the file
with it. If too few replicas are reachable, or their stores are full, the
share fails and says so.

Progress (bytes stored, rate, time left) is drawn on stderr when it is a
terminal.`,
}

var fetchCmd = &command{
	name:  "fetch",
	args:  "[--repo DIR] [--json] [--stall-timeout DURATION] CID [-o PATH]",
	short: "fetch a file by its root CID, verified, to PATH or stdout",
	long: `Asks the daemon of the repo for the file whose root is CID. Every block is
checked against its CID before it is written; blocks come from their fastest
replicas, several at a time.

With -o the daemon writes PATH itself. A fetch that fails or is interrupted
keeps what it wrote: run the same command again and it resumes, fetching only
what is missing. Without -o (or with -o -) the bytes go to stdout, and the
command fails unless all of them arrived. With --json and -o, a line
{"cid": ..., "path": ..., "size": ...} is printed on stdout once the file is
whole.

Progress (bytes written, rate, time left) is drawn on stderr when it is a
terminal.`,
}

// transferFlags are the flags every transfer command has.
func transferFlags(fs *flag.FlagSet) (repo *string, stall *time.Duration) {
	repo = fs.String("repo", "", "repo `DIR` of the daemon to ask (default $PEER_REPO, else ~/.chordshare)")
	stall = fs.Duration("stall-timeout", api.DefaultStallTimeout, "give up when the transfer makes no progress for `DURATION`")
	return repo, stall
}

// checkStall refuses a stall timeout that would end every transfer at once.
func checkStall(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("--stall-timeout %v: want a positive duration such as 90s", d)
	}
	return nil
}

func runShare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(shareCmd, stderr)
	repo, stall := transferFlags(fs)
	asJSON := fs.Bool("json", false, `print {"cid": ..., "size": ...} instead of the CID alone`)
	pos, err := parseArgs(fs, args, 1, 1, "FILE")
	if err != nil {
		return err
	}
	if err := checkStall(*stall); err != nil {
		return err
	}
	// The file first: a typo is reported as such whether a daemon runs
	// or not.
	name := pos[0]
	f, err := os.Open(name)
	if err != nil {
		return fileError(name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileError(name, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("cannot share %s: it is a directory (share one file at a time)", name)
	}

	client, err := newClient(*repo)
	if err != nil {
		return err
	}
	defer client.Close()
	bar := newProgressBar(stderr, "share")
	opts := api.TransferOptions{Stall: *stall, Progress: bar.update, Name: filepath.Base(name)}
	res, err := shareOpenFile(ctx, client, f, fi, opts)
	if err != nil {
		bar.clear()
		if ctx.Err() != nil {
			return fmt.Errorf("share interrupted (%v): %s is not shared", context.Cause(ctx), name)
		}
		return err
	}
	bar.finish()
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	_, err = fmt.Fprintln(stdout, res.CID)
	return err
}

// shareOpenFile has the daemon read a regular file itself, which saves
// copying every byte through the API socket (about 5% of a share's CPU);
// it sends the bytes when the file is not regular (a pipe), or the daemon
// refuses the path (may not read it, finds another file there), or shares
// something of another size (a daemon too old to know the path parameter
// shares the empty body).
func shareOpenFile(ctx context.Context, client *api.Client, f *os.File, fi os.FileInfo, opts api.TransferOptions) (api.ShareResult, error) {
	size := int64(-1) // a pipe or a device: no size to show progress against
	if fi.Mode().IsRegular() {
		size = fi.Size()
		// The real path, so that /dev/stdin or /proc/self/fd/N name the
		// file the client opened, not the daemon's own.
		if path, err := filepath.EvalSymlinks(f.Name()); err == nil {
			if abs, err := filepath.Abs(path); err == nil {
				res, err := client.ShareFile(ctx, abs, size, opts)
				var he *api.HTTPError
				refused := errors.As(err, &he) && he.StatusCode >= 400 && he.StatusCode < 500
				if !refused && (err != nil || res.Size == size) {
					return res, err
				}
			}
		}
	}
	return client.Share(ctx, f, size, opts)
}

func runFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(fetchCmd, stderr)
	repo, stall := transferFlags(fs)
	out := fs.String("o", "", "write the file to `PATH` (resuming what a fetch there left) instead of stdout")
	asJSON := fs.Bool("json", false, `with -o: print {"cid": ..., "path": ..., "size": ...} when the file is whole`)
	pos, err := parseArgs(fs, args, 1, 1, "CID")
	if err != nil {
		return err
	}
	toStdout := *out == "" || *out == "-"
	if *asJSON && toStdout {
		return errors.New("--json needs -o PATH: without it the file itself goes to stdout")
	}
	if err := checkStall(*stall); err != nil {
		return err
	}
	root, err := cid.Decode(pos[0])
	if err != nil {
		return fmt.Errorf("%q is not a CID: %v", pos[0], err)
	}
	path := *out
	if !toStdout {
		// The daemon may run in another directory: it gets an absolute path.
		if path, err = filepath.Abs(path); err != nil {
			return fmt.Errorf("-o %s: %w", *out, err)
		}
	}

	client, err := newClient(*repo)
	if err != nil {
		return err
	}
	defer client.Close()
	bar := newProgressBar(stderr, "fetch")
	opts := api.TransferOptions{Stall: *stall, Progress: bar.update}
	var n int64
	var res api.FetchResult
	if toStdout {
		n, err = client.Cat(ctx, root.String(), stdout, opts)
	} else {
		res, err = client.Fetch(ctx, root.String(), path, opts)
	}
	if err != nil {
		bar.clear()
		if ctx.Err() == nil {
			return err
		}
		if toStdout {
			return fmt.Errorf("fetch interrupted (%v) after %d bytes", context.Cause(ctx), n)
		}
		return fmt.Errorf("fetch interrupted (%v): run it again to resume into %s", context.Cause(ctx), path)
	}
	bar.finish()
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return nil
}

func newClient(repoFlag string) (*api.Client, error) {
	dir, err := api.ResolveRepo(repoFlag)
	if err != nil {
		return nil, err
	}
	return api.NewClient(dir)
}

// fileError says in one line why FILE cannot be shared.
func fileError(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("cannot read %s: %w", name, err)
}
