package breaker

import (
	"testing"
	"time"
)

func TestOpensAfterThresholdAndBacksOffDoublingToMax(t *testing.T) {
	b := Breaker{Threshold: 3, Base: 30 * time.Second, Max: 2 * time.Minute}
	now := time.Unix(1_700_000_000, 0)
	for i := range 2 {
		if b.Fail(now) {
			t.Fatalf("opened on failure %d of a threshold of 3", i+1)
		}
	}
	if !b.Fail(now) {
		t.Fatal("did not open on the third failure")
	}
	if until, open := b.Open(now.Add(29 * time.Second)); !open || !until.Equal(now.Add(30*time.Second)) {
		t.Errorf("open %v until %v, want until +30s", open, until)
	}
	if _, open := b.Open(now.Add(30 * time.Second)); open {
		t.Error("still open when the backoff ended")
	}
	var got []time.Duration
	for range 3 {
		b.Fail(now)
		got = append(got, b.Backoff())
	}
	if want := []time.Duration{time.Minute, 2 * time.Minute, 2 * time.Minute}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("backoffs %v, want %v", got, want)
	}
	b.OK()
	if _, open := b.Open(now); open || b.Fail(now) {
		t.Error("a success did not close the circuit and start the count again")
	}
}
