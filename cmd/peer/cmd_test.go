package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"chordshare/peer/api"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, args, &out, &errb)
	code = exitCode(err, &errb)
	return out.String(), errb.String(), code
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}} {
		out, errs, code := runCmd(t, args...)
		if code != 0 || errs != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
		for _, c := range []string{"daemon", "status", "ring", "help"} {
			if !strings.Contains(out, "peer "+c) {
				t.Errorf("%v: usage does not list %s:\n%s", args, c, out)
			}
		}
	}
	out, _, code := runCmd(t, "help", "daemon")
	if code != 0 || !strings.Contains(out, "usage: peer daemon") || !strings.Contains(out, "-bootstrap MULTIADDR") {
		t.Errorf("help daemon: exit %d\n%s", code, out)
	}
	out, _, code = runCmd(t, "status", "-h")
	if code != 0 || out != "" {
		t.Errorf("status -h: exit %d, stdout %q: want 0 and the usage on stderr", code, out)
	}
}

// TestSynopsisListsEveryFlag keeps `peer help`'s one-line synopses true:
// every flag a command parses is in its line.
func TestSynopsisListsEveryFlag(t *testing.T) {
	flagLine := regexp.MustCompile(`^  -(\S+)`)
	for _, c := range commands {
		out, _, code := runCmd(t, "help", c.name)
		if code != 0 {
			t.Fatalf("help %s: exit %d", c.name, code)
		}
		for _, line := range strings.Split(out, "\n") {
			m := flagLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			if !regexp.MustCompile(`\[--?` + regexp.QuoteMeta(m[1]) + `[ \]]`).MatchString(c.args) {
				t.Errorf("peer %s %s: the synopsis lacks -%s", c.name, c.args, m[1])
			}
		}
	}
}

func TestBadCommandLines(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "usage:"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"help", "bogus"}, `unknown command "bogus"`},
		{[]string{"status", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"ring", "extra"}, `unexpected argument "extra"`},
		{[]string{"daemon", "--capacity", "lots"}, "invalid value"},
	}
	for _, tc := range cases {
		out, errs, code := runCmd(t, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q on stderr", tc.args, code, out, errs, tc.want)
		}
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	var b bytes.Buffer
	code := exitCode(errors.New("all dials failed\n  * [/ip4/1.2.3.4/tcp/1] refused\n  * [/ip4/5.6.7.8/tcp/1] refused"), &b)
	if code != 1 || b.String() != "peer: all dials failed * [/ip4/1.2.3.4/tcp/1] refused * [/ip4/5.6.7.8/tcp/1] refused\n" {
		t.Errorf("exit %d, stderr %q", code, b.String())
	}
}

func TestDaemonRejectsBadLookupMode(t *testing.T) {
	dir := shortTempDir(t)
	_, errs, code := runCmd(t, "daemon", "--repo", dir, "--lookup", "sideways")
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "--lookup") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

// Bad --replicas and --write-quorum stop the daemon with one line naming
// the flag; a --write-quorum above the repo config's r (3) is one.
func TestDaemonRejectsBadReplication(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--replicas", "17"}, "--replicas 17: want 1..16"},
		{[]string{"--replicas", "0"}, "--replicas 0: want 1..16"},
		{[]string{"--write-quorum", "0"}, "--write-quorum 0: want 1 or more"},
		{[]string{"--write-quorum", "4"}, "--write-quorum 4: more than replicas 3"},
		{[]string{"--replicas", "2", "--write-quorum", "3"}, "--write-quorum 3: more than --replicas 2"},
	} {
		dir := shortTempDir(t)
		_, errs, code := runCmd(t, append([]string{"daemon", "--repo", dir, "--listen", "/ip4/127.0.0.1/tcp/0"}, tc.args...)...)
		if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and one line with %q", tc.args, code, errs, tc.want)
		}
	}
}

func TestClientsWithoutDaemon(t *testing.T) {
	dir := shortTempDir(t)
	want := "peer: no daemon running on repo " + dir + " (start one with: peer daemon --repo " + dir + ")\n"
	for _, c := range []string{"status", "ring"} {
		out, errs, code := runCmd(t, c, "--repo", dir)
		if code != 1 || out != "" || errs != want {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", c, code, out, errs, want)
		}
	}
	// The repo comes from $PEER_REPO when --repo is not given.
	t.Setenv(api.RepoEnv, dir)
	if _, errs, _ := runCmd(t, "status"); errs != want {
		t.Errorf("with $PEER_REPO: stderr %q, want %q", errs, want)
	}
}

// fakeDaemon serves fixed answers on the API socket of a new repo.
func fakeDaemon(t *testing.T, s api.Status, r api.Ring) string {
	t.Helper()
	dir := shortTempDir(t)
	sock, err := api.SocketPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(s) })
	mux.HandleFunc("GET /v1/ring", func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(r) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return dir
}

