package main

import (
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"chordshare/peer"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// linkUse: idle while no response is being received; holder-bound while
// the holders sending have less uplink in all than the downlink.
func TestLinkUse(t *testing.T) {
	block := func(s string) cid.Cid {
		c, err := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := block("a"), block("b")
	fast, slow := p2ppeer.ID("fast"), p2ppeer.ID("slow")
	up := map[p2ppeer.ID]float64{fast: 10e6, slow: 2.5e6}
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	events := []peer.GetEvent{
		{At: at(0), CID: a, Step: peer.GetAsked, Peer: slow},
		{At: at(100), CID: a, Step: peer.GetAnswering, Peer: slow},
		// 100–300: only the slow holder sends: 3/4 of a 10 MB/s link lost.
		{At: at(300), CID: b, Step: peer.GetAnswering, Peer: fast},
		{At: at(500), CID: a, Step: peer.GetReceived, Peer: slow},
		{At: at(600), CID: b, Step: peer.GetReceived, Peer: fast},
		// 600–700: nothing is being received.
		{At: at(700), CID: a, Step: peer.GetAnswering, Peer: fast},
		{At: at(800), CID: a, Step: peer.GetDropped, Peer: fast},
	}
	idle, bound := linkUse(events, up, 10e6)
	if idle != 100*time.Millisecond {
		t.Errorf("idle %v, want 100ms", idle)
	}
	if bound != 150*time.Millisecond {
		t.Errorf("holder-bound %v, want 150ms", bound)
	}
}
