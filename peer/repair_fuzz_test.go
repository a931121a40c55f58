package peer

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"chordshare/merkle"
	"chordshare/peer/pb"
)

// Repair messages come from any peer: decoding and answering them must
// never panic, and what decodes stays within the protocol's bounds.
func FuzzRepairMessages(f *testing.F) {
	q := &pb.RepairRequest{Type: pb.RepairRequest_SUMMARY, Queries: encodeQueries([]merkle.Query{{Range: merkle.Range{Hi: merkle.Key{1}}}, {Range: merkle.Range{Lo: merkle.Key{1}}}})}
	b, _ := proto.Marshal(q)
	f.Add(b)
	c := rawBlock(f, []byte("x"))
	a := &pb.RepairResponse{Answers: []*pb.RangeAnswer{{Listed: true, Cids: [][]byte{c.Bytes()}}, {Match: true}}}
	b, _ = proto.Marshal(a)
	f.Add(b)
	f.Add([]byte{0x12, 0x00})
	var items merkle.Sorted
	for i := range 100 {
		items = append(items, merkle.Item{Key: merkle.Key{byte(i)}, Val: c.Bytes()})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &pb.RepairRequest{}
		if proto.Unmarshal(data, req) == nil {
			if qs, err := decodeQueries(req.GetQueries()); err == nil {
				if len(qs) > maxRepairQueries {
					t.Fatalf("%d queries decoded", len(qs))
				}
				for _, a := range merkle.Answers(items, qs, repairMerkle.Leaf) {
					if len(a.Items) > repairMerkle.Leaf {
						t.Fatalf("answer lists %d items", len(a.Items))
					}
				}
			}
		}
		resp := &pb.RepairResponse{}
		if proto.Unmarshal(data, resp) == nil {
			as, err := decodeAnswers(resp.GetAnswers(), len(resp.GetAnswers()))
			if err != nil {
				return
			}
			// A reconciliation fed these answers ends, with an error or
			// a diff, whatever they say.
			calls := 0
			ex := func(_ context.Context, qs []merkle.Query) ([]merkle.Answer, error) {
				calls++
				if calls > 1 {
					return merkle.Answers(items, qs, repairMerkle.Leaf), nil
				}
				if len(as) != len(qs) {
					return as[:0:0], nil
				}
				return as, nil
			}
			_, _ = merkle.Reconcile(context.Background(), items, merkle.Range{}, ex, repairMerkle)
		}
	})
}
