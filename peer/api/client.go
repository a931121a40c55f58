package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
)

// RepoEnv is the environment variable that names the repo when --repo is not
// given.
const RepoEnv = "PEER_REPO"

// DefaultRepoName is the repo's directory name under the home directory when
// neither --repo nor $PEER_REPO is set.
const DefaultRepoName = ".chordshare"

// ResolveRepo picks the repo directory: flagValue if not empty, else
// $PEER_REPO, else ~/.chordshare. The result is absolute and cleaned, so
// messages name one directory however it was spelled.
func ResolveRepo(flagValue string) (string, error) {
	dir := flagValue
	if dir == "" {
		dir = os.Getenv(RepoEnv)
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the default repo: %w (use --repo DIR or $%s)", err, RepoEnv)
		}
		dir = filepath.Join(home, DefaultRepoName)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("repo %s: %w", dir, err)
	}
	return abs, nil
}

// MaxSocketPath is the longest Unix socket path this package accepts. Linux
// allows 107 bytes (sun_path is 108 with its NUL), the BSDs and macOS 103.
const MaxSocketPath = 103

// ErrSocketPathTooLong: the repo path is too long for a Unix socket inside it.
var ErrSocketPathTooLong = errors.New("unix socket path too long")

// SocketPath is the API socket of the repo at dir, or an error that says to
// pick a shorter repo path when the kernel could not bind or dial it.
func SocketPath(dir string) (string, error) {
	p := filepath.Join(dir, SocketName)
	if len(p) > MaxSocketPath {
		return "", fmt.Errorf("api socket %s is %d bytes, over the %d a unix socket path allows: use a shorter --repo path: %w",
			p, len(p), MaxSocketPath, ErrSocketPathTooLong)
	}
	return p, nil
}

// ErrNoDaemon: nothing is serving the API socket of the repo.
var ErrNoDaemon = errors.New("no daemon running")

// NoDaemonError is returned when no daemon answers on a repo's socket. It
// matches ErrNoDaemon with errors.Is.
type NoDaemonError struct {
	Repo string
}

func (e *NoDaemonError) Error() string {
	return fmt.Sprintf("no daemon running on repo %s (start one with: peer daemon --repo %s)", e.Repo, e.Repo)
}

// Is makes errors.Is(err, ErrNoDaemon) true.
func (e *NoDaemonError) Is(target error) bool { return target == ErrNoDaemon }

// HTTPError is a non-2xx answer from the daemon.
type HTTPError struct {
	StatusCode int
	Message    string // the api.Error text, or the status line if there was none
}

func (e *HTTPError) Error() string { return e.Message }

// Client talks to the daemon of one repo over its Unix socket. The zero value
// is not usable; make one with NewClient. A Client is safe for concurrent use.
type Client struct {
	repo string
	sock string
	hc   *http.Client
}

// NewClient returns a client for the daemon of the repo at dir (see
// ResolveRepo). It fails only if the socket path cannot work; whether a
// daemon runs shows on the first call.
func NewClient(dir string) (*Client, error) {
	sock, err := SocketPath(dir)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns:       4,
		DisableCompression: true,
	}
	return &Client{repo: dir, sock: sock, hc: &http.Client{Transport: tr}}, nil
}

// Repo is the repo directory this client talks to.
func (c *Client) Repo() string { return c.repo }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.get(ctx, "/v1/status", nil, &s)
	return s, err
}

// Ring is GET /v1/ring.
func (c *Client) Ring(ctx context.Context) (Ring, error) {
	var r Ring
	err := c.get(ctx, "/v1/ring", nil, &r)
	return r, err
}

// Lookup is GET /v1/lookup?key=HEX: keyHex is a 64-digit hex ring position.
func (c *Client) Lookup(ctx context.Context, keyHex string) (Lookup, error) {
	var l Lookup
	err := c.get(ctx, "/v1/lookup", url.Values{"key": {keyHex}}, &l)
	return l, err
}

// maxBody bounds an answer; a ring of 1,024 vnodes with full successor lists
// and fingers is a few MiB of JSON.
const maxBody = 64 << 20

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	u := url.URL{Scheme: "http", Host: "daemon", Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if noDaemon(err) {
			return &NoDaemonError{Repo: c.repo}
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("GET %s from daemon on repo %s: %w", path, c.repo, ctxErr)
		}
		return fmt.Errorf("GET %s from daemon on repo %s: %w", path, c.repo, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("GET %s: read answer: %w", path, err)
	}
	if len(body) > maxBody {
		return fmt.Errorf("GET %s: answer over %d bytes", path, maxBody)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return &HTTPError{StatusCode: resp.StatusCode, Message: e.Error}
		}
		return &HTTPError{StatusCode: resp.StatusCode, Message: fmt.Sprintf("GET %s: %s", path, resp.Status)}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	return nil
}

// noDaemon reports whether a dial error means nobody listens on the socket:
// it does not exist (never started, or shut down cleanly) or it is stale (the
// daemon was killed and left it behind).
func noDaemon(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return false
	}
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTDIR)
}
