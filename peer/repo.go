package peer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/multiformats/go-multiaddr"

	"chordshare/chord"
)

// Files in a repo.
const (
	IdentityFile = "identity.key" // the libp2p private key, protobuf (crypto.MarshalPrivateKey), 0600
	ConfigFile   = "config.json"  // RepoConfig
	LockFile     = "repo.lock"    // flock'ed by the daemon that owns the repo; holds its pid
	BlocksDir    = "blocks"       // the block store (package blocks)
	VnodesFile   = "vnodes.json"  // the vnode indices of the last join (VnodeIndices)
)

// RepoVersion is the layout version written to a new repo's config.
const RepoVersion = 1

// ErrRepoLocked: another daemon holds the repo.
var ErrRepoLocked = errors.New("repo is in use by another daemon")

// RepoLockedError says which repo is held and by which process.
type RepoLockedError struct {
	Dir string
	PID int // 0 if the holder has not written its pid yet
}

func (e *RepoLockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("repo %s is in use by another daemon", e.Dir)
	}
	return fmt.Sprintf("repo %s is in use by another daemon (pid %d)", e.Dir, e.PID)
}

// Is makes errors.Is(err, ErrRepoLocked) true.
func (e *RepoLockedError) Is(target error) bool { return target == ErrRepoLocked }

// RepoConfig is the repo's config.json: what the daemon does when a flag does
// not say otherwise. A new repo gets the defaults written out, so a user can
// see and edit them; flags override them for one run and are not saved.
type RepoConfig struct {
	Version int `json:"version"`
	// Listen: multiaddrs to listen on. The default is every IPv4 interface,
	// TCP and QUIC, on ports the system picks at each start; a peer that
	// others bootstrap from should set fixed ports here.
	Listen []string `json:"listen"`
	// Bootstrap: multiaddrs ending in /p2p/<id> of peers to join the ring
	// through. Empty: start a new ring.
	Bootstrap []string `json:"bootstrap"`
	// Capacity is the number of vnodes (0: a client that stores nothing).
	Capacity int `json:"capacity"`
	// Lookup is "recursive" or "iterative".
	Lookup string `json:"lookup"`
	// StorageMax caps the bytes of blocks this peer stores ("500MB",
	// "2GiB", or a number of bytes); 0 means no limit. A put beyond it is
	// refused with "store full".
	StorageMax ByteSize `json:"storage_max"`
	// RepairRate caps the bytes per second repair sends and receives
	// (blocks re-replicated, range summaries); 0 means no limit. Absent:
	// the default, 1 MiB/s.
	RepairRate *ByteSize `json:"repair_rate,omitempty"`
	// Uplink is the capacity of this peer's link towards the network, per
	// second ("10KB" for 80 kbit/s); 0 means unknown or fast, "auto" has
	// the peer estimate it. Set on a slow link, block uploads are paced
	// below it, so the ring calls sharing the link stay fast and the peer
	// stays in the ring.
	Uplink UplinkSize `json:"uplink,omitempty"`
	// Replicas (r) is how many distinct peers hold each block, and
	// WriteQuorum (W) how many of them a put waits for; 1 <= W <= r <=
	// MaxReplicas. Absent (a config from before they were options): 3
	// and 2. Every peer of a ring should have the same r (README).
	Replicas    int `json:"replicas"`
	WriteQuorum int `json:"write_quorum"`
}

// DefaultListen are the listen addresses of a new repo.
var DefaultListen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}

// DefaultRepoConfig is the config written to a new repo.
func DefaultRepoConfig() RepoConfig {
	c := chord.DefaultConfig()
	return RepoConfig{
		Version:   RepoVersion,
		Listen:    append([]string(nil), DefaultListen...),
		Bootstrap: []string{},
		Capacity:  c.Vnodes,
		Lookup:    c.Lookup.String(),
		// The node's defaults, so config.json shows what the peer runs.
		Replicas:    DefaultConfig().Replicas,
		WriteQuorum: DefaultConfig().WriteQuorum,
	}
}

