package chord

import "testing"

// A successor list that lost an entry (a dead peer forgotten, a silent
// successor dropped) must be asked for whole at the next stabilization:
// with the old digest, the successor would answer "unchanged" and the
// hole would stay for good (seen after a peer restarted at its old
// positions: one vnode kept 15 of 16 successors).
func TestLosingASuccessorForgetsTheDigest(t *testing.T) {
	ids := []ID{at(0.1), at(0.2), at(0.3), at(0.4)}
	refs := make([]Ref, len(ids))
	for i, id := range ids {
		refs[i] = Ref{ID: id, Addr: string(rune('a' + i))}
	}
	for _, lose := range []func(v *vnode){
		func(v *vnode) { v.forget(func(r Ref) bool { return r.ID == refs[2].ID }) },
		func(v *vnode) { v.dropSuccessor(refs[2]) },
	} {
		v := newVnode(refs[0])
		v.setSuccessors(refs[1], refs[2:], refs[0], 42, 16)
		if d := v.knownDigest(refs[1]); d != 42 {
			t.Fatalf("digest %d before, want 42", d)
		}
		lose(v)
		if d := v.knownDigest(refs[1]); d != 0 {
			t.Errorf("digest %d after losing a successor, want 0 (none)", d)
		}
	}
}
