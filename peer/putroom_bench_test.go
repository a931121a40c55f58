package peer

import (
	"bufio"
	"testing"
)

// BenchmarkReadPut is what a PUT's growing buffer (readPut) costs against
// one of the block's size taken at its header (readPayload, as GETs'
// answers are read): a 256 KiB leaf read from memory in yamux-sized
// parts, nothing else, so that the difference is the growth's copies and
// room-keeping alone. Set it against the cpu-ns/B of BenchmarkBlockPathPut.
//
//	go test -run '^$' -bench ReadPut -count 8 ./peer
func BenchmarkReadPut(b *testing.B) {
	const size = blockPathSize
	src := &framedReader{frame: movedChunk}
	br := bufio.NewReaderSize(src, 4<<10)
	room := newPutRoom(putBudget, nil)
	for _, v := range []struct {
		name string
		read func() ([]byte, error)
	}{
		{"whole", func() ([]byte, error) { return readPayload(br, size, func(int) {}) }},
		{"growing", func() ([]byte, error) {
			rec := room.admit(size, func() {})
			defer rec.release()
			return readPut(br, size, rec, func() {})
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				src.left = size
				br.Reset(src)
				data, err := v.read()
				if err != nil {
					b.Fatal(err)
				}
				putBuf(data)
			}
		})
	}
}

// framedReader hands out left zero bytes, at most frame of them a Read,
// as yamux hands out a frame's payload.
type framedReader struct {
	frame, left int
}

func (r *framedReader) Read(p []byte) (int, error) {
	n := min(len(p), r.frame, r.left)
	clear(p[:n])
	r.left -= n
	return n, nil
}
