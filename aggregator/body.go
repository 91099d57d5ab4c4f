package aggregator

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// buffers keeps request bodies and gzip readers for reuse: a body is
// garbage once its request is answered, and at hundreds of requests a
// second that garbage was much of the collector's work and of the
// aggregator's peak memory.
type buffers struct {
	bodies, readers, arenas sync.Pool
}

func (b *buffers) arena() *arena {
	if a, ok := b.arenas.Get().(*arena); ok {
		return a
	}
	return &arena{names: map[string]string{}}
}

// putArena keeps a for the next request unless it grew past what a
// typical one needs.
func (b *buffers) putArena(a *arena) {
	if cap(a.points) > 1<<18 || cap(a.fields) > 1<<20 || cap(a.tags) > 1<<20 {
		return
	}
	a.reset()
	b.arenas.Put(a)
}

// Bodies larger than this are not kept: one rare huge request must not pin
// its memory.
const maxPooledBody = 8 << 20

func (b *buffers) get(size int64) []byte {
	if v, ok := b.bodies.Get().(*[]byte); ok && int64(cap(*v)) > size {
		return (*v)[:0]
	}
	return make([]byte, 0, size+1) // +1: the read that finds the end needs room
}

func (b *buffers) put(buf []byte) {
	if buf != nil && cap(buf) <= maxPooledBody {
		b.bodies.Put(&buf)
	}
}

// readBody reads the body within the limits, gunzipping it if needed,
// into a buffer from the pool; the caller puts it back.
func (in *Ingest) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if r.ContentLength > in.limits.MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes is over the limit of %d", r.ContentLength, in.limits.MaxBodyBytes)
	}
	// The announced size sizes the buffer, up to 1 MiB: a client that
	// announces 16 MiB and stalls must not hold that much before sending.
	raw, err := readAll(http.MaxBytesReader(w, r.Body, in.limits.MaxBodyBytes), in.bufs.get(min(max(r.ContentLength, 512), 1<<20)))
	if err != nil {
		in.bufs.put(raw)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body is over the limit of %d bytes", in.limits.MaxBodyBytes)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if !strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		return raw, 0, nil
	}
	defer in.bufs.put(raw)
	zr, _ := in.bufs.readers.Get().(*gzip.Reader)
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(raw))
	} else {
		err = zr.Reset(bytes.NewReader(raw))
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("body says gzip but is not: %w", err)
	}
	defer in.bufs.readers.Put(zr)
	out, err := readAll(io.LimitReader(zr, in.limits.MaxDecompressedBytes+1), in.bufs.get(gunzipHint(raw, in.limits.MaxDecompressedBytes)))
	if err != nil {
		in.bufs.put(out)
		return nil, http.StatusBadRequest, fmt.Errorf("gunzip body: %w", err)
	}
	if int64(len(out)) > in.limits.MaxDecompressedBytes {
		in.bufs.put(out)
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body decompresses to more than the limit of %d bytes", in.limits.MaxDecompressedBytes)
	}
	return out, 0, nil
}

// gunzipHint is the buffer size to gunzip raw into. The gzip trailer holds
// the size decompressed (mod 4 GiB): a hint, never trusted. It is bounded
// by the limit and by 32 times the body (line protocol gzips 10 to 20
// times), so a small body with a forged trailer cannot make the aggregator
// allocate the whole limit up front; a body that does decompress further
// grows the buffer as it goes.
func gunzipHint(raw []byte, limit int64) int64 {
	hint := int64(512)
	if len(raw) >= 4 {
		hint = max(hint, min(int64(binary.LittleEndian.Uint32(raw[len(raw)-4:])), 32*int64(len(raw)), limit))
	}
	return hint
}

// readAll reads r to its end into b, growing it only when the size it was
// made for was short.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
