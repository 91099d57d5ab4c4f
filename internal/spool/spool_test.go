package spool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

var t0 = time.UnixMilli(1_800_000_000_000)

func open(t *testing.T, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFIFOWithAckAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Append([]byte(fmt.Sprintf("batch %d", i)), 10+i, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	b, ok, err := s.Peek()
	if err != nil || !ok || string(b.Data) != "batch 0" || b.Points != 10 || !b.Created.Equal(t0) {
		t.Fatalf("peek = %+v %v %v", b, ok, err)
	}
	if again, _, _ := s.Peek(); again.Index != b.Index {
		t.Error("peek removed the batch")
	}
	if err := s.Ack(b.Index); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, dir, Options{})
	st := s.Stats()
	if st.Batches != 4 || st.Points != 11+12+13+14 || !st.Oldest.Equal(t0.Add(time.Second)) {
		t.Errorf("after reopen: %+v, want 4 batches, 50 points, oldest 1 s after t0", st)
	}
	var got []string
	for {
		b, ok, err := s.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(b.Data))
		s.Ack(b.Index)
	}
	if fmt.Sprint(got) != "[batch 1 batch 2 batch 3 batch 4]" {
		t.Errorf("order after reopen: %v", got)
	}
	if st := s.Stats(); st.Batches != 0 || st.Bytes != 0 || !st.Oldest.IsZero() {
		t.Errorf("empty spool stats: %+v", st)
	}
}

func TestBoundDropsOldestFirstAndCounts(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 3 * (headerSize + 100), NoSync: true})
	payload := bytes.Repeat([]byte("x"), 100)
	var dropped Dropped
	for i := range 5 {
		d, err := s.Append(payload, i+1, t0)
		if err != nil {
			t.Fatal(err)
		}
		dropped.Batches += d.Batches
		dropped.Points += d.Points
	}
	if dropped.Batches != 2 || dropped.Points != 1+2 {
		t.Errorf("dropped %+v, want the 2 oldest batches (3 points)", dropped)
	}
	st := s.Stats()
	if st.Batches != 3 || st.Bytes > 3*(headerSize+100) || st.Points != 3+4+5 {
		t.Errorf("stats %+v: bound not respected", st)
	}
	if b, _, _ := s.Peek(); b.Points != 3 {
		t.Errorf("oldest kept batch has %d points, want 3", b.Points)
	}
	if _, err := s.Append(make([]byte, 4*(headerSize+100)), 1, t0); err == nil {
		t.Error("a batch larger than the whole spool was accepted")
	}
}

func TestTornTailIsCutOnOpen(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{})
	s.Append([]byte("first"), 1, t0)
	s.Append([]byte("second"), 2, t0)
	s.Close()
	// A crash in the middle of the next write leaves a length prefix that
	// promises more bytes than were written.
	seg := lastSegment(t, dir)
	f, _ := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{200, 1, 'p', 'a', 'r'})
	f.Close()

	s = open(t, dir, Options{})
	if st := s.Stats(); st.Batches != 2 {
		t.Fatalf("after repair: %d batches, want the 2 complete ones", st.Batches)
	}
	if _, err := s.Append([]byte("third"), 3, t0); err != nil {
		t.Fatalf("append after repair: %v", err)
	}
	var got []string
	for {
		b, ok, _ := s.Peek()
		if !ok {
			break
		}
		got = append(got, string(b.Data))
		s.Ack(b.Index)
	}
	if fmt.Sprint(got) != "[first second third]" {
		t.Errorf("got %v", got)
	}
}

func TestCorruptBatchIsNeverHandedOut(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{})
	s.Append([]byte("good-one"), 1, t0)
	s.Append([]byte("flip-me!"), 2, t0)
	s.Append([]byte("good-two"), 3, t0)
	s.Close()
	seg := lastSegment(t, dir)
	raw, _ := os.ReadFile(seg)
	i := bytes.Index(raw, []byte("flip-me!"))
	raw[i] ^= 0xff // a bit flip inside the second batch's payload
	os.WriteFile(seg, raw, 0o640)

	s = open(t, dir, Options{})
	var got []string
	for {
		b, ok, err := s.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(b.Data))
		s.Ack(b.Index)
	}
	if fmt.Sprint(got) != "[good-one good-two]" {
		t.Errorf("got %v, want the corrupt batch skipped", got)
	}
	if s.Stats().Corrupt != 1 {
		t.Errorf("corrupt count %d, want 1", s.Stats().Corrupt)
	}
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "[0-9]*"))
	if len(names) == 0 {
		t.Fatal("no segment")
	}
	sort.Strings(names)
	return names[len(names)-1]
}

// TestFailedWriteLeavesTheSpoolReadable makes a write fail half-way, as on
// a full disk (a file-size limit on this process), then writes again: every
// batch read back is the one written at its index, and the failed one is
// not there. The log's memory keeps failed entries, so the spool must read
// the log again after a failed write.
func TestFailedWriteLeavesTheSpoolReadable(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	payload := func(tag string, n int) []byte { return []byte(strings.Repeat(tag, n)) }
	for i := range 3 {
		if _, err := s.Append(payload(fmt.Sprint(i), 1000), 1, time.Unix(int64(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	segments, _ := filepath.Glob(filepath.Join(dir, "0*"))
	info, err := os.Stat(segments[len(segments)-1])
	if err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limited := syscall.Rlimit{Cur: uint64(info.Size()) + 500, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limited); err != nil {
		t.Fatalf("cannot limit the file size: %v", err)
	}
	_, werr := s.Append(payload("X", 5000), 1, time.Unix(9, 0)) // half of it fits
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if werr == nil || !strings.Contains(werr.Error(), "file too large") {
		t.Fatalf("write over the limit: err = %v, want the file-size error", werr)
	}
	for i := 3; i < 5; i++ {
		if _, err := s.Append(payload(fmt.Sprint(i), 1000), 1, time.Unix(int64(i), 0)); err != nil {
			t.Fatalf("append after the failure: %v", err)
		}
	}
	batches, err := s.PeekMany(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != 5 {
		t.Fatalf("%d batches, want 5", len(batches))
	}
	for i, b := range batches {
		if want := payload(fmt.Sprint(i), 1000); !bytes.Equal(b.Data, want) {
			t.Errorf("batch %d holds %q…, want %q…", i, b.Data[:5], want[:5])
		}
	}
	if st := s.Stats(); st.Batches != 5 || st.Points != 5 {
		t.Errorf("stats %+v, want 5 batches and 5 points", st)
	}
}
