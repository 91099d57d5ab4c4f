package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"testing"

	"github.com/tidwall/wal"
)

func TestTagsComeBackAsAppended(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := []Entry{{Data: []byte("a 1\n"), Points: 1}, {Data: []byte("b 2\nb 3\n"), Points: 2, Tag: 2}, {Data: []byte("c 4\n"), Points: 1, Tag: 3}}
	if _, err := s.AppendMany(in, t0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{}) // the tags are on disk, not only in memory
	got, err := s.PeekMany(1 << 20)
	if err != nil || len(got) != 3 {
		t.Fatalf("peek: %d batches, %v", len(got), err)
	}
	for i, b := range got {
		if b.Tag != in[i].Tag || string(b.Data) != string(in[i].Data) || b.Points != in[i].Points {
			t.Errorf("batch %d: tag %d, %d points, %q; appended tag %d, %d points, %q", i, b.Tag, b.Points, b.Data, in[i].Tag, in[i].Points, in[i].Data)
		}
	}
	if st := s.Stats(); st.Points != 4 {
		t.Errorf("stats count %d points, want 4 (the tag bit is not a point count)", st.Points)
	}
}

// A spool written before tags existed: entries of crc32, points, created
// and the payload, put into the log directly here in that layout.
func TestSpoolFromBeforeTagsReads(t *testing.T) {
	dir := t.TempDir()
	log, err := wal.Open(dir, &wal.Options{AllowEmpty: true})
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("joules_gpu_power_watts,host=n1 value=350 1800000000000000000\n")
	e := make([]byte, 16+len(payload))
	binary.BigEndian.PutUint32(e[0:4], crc32.ChecksumIEEE(payload))
	binary.BigEndian.PutUint32(e[4:8], 1)
	binary.BigEndian.PutUint64(e[8:16], uint64(t0.UnixMilli()))
	copy(e[16:], payload)
	if err := log.Write(1, e); err != nil {
		t.Fatal(err)
	}
	log.Close()
	s := open(t, dir, Options{})
	b, ok, err := s.Peek()
	if err != nil || !ok {
		t.Fatalf("peek: %v %v", ok, err)
	}
	if b.Tag != 0 || b.Points != 1 || string(b.Data) != string(payload) || !b.Created.Equal(t0) {
		t.Errorf("old entry read as tag %d, %d points, created %v, %q", b.Tag, b.Points, b.Created, b.Data)
	}
}

// The checksum covers the tag: a flipped tag is caught, never sent at the
// wrong precision.
func TestFlippedTagIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{})
	s.AppendMany([]Entry{{Data: []byte("tagged-batch"), Points: 1, Tag: 2}, {Data: []byte("next"), Points: 1, Tag: 2}}, t0)
	s.Close()
	seg := lastSegment(t, dir)
	raw, _ := os.ReadFile(seg)
	i := bytes.Index(raw, []byte("tagged-batch"))
	raw[i-1] = 3 // the tag byte just before the payload: ms becomes s
	os.WriteFile(seg, raw, 0o640)
	s = open(t, dir, Options{})
	b, ok, err := s.Peek()
	if err != nil || !ok || string(b.Data) != "next" || s.Stats().Corrupt != 1 {
		t.Errorf("peek %q (%v %v), corrupt %d: want the flipped batch skipped", b.Data, ok, err, s.Stats().Corrupt)
	}
}
