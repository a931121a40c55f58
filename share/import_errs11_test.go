package share

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
)

// putterFunc is a Putter from a function.
type putterFunc func(context.Context, cid.Cid, []byte) error

func (f putterFunc) Put(ctx context.Context, c cid.Cid, data []byte) error { return f(ctx, c, data) }

// A put that fails is Import's whole error, "put CID: why", the block
// named once and no "import: " before it; an error of the import's own
// (a read) keeps it.
func TestImportPutErrorOneLineErrs11(t *testing.T) {
	errDown := errors.New("1 of 3 replicas acknowledged (2 needed): peer ..x: block store full")
	data := bytes.Repeat([]byte("one block "), 100)
	var put cid.Cid
	_, err := Import(context.Background(), bytes.NewReader(data), putterFunc(func(_ context.Context, c cid.Cid, _ []byte) error {
		put = c
		return errDown
	}), ImportOptions{})
	if want := "put " + put.String() + ": " + errDown.Error(); err == nil || err.Error() != want || !errors.Is(err, errDown) {
		t.Fatalf("import whose put failed: %v, want %q", err, want)
	}
	errRead := errors.New("disk gone")
	_, err = Import(context.Background(), failingReader{errRead}, putterFunc(func(context.Context, cid.Cid, []byte) error { return nil }), ImportOptions{})
	if err == nil || !errors.Is(err, errRead) || !strings.HasPrefix(err.Error(), "import: ") {
		t.Fatalf("import whose read failed: %v, want %v after \"import: \"", err, errRead)
	}
}

// failingReader fails every read with err.
type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }
