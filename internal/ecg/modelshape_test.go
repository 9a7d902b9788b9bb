package ecg

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestReadModelRejectsNonTrees checks that ReadModel refuses trees whose nodes share a child
// or that are deeper than training can make them. Node indices only need to point forward, so
// without these checks a 40-node file whose every node points both ways to the next one reads
// as a tree of 2^40 paths: expanding it never ends, and a deep chain makes every beat walk that
// deep in every tree.
func TestReadModelRejectsNonTrees(t *testing.T) {
	leaf := node{Feat: -1, Value: 1}
	shared := make([]node, 41) // each node's two children are the next node
	for i := range 40 {
		shared[i] = node{Feat: 0, Thr: 0.5, Left: int32(i + 1), Right: int32(i + 1)}
	}
	shared[40] = leaf
	deep := make([]node, 2*(maxTreeDepth+1)+1) // a chain one level deeper than allowed
	for i := 0; i <= maxTreeDepth; i++ {
		deep[2*i] = node{Feat: 0, Thr: 0.5, Left: int32(2*i + 1), Right: int32(2*i + 2)}
		deep[2*i+1] = leaf
	}
	deep[len(deep)-1] = leaf
	ok := deep[2:] // the same chain from its second level: as deep as allowed
	for i := range ok {
		if ok[i].Feat >= 0 {
			ok[i].Left, ok[i].Right = ok[i].Left-2, ok[i].Right-2
		}
	}
	for _, c := range []struct {
		name  string
		nodes []node
		valid bool
	}{
		{"children shared", shared, false},
		{"one child twice", []node{{Feat: 0, Left: 1, Right: 1}, leaf}, false},
		{"deeper than training makes", deep, false},
		{"as deep as training makes", ok, true},
	} {
		m := &Model{Version: ModelVersion, NumFeatures: NumFeatures, ens: []*ensemble{{Trees: []tree{{Class: 0, Nodes: c.nodes}}}}}
		var b bytes.Buffer
		if _, err := m.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := ReadModel(&b); done <- err }()
		select {
		case err := <-done:
			if c.valid != (err == nil) || (err != nil && !errors.Is(err, ErrModelFormat)) {
				t.Errorf("%s: error %v, want valid %v", c.name, err, c.valid)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: ReadModel did not return within 10 s", c.name)
		}
	}
}

// TestTrainRejectsDeeperTrees checks that training cannot make a tree ReadModel would refuse.
func TestTrainRejectsDeeperTrees(t *testing.T) {
	beats := []Beat{{Class: ClassN}, {Class: ClassV}}
	if _, err := Train(context.Background(), beats, TrainOptions{Rounds: 1, MaxDepth: maxTreeDepth + 1}); err == nil {
		t.Errorf("depth %d: no error", maxTreeDepth+1)
	}
}