const (
	selfID  = "12D3KooWEH6kF5B4FPQ59VFzjDe2wRQrqiya4TviyambbxJpaYqH"
	otherID = "12D3KooWAHJ7GsAcNU1MFNkCBjGDNs2FPFDwCp7oN572BXhjbJRy"
)

func TestStatusAndRingOutput(t *testing.T) {
	status := api.Status{
		ID:               selfID,
		Addrs:            []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + selfID, "/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + selfID},
		Positions:        []string{strings.Repeat("12", 32)},
		Capacity:         1,
		RingSizeEstimate: 2,
		ConnectedPeers:   1,
		LookupMode:       "iterative",
		UptimeSeconds:    75.4,
		BlocksStored:     3,
		BytesUsed:        1 << 20,
		StorageMax:       2 << 30,
		Uplink:           10 << 10,
		UplinkAuto:       true,
	}
	other := api.Neighbour{Peer: otherID, Vnode: 0, ID: strings.Repeat("92", 32), RTTMillis: 1.25}
	ring := api.Ring{ID: selfID, Vnodes: []api.Vnode{{
		ID:          strings.Repeat("12", 32),
		Predecessor: &other,
		Successors:  []api.Neighbour{other, {Peer: selfID, Vnode: 0, ID: strings.Repeat("12", 32)}},
		Fingers:     []api.Finger{{K: 255, Node: other}},
	}}}
	dir := fakeDaemon(t, status, ring)

	out, errs, code := runCmd(t, "status", "--repo", dir)
	if code != 0 || errs != "" {
		t.Fatalf("status: exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{
		"peer id    " + selfID + "\n",
		"addresses  /ip4/127.0.0.1/tcp/4001/p2p/" + selfID + "\n",
		"           /ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + selfID + "\n",
		"capacity   1 vnode\n",
		"blocks     3 blocks, 1.00 MiB of 2.00 GiB\n",
		"ring size  ~2 peers\n",
		"connected  1 peer\n",
		"lookups    iterative\n",
		"uplink     10.0 KiB/s, estimated (auto)\n",
		"uptime     1m15s\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	out, _, code = runCmd(t, "status", "--repo", dir, "--json")
	var gotStatus api.Status
	if code != 0 || json.Unmarshal([]byte(out), &gotStatus) != nil || gotStatus.ID != selfID || len(gotStatus.Addrs) != 2 {
		t.Errorf("status --json: exit %d\n%s", code, out)
	}

	out, _, code = runCmd(t, "ring", "--repo", dir)
	if code != 0 {
		t.Fatalf("ring: exit %d", code)
	}
	for _, want := range []string{
		"peer " + selfID + ", 1 vnode\n",
		"vnode 0 at " + strings.Repeat("12", 32) + "\n",
		"predecessor  " + otherID + "/0  9292929292929292  1.2 ms",
		"successor 1  " + otherID + "/0  9292929292929292  1.2 ms",
		"successor 2  self/0",
		"finger 255   " + otherID + "/0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ring output lacks %q:\n%s", want, out)
		}
	}
	out, _, code = runCmd(t, "ring", "--repo", dir, "--json")
	var gotRing api.Ring
	if code != 0 || json.Unmarshal([]byte(out), &gotRing) != nil || gotRing.Vnodes[0].Successors[0].Peer != otherID {
		t.Errorf("ring --json: exit %d\n%s", code, out)
	}
}

// shortTempDir is a temp dir short enough for a Unix socket whatever the
// test's name.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "peer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// The line of puts being received names the puts turned away only when
// there are some.
func TestPutRoomLine(t *testing.T) {
	r := api.PutRoom{BytesHeld: 3 << 20, BytesLimit: 128 << 20}
	if line := putRoomLine(r); line != "3.00 MiB of 128.0 MiB held for blocks being received" {
		t.Errorf("none turned away: %q", line)
	}
	r.Refused, r.Evicted = 5, 2
	if line := putRoomLine(r); !strings.HasSuffix(line, "; turned away: 5 refused for want of room, 2 evicted after going silent") {
		t.Errorf("5 refused, 2 evicted: %q", line)
	}
}

// The repair line names refused summary requests only when there are some.
func TestRepairLineRefused(t *testing.T) {
	var s api.Status
	s.Repair.Rounds, s.Repair.HintsPending = 3, 1
	if line := repairLine(s); strings.Contains(line, "refused") {
		t.Errorf("nothing refused: %q", line)
	}
	s.Repair.Refused = 2
	if line := repairLine(s); !strings.HasSuffix(line, "; 2 summary requests refused, busy") {
		t.Errorf("2 refused: %q", line)
	}
}
