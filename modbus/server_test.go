package modbus

import (
	"io"
	"log"
	"math"
	"net"
	"sync"
	"testing"

	mb "github.com/simonvetter/modbus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeMeter is a Modbus TCP server's register store the test controls:
// registers not set read 0, ranges marked illegal answer the exception
// illegal data address, and exception (when set) answers every read.
type fakeMeter struct {
	mu        sync.Mutex
	holding   map[uint16]uint16
	input     map[uint16]uint16
	illegal   [][2]uint16 // holding register ranges, inclusive
	exception error
	reads     []served
}

// served is one read request the server answered.
type served struct {
	unit     uint8
	input    bool
	addr, nr uint16
}

// startMeter starts a real Modbus TCP server (the library's) on a free
// loopback port, stopped when the test ends.
func startMeter(t *testing.T) (*fakeMeter, string) {
	t.Helper()
	f := &fakeMeter{holding: map[uint16]uint16{}, input: map[uint16]uint16{}}
	var lastErr error
	for range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		srv, err := mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, MaxClients: 10, Logger: log.New(io.Discard, "", 0)}, f)
		if err != nil {
			t.Fatal(err)
		}
		if lastErr = srv.Start(); lastErr == nil {
			t.Cleanup(func() { _ = srv.Stop() })
			return f, addr
		}
	}
	t.Fatalf("start modbus server: %v", lastErr)
	return nil, ""
}

// set puts words at consecutive holding registers from addr.
func (f *fakeMeter) set(addr uint16, words ...uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, w := range words {
		f.holding[addr+uint16(i)] = w
	}
}

func (f *fakeMeter) setInput(addr uint16, words ...uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, w := range words {
		f.input[addr+uint16(i)] = w
	}
}

func (f *fakeMeter) setIllegal(ranges ...[2]uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.illegal = ranges
}

func (f *fakeMeter) setException(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exception = err
}

func (f *fakeMeter) served() []served {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]served(nil), f.reads...)
}

func (f *fakeMeter) serve(regs map[uint16]uint16, input bool, unit uint8, addr, n uint16) ([]uint16, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, served{unit, input, addr, n})
	if f.exception != nil {
		return nil, f.exception
	}
	last := addr + n - 1
	if !input {
		for _, r := range f.illegal {
			if addr <= r[1] && last >= r[0] {
				return nil, mb.ErrIllegalDataAddress
			}
		}
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = regs[addr+uint16(i)]
	}
	return out, nil
}

func (f *fakeMeter) HandleCoils(*mb.CoilsRequest) ([]bool, error) { return nil, mb.ErrIllegalFunction }
func (f *fakeMeter) HandleDiscreteInputs(*mb.DiscreteInputsRequest) ([]bool, error) {
	return nil, mb.ErrIllegalFunction
}

func (f *fakeMeter) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	if req.IsWrite {
		return nil, mb.ErrIllegalFunction
	}
	return f.serve(f.holding, false, req.UnitId, req.Addr, req.Quantity)
}

func (f *fakeMeter) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	return f.serve(f.input, true, req.UnitId, req.Addr, req.Quantity)
}

// The test's own encoders, high word first, big-endian registers: what a
// meter puts on the wire.
func f32(v float32) []uint16 { b := math.Float32bits(v); return []uint16{uint16(b >> 16), uint16(b)} }
func u32(v uint32) []uint16  { return []uint16{uint16(v >> 16), uint16(v)} }
func s32(v int32) []uint16   { return u32(uint32(v)) }
func s16(v int16) uint16     { return uint16(v) }
func i64(v int64) []uint16 {
	u := uint64(v)
	return []uint16{uint16(u >> 48), uint16(u >> 32), uint16(u >> 16), uint16(u)}
}
