// Package spool is the disk queue between a producer of line-protocol
// batches and the sender that delivers them: a batch is written (and, unless
// told otherwise, fsynced) before it counts as accepted, and removed only
// when the receiver acknowledged it. It is built on github.com/tidwall/wal,
// a segmented append-only log with front truncation, which is exactly a
// queue with acknowledgement: append at the back, read the front, truncate
// the front on acknowledgement.
//
// On top of the log the spool adds what a telemetry queue needs: a size
// bound that drops the oldest batches first (counted, never silent), a
// checksum per batch so nothing corrupt is ever sent, and recovery of a log
// whose last write was torn by a crash.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/tidwall/wal"
)

// Options tune a spool; the zero value is usable.
type Options struct {
	// MaxBytes bounds the spool's payload; when an append would pass it, the
	// oldest batches are dropped first. 0 means 1 GiB.
	MaxBytes int64
	// NoSync skips the fsync after each append (tests and benchmarks only:
	// a crash may then lose what the receiver was told is safe).
	NoSync bool
}

// Batch is one spooled batch.
type Batch struct {
	Index   uint64
	Points  int
	Created time.Time
	Data    []byte
	// Tag is the producer's own label for the batch, given back as it was
	// appended (the aggregator keeps the batch's line-protocol precision
	// there, so a request body can be spooled as received). Batches spooled
	// before tags existed read back with tag 0.
	Tag byte
}

// Entry is one batch to append.
type Entry struct {
	Data   []byte
	Points int
	Tag    byte
}

// Dropped says what an append had to drop to stay within the bound.
type Dropped struct {
	Batches, Points int
}

// Spool is a bounded, durable FIFO of batches. It is safe for concurrent use.
type Spool struct {
	opts    Options
	dir     string
	walOpts *wal.Options

	mu          sync.Mutex
	log         *wal.Log // nil after a failed write whose reopening failed too
	first, next uint64   // first index in the log; index the next append gets
	sizes       map[uint64]entryInfo
	batch       wal.Batch
	scratch     []byte
	bytes       int64
	points      int
	corrupt     int // batches skipped because their checksum failed
}

type entryInfo struct {
	size    int64
	points  int
	created time.Time
}

// An entry on disk is a header and the payload:
//
//	crc32 of the payload and tag | points | created (unix ms) | [tag] | payload
//
// The tag byte is there when the top bit of points is set (no batch holds
// 2^31 points), so spools written before tags existed read as they are.
const (
	headerSize = 4 + 4 + 8
	tagged     = 1 << 31
)

// Open opens or creates the spool in dir. A last entry torn by a crash is
// cut off (it was never acknowledged to its producer as spooled).
func Open(dir string, opts Options) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	// Small segments: tidwall/wal keeps the segment being written in
	// memory (grown by copying) and, on an acknowledgement inside a
	// segment, rewrites the rest of it. At 16 MiB these were most of the
	// aggregator's heap and a good part of its CPU under load.
	s := &Spool{opts: opts, dir: dir,
		walOpts: &wal.Options{NoSync: opts.NoSync, AllowEmpty: true, SegmentSize: 1 << 20, SegmentCacheSize: 1, DirPerms: 0o750, FilePerms: 0o640}}
	if err := s.reopen(); err != nil {
		return nil, err
	}
	return s, nil
}

// reopen (re)reads the log from disk, cutting a torn last entry, and
// counts what it holds; call with s.mu held (or before s is shared).
// After a failed write the log must be reopened: tidwall/wal keeps the
// failed entries in its memory, and the next write's entries would be read
// back as the failed ones.
func (s *Spool) reopen() error {
	if s.log != nil {
		_ = s.log.Close()
		s.log = nil
	}
	log, err := wal.Open(s.dir, s.walOpts)
	if errors.Is(err, wal.ErrCorrupt) {
		if rerr := repairTail(s.dir); rerr != nil {
			return fmt.Errorf("spool %s: repair after a crash: %w", s.dir, rerr)
		}
		log, err = wal.Open(s.dir, s.walOpts)
	}
	if err != nil {
		return fmt.Errorf("spool %s: %w (move the folder aside to start empty)", s.dir, err)
	}
	first, err := log.FirstIndex()
	if err != nil {
		log.Close()
		return err
	}
	last, err := log.LastIndex()
	if err != nil {
		log.Close()
		return err
	}
	sizes := map[uint64]entryInfo{}
	var bytes int64
	var points int
	for i := first; i <= last; i++ {
		raw, err := log.Read(i)
		if err != nil {
			log.Close()
			return fmt.Errorf("spool %s: read batch %d: %w", s.dir, i, err)
		}
		b, _ := decode(i, raw)
		info := entryInfo{size: int64(len(raw)), points: b.Points, created: b.Created}
		sizes[i] = info
		bytes += info.size
		points += info.points
	}
	s.log, s.first, s.next, s.sizes, s.bytes, s.points = log, first, last+1, sizes, bytes, points
	return nil
}

