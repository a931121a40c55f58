package peer

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"chordshare/chord"
	"chordshare/peer/api"
)

// ringAPI is what the local API serves; *Node implements it.
type ringAPI interface {
	Status() api.Status
	Ring() api.Ring
	Lookup(ctx context.Context, key chord.ID) (api.Lookup, error)
}

// newAPIServer serves the local API of n (see package api). Lookups are
// bounded by lookupTimeout on top of the request's own context.
func newAPIServer(n ringAPI, lookupTimeout time.Duration, logw io.Writer) *http.Server {
	return &http.Server{
		Handler:           newAPIHandler(n, lookupTimeout),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(logw, "api: ", 0),
	}
}

// newAPIHandler routes the API's endpoints. Every answer, errors included,
// is JSON: an api.Error with a status code that says whose fault it was.
func newAPIHandler(n ringAPI, lookupTimeout time.Duration) http.Handler {
	routes := map[string]http.HandlerFunc{
		"/v1/status": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, n.Status())
		},
		"/v1/ring": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, n.Ring())
		},
		"/v1/lookup": func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query().Get("key")
			key, err := parseKey(q)
			if err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
			defer cancel()
			l, err := n.Lookup(ctx, key)
			if err != nil {
				writeError(w, lookupStatus(err), fmt.Sprintf("lookup %s: %s", q, OneLine(err.Error())))
				return
			}
			writeJSON(w, http.StatusOK, l)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := routes[r.URL.Path]
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s", r.URL.Path))
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: only GET", r.Method, r.URL.Path))
			return
		}
		h(w, r)
	})
}

// parseKey reads a ring position: 64 hex digits.
func parseKey(s string) (chord.ID, error) {
	var id chord.ID
	if s == "" {
		return id, errors.New("missing key: want ?key= and 64 hex digits")
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("key %q: want 64 hex digits (a 256-bit ring position)", s)
	}
	copy(id[:], b)
	return id, nil
}

// lookupStatus maps a failed lookup to a status code: 504 when it ran out
// of time, 503 when the ring has no route now (worth retrying once it has
// stabilized), 502 for any other failure of the peers asked.
func lookupStatus(err error) int {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, chord.ErrNoRoute), errors.Is(err, chord.ErrTooManyHops), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadGateway
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		code = http.StatusInternalServerError
		buf.Reset()
		_ = json.NewEncoder(&buf).Encode(api.Error{Error: fmt.Sprintf("encode answer: %v", err)})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Error: msg})
}

// listenAPI opens the API socket at path, mode 0600. The caller holds the
// repo lock, so a socket already there was left by a daemon that died
// without cleaning up: it is removed. Anything else at that path is not ours
// to remove.
func listenAPI(path string) (*net.UnixListener, error) {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode().Type() == fs.ModeSocket:
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale api socket: %w", err)
		}
	case err == nil:
		return nil, fmt.Errorf("api socket %s: a %s is in the way; remove it", path, fileKind(fi))
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("api socket: %w", err)
	}
	// Between bind and chmod the socket has the umask's mode; connecting
	// needs write permission, which the usual umasks deny to others, and a
	// repo the daemon created is 0700 besides.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket: %w", err)
	}
	return ln, nil
}

func fileKind(fi fs.FileInfo) string {
	switch {
	case fi.IsDir():
		return "directory"
	case fi.Mode()&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return "file"
	}
}
