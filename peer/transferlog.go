package peer

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"chordshare/peer/api"
)

// Transfer log sizes: finished transfers kept for GET /v1/transfers, and the
// window over which a running transfer's rate is measured.
const (
	finishedTransfers = 64
	rateWindow        = 5 * time.Second
)

// transferLog is the API's record of the transfers it serves and served,
// for GET /v1/transfers. Safe for concurrent use.
type transferLog struct {
	now func() time.Time

	mu       sync.Mutex
	nextID   uint64
	running  map[uint64]*runningTransfer
	finished []api.Transfer // oldest first, at most finishedTransfers
}

// runningTransfer reads a transfer's progress from its handler's counters.
type runningTransfer struct {
	t        api.Transfer
	progress func() (done, total int64)
	samples  []rateSample // the last rateWindow of progress, oldest first
}

type rateSample struct {
	at   time.Time
	done int64
}

func newTransferLog() *transferLog {
	return &transferLog{now: time.Now, running: map[uint64]*runningTransfer{}}
}

// start records a transfer that begins now and returns its ID.
func (l *transferLog) start(kind, name, cid string, progress func() (done, total int64)) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextID++
	now := l.now()
	l.running[l.nextID] = &runningTransfer{
		t:        api.Transfer{ID: l.nextID, Kind: kind, Name: name, CID: cid, State: api.TransferRunning, Total: -1, Started: now},
		progress: progress,
		samples:  []rateSample{{at: now}},
	}
	return l.nextID
}

// finish records the end of transfer id: its root CID (if now known) and
// its error text, "" for success.
func (l *transferLog) finish(id uint64, cid string, errText string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.running[id]
	if !ok {
		return
	}
	delete(l.running, id)
	t := r.t
	now := l.now()
	t.Ended = &now
	t.Done, t.Total = r.progress()
	if cid != "" {
		t.CID = cid
	}
	t.State, t.Error = api.TransferDone, errText
	switch {
	case errText != "":
		t.State = api.TransferFailed
	case t.Total < 0:
		t.Total = t.Done // a share of unknown size: now it is known
	}
	if secs := now.Sub(t.Started).Seconds(); secs > 0 {
		t.Rate = float64(t.Done) / secs
	}
	l.finished = append(l.finished, t)
	if len(l.finished) > finishedTransfers {
		l.finished = slices.Delete(l.finished, 0, len(l.finished)-finishedTransfers)
	}
}

// list is the running transfers, then the finished ones, newest first.
func (l *transferLog) list() api.Transfers {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	out := api.Transfers{Transfers: make([]api.Transfer, 0, len(l.running)+len(l.finished))}
	for _, r := range l.running {
		t := r.t
		t.Done, t.Total = r.progress()
		r.samples = append(r.samples, rateSample{at: now, done: t.Done})
		for len(r.samples) > 2 && now.Sub(r.samples[1].at) >= rateWindow {
			r.samples = r.samples[1:]
		}
		if first := r.samples[0]; now.Sub(first.at) > 0 {
			t.Rate = float64(t.Done-first.done) / now.Sub(first.at).Seconds()
		}
		out.Transfers = append(out.Transfers, t)
	}
	slices.SortFunc(out.Transfers, func(a, b api.Transfer) int { return int(b.ID) - int(a.ID) })
	for i := len(l.finished) - 1; i >= 0; i-- {
		out.Transfers = append(out.Transfers, l.finished[i])
	}
	return out
}

// startTransfer records a transfer in the API's list and publishes its
// start. kind is "share", "fetch" or "cat"; cat's are listed, not logged.
func (h *apiHandler) startTransfer(kind, name, cid string, progress func() (done, total int64)) uint64 {
	id := h.xfers.start(kind, name, cid, progress)
	if kind != "cat" {
		what := name
		if what == "" {
			what = cid
		}
		h.cfg.Events.publish(api.NodeEvent{Kind: kind + "_started", CID: cid, Message: kind + " " + what + " started"})
	}
	return id
}

// endTransfer records the end of transfer id, failed if errText is set.
func (h *apiHandler) endTransfer(id uint64, kind, name, cid string, size int64, errText string) {
	h.xfers.finish(id, cid, errText)
	if kind == "cat" {
		return
	}
	what := name
	if what == "" {
		what = cid
	}
	e := api.NodeEvent{Kind: kind + "_finished", CID: cid, Count: size}
	switch {
	case errText != "":
		e.Kind, e.Message = kind+"_failed", errText
	case kind == "share":
		e.Message = fmt.Sprintf("shared %s as %s (%s)", what, cid, FormatSize(size))
	default:
		e.Message = fmt.Sprintf("fetched %s to %s (%s)", cid, name, FormatSize(size))
	}
	h.cfg.Events.publish(e)
}

// maxNameLen bounds the file name a share's client gives.
const maxNameLen = 255

// displayName makes a client's file name safe to show: one line of
// printable characters, bounded.
func displayName(s string) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
	if len(s) > maxNameLen {
		s = s[:maxNameLen]
	}
	return s
}