// ready reopens the log if a failed write left it closed; call with s.mu held.
func (s *Spool) ready() error {
	if s.log != nil {
		return nil
	}
	return s.reopen()
}

// repairTail cuts the last segment after its last complete entry. The log's
// binary format is a uvarint length followed by the data.
func repairTail(dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, "[0-9]*"))
	if err != nil || len(names) == 0 {
		return fmt.Errorf("no segment to repair: %v", err)
	}
	sort.Strings(names)
	last := names[len(names)-1]
	data, err := os.ReadFile(last)
	if err != nil {
		return err
	}
	good := 0
	for good < len(data) {
		size, n := binary.Uvarint(data[good:])
		if n <= 0 || uint64(len(data)-good-n) < size {
			break
		}
		good += n + int(size)
	}
	return os.Truncate(last, int64(good))
}

// Append spools one batch of points, dropping the oldest batches first when
// it would not fit. created is kept with the batch (its oldest sample, or
// when it was made) and given back by Peek. It returns once the batch is on disk (fsynced unless
// Options.NoSync).
func (s *Spool) Append(data []byte, points int, created time.Time) (Dropped, error) {
	d, err := s.AppendMany([]Entry{{Data: data, Points: points}}, created)
	return d, err
}

// AppendMany spools several batches with one write and one fsync: the
// group commit of a server that receives many small requests at once.
func (s *Spool) AppendMany(batches []Entry, created time.Time) (Dropped, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var total int64
	sizes := make([]int64, len(batches))
	for i, in := range batches {
		sizes[i] = in.size()
		total += sizes[i]
	}
	if total > s.opts.MaxBytes {
		return Dropped{}, fmt.Errorf("batch of %d bytes is larger than the whole spool (%d bytes)", total, s.opts.MaxBytes)
	}
	if err := s.ready(); err != nil {
		return Dropped{}, err
	}
	var dropped Dropped
	for s.bytes+total > s.opts.MaxBytes && s.first < s.next {
		info := s.sizes[s.first]
		if err := s.truncate(s.first + 1); err != nil {
			return dropped, err
		}
		dropped.Batches++
		dropped.Points += info.points
	}
	// One batch and one scratch buffer reused: their buffers keep their
	// size, where new ones would grow by copying for every group; but one
	// huge group must not pin its memory.
	b := &s.batch
	defer func() {
		b.Clear()
		if total > 8<<20 {
			s.batch, s.scratch = wal.Batch{}, nil
		}
	}()
	for i, in := range batches {
		// The batch copies the entry, so the scratch buffer serves all.
		s.scratch = appendEntry(s.scratch[:0], in, created)
		b.Write(s.next+uint64(i), s.scratch)
	}
	if err := s.log.WriteBatch(b); err != nil {
		// What reached the disk is read back; a write that did land in full
		// is kept, and its producer, told it failed, sends it again: at
		// least once.
		if rerr := s.reopen(); rerr != nil {
			return dropped, fmt.Errorf("spool write: %w; reopening the spool: %v", err, rerr)
		}
		return dropped, fmt.Errorf("spool write: %w", err)
	}
	for i, size := range sizes {
		s.sizes[s.next+uint64(i)] = entryInfo{size: size, points: batches[i].Points, created: created}
		s.bytes += size
		s.points += batches[i].Points
	}
	s.next += uint64(len(sizes))
	return dropped, nil
}

// checksum covers the payload and, when there is one, the tag: a flipped
// tag would send a batch at the wrong precision without an error.
func checksum(data []byte, tag byte) uint32 {
	sum := crc32.ChecksumIEEE(data)
	if tag != 0 {
		sum = crc32.Update(sum, crc32.IEEETable, []byte{tag})
	}
	return sum
}

// size is the entry's size on disk.
func (in Entry) size() int64 {
	if in.Tag != 0 {
		return headerSize + 1 + int64(len(in.Data))
	}
	return headerSize + int64(len(in.Data))
}

