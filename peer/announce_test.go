package peer

import (
	"crypto/rand"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	ma "github.com/multiformats/go-multiaddr"
)

// A host given Announce tells those addresses, not its listen addresses:
// what the testnet's shaper needs from a node behind its proxy.
func TestAnnounceReplacesListenAddrs(t *testing.T) {
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	listen := ma.StringCast("/ip4/127.0.0.1/tcp/0")
	proxy := ma.StringCast("/ip4/127.0.1.2/tcp/4001")
	h, err := NewHost(priv, []ma.Multiaddr{listen}, Announce([]ma.Multiaddr{proxy}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := h.Addrs(); !slices.EqualFunc(got, []ma.Multiaddr{proxy}, ma.Multiaddr.Equal) {
		t.Fatalf("host tells %v, want only %v", got, proxy)
	}
	if len(h.Network().ListenAddresses()) == 0 {
		t.Fatal("the host listens nowhere")
	}
}
