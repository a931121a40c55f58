package peer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

func TestRepoCreatesIdentityOnceAndReusesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := r.Identity()
	if key.Type() != crypto.Ed25519 {
		t.Errorf("identity type = %v, want Ed25519", key.Type())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	for name, want := range map[string]os.FileMode{"": 0o700, IdentityFile: 0o600, ConfigFile: 0o600, LockFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s/%s mode = %04o, want %04o", dir, name, got, want)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		t.Fatalf("identity file is not a marshalled libp2p key: %v", err)
	}
	if !onDisk.Equals(key) {
		t.Error("identity on disk differs from the key returned")
	}
	// No temp files left behind by the atomic writes.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover temp file %s", e.Name())
		}
	}

	r2, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if !r2.Identity().Equals(key) {
		t.Error("reopening the repo made a new identity")
	}
}

func TestRepoLockRefusesSecondOpener(t *testing.T) {
	dir := t.TempDir()
	r, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to an open file description, so a second open in
	// the same process conflicts just as another process would.
	_, err = OpenRepo(dir)
	if !errors.Is(err, ErrRepoLocked) {
		t.Fatalf("second open: err = %v, want ErrRepoLocked", err)
	}
	want := fmt.Sprintf("repo %s is in use by another daemon (pid %d)", dir, os.Getpid())
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r3, err := OpenRepo(dir)
	if err != nil {
		t.Fatalf("open after the holder closed: %v", err)
	}
	r3.Close()
	if err := r3.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRepoConfigDefaultsAndOverrides(t *testing.T) {
	dir := t.TempDir()
	r, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if got, want := r.Config(), DefaultRepoConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("new repo config = %+v, want %+v", got, want)
	}
	if c := DefaultRepoConfig(); c.Capacity != 8 || c.Lookup != "recursive" || c.Replicas != 3 || c.WriteQuorum != 2 {
		t.Errorf("defaults = %+v, want capacity 8, recursive lookups, r 3, W 2", c)
	}
	// The new repo's file shows them, for the user to edit.
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"replicas": 3`, `"write_quorum": 2`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("new config.json lacks %s:\n%s", want, data)
		}
	}

	// A user's edits are read back.
	edited := DefaultRepoConfig()
	edited.Capacity = 3
	edited.Lookup = "iterative"
	edited.Listen = []string{"/ip4/127.0.0.1/tcp/4001"}
	edited.Replicas, edited.WriteQuorum = 5, 4
	writeConfig(t, dir, edited)
	r, err = OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !reflect.DeepEqual(r.Config(), edited) {
		t.Errorf("config = %+v, want %+v", r.Config(), edited)
	}
}

func TestRepoRejectsBadFiles(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"corrupt identity", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, IdentityFile), []byte("not a key"), 0o600)
		}, "identity"},
		{"identity readable by others", func(t *testing.T, dir string) {
			key, _, _ := crypto.GenerateEd25519Key(nil)
			b, _ := crypto.MarshalPrivateKey(key)
			os.WriteFile(filepath.Join(dir, IdentityFile), b, 0o600)
			os.Chmod(filepath.Join(dir, IdentityFile), 0o644)
		}, "chmod 600"},
		{"unknown config field", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"version":1,"capacty":3}`), 0o600)
		}, "capacty"},
		{"bad capacity", func(t *testing.T, dir string) {
			c := DefaultRepoConfig()
			c.Capacity = -1
			writeConfig(t, dir, c)
		}, "capacity -1"},
		{"bad lookup mode", func(t *testing.T, dir string) {
			c := DefaultRepoConfig()
			c.Lookup = "sideways"
			writeConfig(t, dir, c)
		}, "sideways"},
		{"bootstrap without peer id", func(t *testing.T, dir string) {
			c := DefaultRepoConfig()
			c.Bootstrap = []string{"/ip4/127.0.0.1/tcp/4001"}
			writeConfig(t, dir, c)
		}, "/p2p/"},
		// -1 is UplinkAuto inside the program; in config.json auto is
		// written "auto", and -1, refused before auto existed, still is.
		{"negative uplink", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"version":1,"listen":[],"bootstrap":[],"capacity":2,"lookup":"recursive","uplink":-1}`), 0o600)
		}, "uplink -1"},
		{"too many replicas", func(t *testing.T, dir string) {
			c := DefaultRepoConfig()
			c.Replicas = MaxReplicas() + 1
			writeConfig(t, dir, c)
		}, fmt.Sprintf("replicas %d: want 1..%d", MaxReplicas()+1, MaxReplicas())},
		{"zero replicas", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"version":1,"listen":[],"bootstrap":[],"capacity":2,"lookup":"recursive","replicas":0}`), 0o600)
		}, "replicas 0: want 1.."},
		{"zero write quorum", func(t *testing.T, dir string) {
			c := DefaultRepoConfig()
			c.WriteQuorum = 0
			writeConfig(t, dir, c)
		}, "write_quorum 0: want 1 or more"},
		{"write quorum above replicas", func(t *testing.T, dir string) {
			c := DefaultRepoConfig()
			c.Replicas, c.WriteQuorum = 2, 3
			writeConfig(t, dir, c)
		}, "write_quorum 3: more than replicas 2"},
		{"future version", func(t *testing.T, dir string) {
			c := DefaultRepoConfig()
			c.Version = 99
			writeConfig(t, dir, c)
		}, "version 99"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			before, _ := os.ReadFile(filepath.Join(dir, IdentityFile))
			r, err := OpenRepo(dir)
			if err == nil {
				r.Close()
				t.Fatalf("OpenRepo succeeded, want an error mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("err = %q, want it to name the repo and mention %q", err, tc.want)
			}
			after, _ := os.ReadFile(filepath.Join(dir, IdentityFile))
			if string(before) != string(after) {
				t.Error("a failed open changed the identity file")
			}
			// The lock is released on failure.
			f, err := lockRepo(dir)
			if err != nil {
				t.Fatalf("repo still locked after a failed open: %v", err)
			}
			unlockRepo(f)
		})
	}
}