func appendEntry(e []byte, in Entry, created time.Time) []byte {
	points := uint32(in.Points)
	if in.Tag != 0 {
		points |= tagged
	}
	e = binary.BigEndian.AppendUint32(e, checksum(in.Data, in.Tag))
	e = binary.BigEndian.AppendUint32(e, points)
	e = binary.BigEndian.AppendUint64(e, uint64(created.UnixMilli()))
	if in.Tag != 0 {
		e = append(e, in.Tag)
	}
	return append(e, in.Data...)
}

// Peek returns the oldest batch without removing it. A batch whose checksum
// fails is removed and skipped (counted in Stats().Corrupt): nothing corrupt
// is ever handed to a sender.
func (s *Spool) Peek() (Batch, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return Batch{}, false, err
	}
	for s.first < s.next {
		raw, err := s.log.Read(s.first)
		if err != nil {
			return Batch{}, false, fmt.Errorf("spool read: %w", err)
		}
		if b, ok := decode(s.first, raw); ok {
			return b, true, nil
		}
		s.corrupt++
		if err := s.truncate(s.first + 1); err != nil {
			return Batch{}, false, err
		}
	}
	return Batch{}, false, nil
}

// PeekMany returns the oldest batches, in order, up to maxBytes of payload
// (at least one), so a sender can merge small batches into one request.
func (s *Spool) PeekMany(maxBytes int) ([]Batch, error) {
	var out []Batch
	size := 0
	for {
		s.mu.Lock()
		index := s.first + uint64(len(out))
		if index >= s.next {
			s.mu.Unlock()
			return out, nil
		}
		if err := s.ready(); err != nil {
			s.mu.Unlock()
			return out, err
		}
		raw, err := s.log.Read(index)
		s.mu.Unlock()
		if err != nil {
			return out, fmt.Errorf("spool read: %w", err)
		}
		b, ok := decode(index, raw)
		if !ok {
			if len(out) > 0 {
				return out, nil // Peek skips it once the batches before it are acknowledged
			}
			b, ok, err := s.Peek()
			if !ok || err != nil {
				return nil, err
			}
			out = append(out, b)
			size += len(b.Data)
			continue
		}
		if len(out) > 0 && size+len(b.Data) > maxBytes {
			return out, nil
		}
		out = append(out, b)
		size += len(b.Data)
	}
}

// Ack removes the batch with this index and every older one.
func (s *Spool) Ack(index uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index < s.first {
		return nil // already gone (dropped to make room)
	}
	return s.truncate(index + 1)
}

// truncate removes everything before index; call with s.mu held.
func (s *Spool) truncate(index uint64) error {
	if err := s.ready(); err != nil {
		return err
	}
	if err := s.log.TruncateFront(index); err != nil {
		return fmt.Errorf("spool truncate: %w", err)
	}
	for i := s.first; i < index; i++ {
		s.bytes -= s.sizes[i].size
		s.points -= s.sizes[i].points
		delete(s.sizes, i)
	}
	s.first = index
	return nil
}

// decode reads a spooled entry: its header, and whether the payload's
// checksum holds. A header too short to read gives a zero batch.
func decode(index uint64, raw []byte) (Batch, bool) {
	if len(raw) < headerSize {
		return Batch{Index: index}, false
	}
	points := binary.BigEndian.Uint32(raw[4:8])
	b := Batch{
		Index:   index,
		Points:  int(points &^ tagged),
		Created: time.UnixMilli(int64(binary.BigEndian.Uint64(raw[8:16]))),
		Data:    raw[headerSize:],
	}
	if points&tagged != 0 {
		if len(raw) < headerSize+1 {
			return Batch{Index: index}, false
		}
		b.Tag, b.Data = raw[headerSize], raw[headerSize+1:]
	}
	return b, checksum(b.Data, b.Tag) == binary.BigEndian.Uint32(raw[0:4])
}

// Stats describes the spool now.
type Stats struct {
	Batches, Points int
	Bytes           int64
	Oldest          time.Time // zero when empty
	Corrupt         int
}

// Stats returns the spool's depth, size and oldest batch.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Batches: int(s.next - s.first), Points: s.points, Bytes: s.bytes, Corrupt: s.corrupt}
	if s.first < s.next {
		st.Oldest = s.sizes[s.first].created
	}
	return st
}

// Bounds returns the index of the oldest batch held and the index the
// next append gets: every batch below first is acknowledged (or dropped).
func (s *Spool) Bounds() (first, next uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, s.next
}

// Close closes the log.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return nil
	}
	return s.log.Close()
}
