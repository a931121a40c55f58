package peer

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// pprofPrefix is where the local API serves Go's profiles when the daemon
// runs with --pprof.
const pprofPrefix = "/debug/pprof/"

// servePprof answers /debug/pprof/...: the index, cmdline, profile (CPU,
// ?seconds=N), symbol, trace, and every named runtime profile (heap,
// allocs, goroutine, mutex, block, threadcreate).
func servePprof(w http.ResponseWriter, r *http.Request) {
	switch name := strings.TrimPrefix(r.URL.Path, pprofPrefix); name {
	case "":
		pprof.Index(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Handler(name).ServeHTTP(w, r)
	}
}