// MaxReplicas bounds r: a block's replicas are the first r distinct peers
// of its key's successors, and repair and a leaving peer's hand-off look
// no further than a vnode's own successor list.
func MaxReplicas() int { return chord.DefaultConfig().SuccessorListLen }

// checkReplication reports an r or W that cannot work, naming them rName
// and wName (the config key or the flag that set them).
func checkReplication(r, w int, rName, wName string) error {
	if m := MaxReplicas(); r < 1 || r > m {
		return fmt.Errorf("%s %d: want 1..%d (replicas are drawn from a successor list of %d)", rName, r, m, m)
	}
	if w < 1 {
		return fmt.Errorf("%s %d: want 1 or more", wName, w)
	}
	if w > r {
		return fmt.Errorf("%s %d: more than %s %d (a put cannot wait for more replicas than there are)", wName, w, rName, r)
	}
	return nil
}

// applyTo sets the node config's fields that the repo config holds.
func (c RepoConfig) applyTo(cfg *Config) error {
	lookup, err := chord.ParseLookupMode(c.Lookup)
	if err != nil {
		return err
	}
	cfg.Chord.Lookup = lookup
	cfg.Chord.Vnodes = c.Capacity
	if c.RepairRate != nil {
		cfg.Repair.Rate = int64(*c.RepairRate)
	}
	cfg.Uplink = int64(c.Uplink)
	cfg.Replicas, cfg.WriteQuorum = c.Replicas, c.WriteQuorum
	return nil
}

// Validate reports the first setting that cannot work.
func (c RepoConfig) Validate() error {
	if c.Version != RepoVersion {
		return fmt.Errorf("version %d: this peer reads version %d", c.Version, RepoVersion)
	}
	for _, s := range c.Listen {
		if _, err := multiaddr.NewMultiaddr(s); err != nil {
			return fmt.Errorf("listen address %q: %w", s, err)
		}
	}
	if _, err := ParseBootstrap(c.Bootstrap); err != nil {
		return err
	}
	if c.Capacity < 0 || c.Capacity > chord.MaxVnodes {
		return fmt.Errorf("capacity %d: want 0..%d", c.Capacity, chord.MaxVnodes)
	}
	if _, err := chord.ParseLookupMode(c.Lookup); err != nil {
		return err
	}
	if c.StorageMax < 0 {
		return fmt.Errorf("storage_max %d: want 0 (no limit) or more", int64(c.StorageMax))
	}
	if err := checkUplink(int64(c.Uplink)); err != nil {
		return err
	}
	if c.RepairRate != nil && *c.RepairRate < 0 {
		return fmt.Errorf("repair_rate %d: want 0 (no limit) or more", int64(*c.RepairRate))
	}
	return checkReplication(c.Replicas, c.WriteQuorum, "replicas", "write_quorum")
}

// Repo is an open repo, held exclusively by this process until Close.
type Repo struct {
	dir    string
	lock   *os.File
	key    crypto.PrivKey
	config RepoConfig
}

// OpenRepo opens the repo at dir, creating it (mode 0700) with a new identity
// and the default config if it does not exist yet, and takes its lock. If
// another daemon holds the lock it fails at once with a *RepoLockedError.
func OpenRepo(dir string) (_ *Repo, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create repo %s: %w", dir, err)
	}
	lock, err := lockRepo(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlockRepo(lock)
		}
	}()
	// Only the lock holder creates files, so two daemons started at once on a
	// new repo cannot each write an identity. The config comes first: a
	// config that does not parse leaves a new repo without an identity yet.
	cfg, err := loadOrCreateConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("repo %s: %w", dir, err)
	}
	key, err := loadOrCreateIdentity(filepath.Join(dir, IdentityFile))
	if err != nil {
		return nil, fmt.Errorf("repo %s: %w", dir, err)
	}
	return &Repo{dir: dir, lock: lock, key: key, config: cfg}, nil
}