// A config.json from before r and W were options loads with their
// defaults, and is not rewritten.
func TestRepoConfigWithoutReplication(t *testing.T) {
	dir := t.TempDir()
	old := `{"version":1,"listen":["/ip4/127.0.0.1/tcp/0"],"bootstrap":[],"capacity":2,"lookup":"iterative","storage_max":0}`
	path := filepath.Join(dir, ConfigFile)
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if c := r.Config(); c.Replicas != 3 || c.WriteQuorum != 2 || c.Capacity != 2 || c.Lookup != "iterative" {
		t.Errorf("config = %+v, want r 3, W 2 and the file's capacity 2, iterative", c)
	}
	if data, _ := os.ReadFile(path); string(data) != old {
		t.Errorf("config.json rewritten: %s", data)
	}
}

// A node configured from a repo whose config.json says r = 2, W = 1 puts
// each block on 2 peers of a 4-peer ring, not the default 3.
func TestRepoReplicationReachesPuts(t *testing.T) {
	dir := t.TempDir()
	rc := DefaultRepoConfig()
	rc.Capacity = 1
	rc.Replicas, rc.WriteQuorum = 2, 1
	writeConfig(t, dir, rc)
	repo, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	repo.Close()
	cfg := testConfig()
	if err := repo.Config().applyTo(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Replicas != 2 || cfg.WriteQuorum != 1 {
		t.Fatalf("node config r %d, W %d; want 2, 1", cfg.Replicas, cfg.WriteQuorum)
	}
	r, stores := storedRingOf(t, cfg, 4)
	for i := range 8 {
		data := fmt.Appendf(nil, "block %d", i)
		c := rawBlock(t, data)
		putSettled(t, r, c, data)
		if got := holderCount(stores, c); got != 2 {
			t.Errorf("block %d is on %d peers, want 2", i, got)
		}
	}
}

func writeConfig(t *testing.T, dir string, c RepoConfig) {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseBootstrap(t *testing.T) {
	const id = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
	infos, err := ParseBootstrap([]string{
		"/ip4/127.0.0.1/tcp/4001/p2p/" + id,
		"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + id,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].ID.String() != id || len(infos[0].Addrs) != 2 {
		t.Errorf("infos = %v, want one peer with two addresses", infos)
	}
	if _, err := ParseBootstrap([]string{"/ip4/127.0.0.1/tcp/4001"}); err == nil || !strings.Contains(err.Error(), "/p2p/<peer id>") {
		t.Errorf("no /p2p/: err = %v", err)
	}
	if _, err := ParseBootstrap([]string{"not an addr"}); err == nil || !strings.Contains(err.Error(), "not an addr") {
		t.Errorf("garbage: err = %v", err)
	}
	if infos, err := ParseBootstrap(nil); err != nil || len(infos) != 0 {
		t.Errorf("none: %v, %v", infos, err)
	}
}
