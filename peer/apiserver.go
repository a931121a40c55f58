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
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/chord"
	"chordshare/peer/api"
	"chordshare/share"
)

// ringAPI is the ring part of what the local API serves; *Node implements
// it.
type ringAPI interface {
	Status() api.Status
	Ring() api.Ring
	Lookup(ctx context.Context, key chord.ID) (api.Lookup, error)
}

// apiBackend is everything the local API serves: the ring, and blocks to
// share files into and fetch them from. The daemon's is its node with the
// block store's counts added to the status.
type apiBackend interface {
	ringAPI
	blockService
}

// apiConfig configures the local API.
type apiConfig struct {
	// LookupTimeout bounds /v1/lookup on top of the request's context.
	LookupTimeout time.Duration
	// Nodes, if set, keeps the internal nodes of fetched DAGs
	// (share.FetchOptions.Nodes): the peer's block store.
	Nodes share.NodeStore
	// VerifiedBlocks says the backend's Get returns only blocks it has
	// checked against their CIDs, in buffers the caller may hand to
	// ReleaseBlock (a Node's): fetches then neither hash them again nor
	// leave them to the garbage collector.
	VerifiedBlocks bool
	// Locate, if set, finds blocks ahead of a fetch's requests
	// (share.FetchOptions.Locate): the node's.
	Locate func(context.Context, []cid.Cid)
	// Log receives a line per transfer; nil: discarded.
	Log io.Writer
	// Events is the node's event log, which GET /v1/events streams and
	// transfers publish to; nil: a log of the API's own (transfers only).
	Events *eventBus
	// Pprof serves Go's runtime profiles under /debug/pprof/ (net/http/pprof),
	// for profiling a transfer in place. Off by default: a profile costs the
	// daemon CPU, and the socket is the repo owner's only.
	Pprof bool
}

// apiHandler routes the API's endpoints. Every answer that is not a
// transfer's stream, errors included, is JSON: an api.Error with a status
// code that says whose fault it was.
type apiHandler struct {
	b      apiBackend
	cfg    apiConfig
	routes map[string]route
	// transfers are the share and fetch requests being served: Wait lets
	// the daemon see them end before it closes the node and the store.
	transfers sync.WaitGroup
	// xfers lists them for GET /v1/transfers.
	xfers *transferLog
}

type route struct {
	method string
	serve  http.HandlerFunc
}

// newAPIServer serves h, logging server errors to logw.
func newAPIServer(h http.Handler, logw io.Writer) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(logw, "api: ", 0),
	}
}

func newAPIHandler(b apiBackend, cfg apiConfig) *apiHandler {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Events == nil {
		cfg.Events = newEventBus()
	}
	h := &apiHandler{b: b, cfg: cfg, xfers: newTransferLog()}
	h.routes = map[string]route{
		"/v1/status": {http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, b.Status())
		}},
		"/v1/ring": {http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, b.Ring())
		}},
		"/v1/lookup": {http.MethodGet, h.lookup},
		"/v1/share":  {http.MethodPost, h.share},
		"/v1/fetch":  {http.MethodPost, h.fetch},
		"/v1/cat":    {http.MethodGet, h.cat},
		"/v1/events": {http.MethodGet, h.events},
		"/v1/transfers": {http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, h.xfers.list())
		}},
		"/v1/peers": {http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, peersOf(b))
		}},
	}
	return h
}

func (h *apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Pprof && strings.HasPrefix(r.URL.Path, pprofPrefix) {
		servePprof(w, r)
		return
	}
	rt, ok := h.routes[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s", r.URL.Path))
		return
	}
	if r.Method != rt.method {
		w.Header().Set("Allow", rt.method)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: only %s", r.Method, r.URL.Path, rt.method))
		return
	}
	rt.serve(w, r)
}

// Wait returns once no transfer is being served. Transfers end when their
// request's context does, so cancel that first (stop the server).
func (h *apiHandler) Wait() { h.transfers.Wait() }

func (h *apiHandler) lookup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("key")
	key, err := parseKey(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.LookupTimeout)
	defer cancel()
	l, err := h.b.Lookup(ctx, key)
	if err != nil {
		writeError(w, lookupStatus(err), fmt.Sprintf("lookup %s: %s", q, OneLine(err.Error())))
		return
	}
	writeJSON(w, http.StatusOK, l)
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
