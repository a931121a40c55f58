package peer

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// GetStep is one step of a Get, as Config.GetTrace reports it.
type GetStep int

const (
	GetBegan     GetStep = iota // the Get was called
	GetLocated                  // its replica list is known (Peers: how many)
	GetAsked                    // a replica was asked (Hedge: while another was still out)
	GetSent                     // the request is written: its connection is up (a first one waits for the handshake)
	GetAnswering                // a replica's response header arrived
	GetReceived                 // a replica's block arrived (Bytes)
	GetDropped                  // a request ended without the block (Err)
	GetEnded                    // the Get returned (Err if it failed)
)

// GetEvent is one step of one Get.
type GetEvent struct {
	At    time.Time
	CID   cid.Cid
	Step  GetStep
	Peer  p2ppeer.ID
	Peers int  // GetLocated: replicas found; GetAsked: requests now out for this Get
	Hedge bool // GetAsked: another request for the block is still out
	Bytes int
	Err   error
}

// trace reports a step of a Get to Config.GetTrace, if set.
func (n *Node) trace(e GetEvent) {
	if n.cfg.GetTrace != nil {
		e.At = time.Now()
		n.cfg.GetTrace(e)
	}
}

// GetTraceEnv, set to anything, makes a daemon write every Get step to its
// log as a "get-trace" line (Config.GetTrace): a per-request timeline of a
// fetch through real daemons.
const GetTraceEnv = "CHORDSHARE_GET_TRACE"

var stepNames = [...]string{GetBegan: "began", GetLocated: "located", GetAsked: "asked", GetSent: "sent", GetAnswering: "answering", GetReceived: "received", GetDropped: "dropped", GetEnded: "ended"}

func (s GetStep) String() string {
	if int(s) < len(stepNames) {
		return stepNames[s]
	}
	return fmt.Sprintf("step%d", int(s))
}

// logGetTrace returns a GetTrace that writes each step to w as one
// tab-separated line: "get-trace", unix microseconds, block, step,
// replica, requests, hedge, bytes, error.
func logGetTrace(w io.Writer) func(GetEvent) {
	var mu sync.Mutex
	return func(e GetEvent) {
		var rep, errs string
		if e.Peer != "" {
			rep = e.Peer.String()
		}
		if e.Err != nil {
			errs = e.Err.Error()
		}
		line := fmt.Sprintf("get-trace\t%d\t%s\t%s\t%s\t%d\t%v\t%d\t%s\n", e.At.UnixMicro(), e.CID, e.Step, rep, e.Peers, e.Hedge, e.Bytes, errs)
		mu.Lock()
		_, _ = io.WriteString(w, line)
		mu.Unlock()
	}
}