// Dir is the repo's directory.
func (r *Repo) Dir() string { return r.dir }

// Identity is the peer's private key.
func (r *Repo) Identity() crypto.PrivKey { return r.key }

// Config is the repo's config.json as read at open.
func (r *Repo) Config() RepoConfig { return r.config }

// vnodeIndices is the content of VnodesFile.
type vnodeIndices struct {
	Indices []uint32 `json:"indices"`
}

// VnodeIndices are the vnode indices the daemon ran when it last joined
// (chord.Node.Indices): the positions its stored blocks sit on, which a
// restart takes again (chord.Config.VnodeIndices) even once the ring has
// forgotten it. None saved yet: nil.
func (r *Repo) VnodeIndices() ([]uint32, error) {
	path := filepath.Join(r.dir, VnodesFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read vnode indices: %w", err)
	}
	var v vnodeIndices
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("vnode indices %s: %w", path, err)
	}
	return v.Indices, nil
}

// SaveVnodeIndices writes the indices VnodeIndices returns, atomically.
func (r *Repo) SaveVnodeIndices(indices []uint32) error {
	data, err := json.Marshal(vnodeIndices{Indices: indices})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(r.dir, VnodesFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save vnode indices: %w", err)
	}
	return nil
}

// Close releases the repo's lock. The lock file stays: removing it would let
// a second daemon lock a fresh file while a third still holds the old one.
func (r *Repo) Close() error {
	if r.lock == nil {
		return nil
	}
	err := unlockRepo(r.lock)
	r.lock = nil
	if err != nil {
		return fmt.Errorf("release repo %s: %w", r.dir, err)
	}
	return nil
}

// lockRepo takes an exclusive flock on the repo's lock file and writes our
// pid into it. The kernel drops the lock when the process dies however it
// dies, so a crashed daemon never leaves its repo locked.
func lockRepo(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &RepoLockedError{Dir: dir, PID: readPID(f)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		unlockRepo(f)
		return nil, fmt.Errorf("write pid to %s: %w", path, err)
	}
	return f, nil
}

func unlockRepo(f *os.File) error {
	uerr := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	cerr := f.Close()
	return errors.Join(uerr, cerr)
}

func readPID(f *os.File) int {
	var buf [32]byte
	n, _ := f.ReadAt(buf[:], 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// loadOrCreateIdentity reads the key at path, or makes a new Ed25519 key and
// writes it there if there is none. An existing key is never replaced: a key
// that cannot be read is an error, not a reason to become another peer.
func loadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			return nil, fmt.Errorf("generate identity: %w", err)
		}
		data, err := crypto.MarshalPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("marshal identity: %w", err)
		}
		if err := writeFileAtomic(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("write identity: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("identity %s has mode %04o: others can read it; run chmod 600 %s", path, perm, path)
	}
	key, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	return key, nil
}

func loadOrCreateConfig(path string) (RepoConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		cfg := DefaultRepoConfig()
		data, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return RepoConfig{}, fmt.Errorf("encode config: %w", err)
		}
		if err := writeFileAtomic(path, append(data, '\n'), 0o600); err != nil {
			return RepoConfig{}, fmt.Errorf("write config: %w", err)
		}
		return cfg, nil
	}
	if err != nil {
		return RepoConfig{}, fmt.Errorf("read config: %w", err)
	}
	// Fields added to version 1 keep their default when absent; the
	// decoder leaves them as they are.
	d := DefaultRepoConfig()
	cfg := RepoConfig{Replicas: d.Replicas, WriteQuorum: d.WriteQuorum}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return RepoConfig{}, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return RepoConfig{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// writeFileAtomic writes data to path so that a reader (or a crash) sees the
// old file or the whole new one, never a part: a temp file in the same
// directory, fsync, rename over path, fsync the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
