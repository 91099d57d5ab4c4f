package modbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/joules-energy/joules/meter"
)

const (
	// maxRegisters is the most registers one read may ask for (Modbus's
	// limit for function codes 3 and 4).
	maxRegisters = 125
	// maxGap is the most unused registers a read spans to take two values
	// in one request rather than two.
	maxGap = 16
	// DefaultPort is Modbus TCP's port.
	DefaultPort = "502"
)

// Config is how to reach one meter.
type Config struct {
	// Address is host or host:port (default port 502); a tcp:// prefix is
	// accepted.
	Address string
	// UnitID is the Modbus unit (slave) id: the meter's behind a gateway,
	// usually 1 or 255 on a meter of its own (default 1; 0 means 1).
	UnitID uint8
	// Timeout bounds one request (default 2 s); the whole poll is bounded
	// by the context Read is given.
	Timeout time.Duration
}

// Device reads one Modbus TCP meter with a register map. It is used by one
// poll at a time (the meter source's lock; its own besides).
type Device struct {
	cfg    Config
	addr   string // host:port
	regMap *Map
	blocks []block // the readings' requests, planned once

	mu      sync.Mutex
	client  *mb.ModbusClient // nil: opened on the next poll
	checked bool             // the map's expect held on this connection
	// split marks the blocks the device refused whole (illegal data
	// address): read value by value from then on.
	split    map[int]bool
	requests atomic.Int64
}

// span is the registers of one value (or scale factor).
type span struct {
	table     string
	addr, num int
}

// block is one read request: contiguous registers covering spans.
type block struct {
	table     string
	addr, num int
	spans     []span
}

// regKey names one register.
type regKey struct {
	table string
	addr  int
}

// NewDevice returns the device; the connection opens on the first poll.
func NewDevice(cfg Config, m *Map) (*Device, error) {
	if m == nil {
		return nil, errors.New("modbus: no register map")
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("register map %s: %w", m.Name, err)
	}
	addr, err := hostPort(cfg.Address)
	if err != nil {
		return nil, err
	}
	if cfg.UnitID == 0 {
		cfg.UnitID = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	var spans []span
	for _, r := range m.Readings {
		spans = append(spans, span{r.Table, *r.Address, r.Words()})
		if r.ScaleRegister != nil {
			spans = append(spans, span{r.Table, *r.ScaleRegister, 1})
		}
	}
	return &Device{cfg: cfg, addr: addr, regMap: m, blocks: plan(spans), split: map[int]bool{}}, nil
}

// hostPort is the address with Modbus's port when it names none.
func hostPort(address string) (string, error) {
	a := strings.TrimPrefix(address, "tcp://")
	if a == "" {
		return "", errors.New("modbus: address is required (host or host:port)")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// No port: a host name, an IPv4 address, or an IPv6 one bare or
		// in brackets.
		host, port = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), DefaultPort
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("modbus: address %q: port %q is not a number from 1 to 65535", address, port)
	}
	if host == "" {
		return "", fmt.Errorf("modbus: address %q has no host", address)
	}
	return net.JoinHostPort(host, port), nil
}

// plan groups spans into as few reads as it takes: same table, at most
// maxGap unused registers between two values, at most maxRegisters in all.
func plan(spans []span) []block {
	spans = slices.Clone(spans)
	slices.SortFunc(spans, func(a, b span) int {
		return cmp.Or(strings.Compare(a.table, b.table), cmp.Compare(a.addr, b.addr), cmp.Compare(a.num, b.num))
	})
	spans = slices.Compact(spans)
	var out []block
	for _, s := range spans {
		if n := len(out); n > 0 {
			b := &out[n-1]
			end := b.addr + b.num
			newEnd := max(end, s.addr+s.num)
			if b.table == s.table && s.addr <= end+maxGap && newEnd-b.addr <= maxRegisters {
				b.num = newEnd - b.addr
				b.spans = append(b.spans, s)
				continue
			}
		}
		out = append(out, block{table: s.table, addr: s.addr, num: s.num, spans: []span{s}})
	}
	return out
}

// Requests implements meter.Device: the read requests sent so far.
func (d *Device) Requests() int64 { return d.requests.Load() }

// Close implements meter.Device.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return nil
	}
	c := d.client
	d.client = nil
	return c.Close()
}

// drop closes the connection after a failed poll: the next poll opens a
// new one.
func (d *Device) drop() {
	if d.client != nil {
		_ = d.client.Close()
		d.client = nil
	}
	d.checked = false
}

// quiet keeps the library's log lines (it writes to stdout by default)
// out of the agent's output: what matters comes back as errors.
var quiet = log.New(io.Discard, "", 0)

// Read implements meter.Device: the map's registers in as few reads as
// they take, each value decoded by its type and orders, scaled by its
// scale factor and scale, and range-checked.
func (d *Device) Read(ctx context.Context) ([]meter.Reading, []meter.Problem, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, nil, d.pollError(ctx, err)
	}
	if d.client == nil {
		if err := d.open(ctx); err != nil {
			return nil, nil, err
		}
	}
	if !d.checked {
		if err := d.check(ctx); err != nil {
			d.drop()
			return nil, nil, err
		}
		d.checked = true
	}
	regs := map[regKey]uint16{}
	gone := map[regKey]error{}
	for i, b := range d.blocks {
		if err := d.fetch(ctx, i, b, regs, gone); err != nil {
			d.drop()
			return nil, nil, err
		}
	}
	var readings []meter.Reading
	var problems []meter.Problem
	for i := range d.regMap.Readings {
		r := &d.regMap.Readings[i]
		raw, factor, err := value(r, regs, gone)
		if err != nil {
			p := meter.Problem{Reading: r.what(), Reason: meter.ReasonOutOfRange, Err: err}
			if errors.Is(err, errNotImplemented) || errors.Is(err, errNoRegister) {
				p.Reason = meter.ReasonMissing
			}
			if !(r.Optional && p.Reason == meter.ReasonMissing) {
				problems = append(problems, p)
			}
			continue
		}
		got, bad := r.Build(r.what(), []meter.Row{{Name: r.Row, Raw: raw}})
		for j := range got {
			got[j].Wrap *= factor // the counter wraps at its raw range times its scale factor
			got[j].Resolution *= factor
		}
		readings = append(readings, got...)
		problems = append(problems, bad...)
	}
	return readings, problems, nil
}

// errNoRegister is a register the device refused (illegal data address).
var errNoRegister = errors.New("the device has no such register (illegal data address)")

// value is a reading's raw value with its scale factor applied, and the
// factor.
func value(r *Reading, regs map[regKey]uint16, gone map[regKey]error) (float64, float64, error) {
	get := func(addr, n int) ([]uint16, error) {
		out := make([]uint16, n)
		for i := range n {
			k := regKey{r.Table, addr + i}
			v, ok := regs[k]
			if !ok {
				if err := gone[k]; err != nil {
					return nil, err
				}
				return nil, fmt.Errorf("register %d was not read: %w", addr+i, errNoRegister)
			}
			out[i] = v
		}
		return out, nil
	}
	words, err := get(*r.Address, r.Words())
	if err != nil {
		return 0, 0, err
	}
	v, err := decode(r.Type, words, r.WordOrder, r.ByteOrder)
	if err != nil {
		return 0, 0, fmt.Errorf("register %d: %w", *r.Address, err)
	}
	factor := 1.0
	if r.ScaleRegister != nil {
		sfr, err := get(*r.ScaleRegister, 1)
		if err != nil {
			return 0, 0, fmt.Errorf("scale register: %w", err)
		}
		sf, err := scaleFactor(sfr[0])
		if err != nil {
			return 0, 0, fmt.Errorf("scale register %d: %w", *r.ScaleRegister, err)
		}
		factor = math.Pow10(sf)
	}
	return v * factor, factor, nil
}

// fetch reads block i into regs. A block the device refuses whole
// (illegal data address: a register in it, or between its values, is not
// implemented) is read value by value, this poll and the next ones; a
// value it refuses is recorded in gone, its reading missing.
func (d *Device) fetch(ctx context.Context, i int, b block, regs map[regKey]uint16, gone map[regKey]error) error {
	mark := func(s span) {
		for a := s.addr; a < s.addr+s.num; a++ {
			gone[regKey{s.table, a}] = fmt.Errorf("registers %d to %d: %w", s.addr, s.addr+s.num-1, errNoRegister)
		}
	}
	store := func(table string, addr int, vals []uint16) {
		for j, v := range vals {
			regs[regKey{table, addr + j}] = v
		}
	}
	if !d.split[i] {
		vals, err := d.read(ctx, b.table, b.addr, b.num)
		switch {
		case err == nil:
			store(b.table, b.addr, vals)
			return nil
		case !errors.Is(err, mb.ErrIllegalDataAddress):
			return d.pollError(ctx, err)
		case len(b.spans) == 1:
			mark(b.spans[0])
			return nil
		}
		d.split[i] = true
	}
	for _, s := range b.spans {
		vals, err := d.read(ctx, s.table, s.addr, s.num)
		switch {
		case err == nil:
			store(s.table, s.addr, vals)
		case errors.Is(err, mb.ErrIllegalDataAddress):
			mark(s)
		default:
			return d.pollError(ctx, err)
		}
	}
	return nil
}

// check verifies the map's expect on a new connection.
func (d *Device) check(ctx context.Context) error {
	for _, e := range d.regMap.Expect {
		vals, err := d.read(ctx, e.Table, *e.Address, len(e.Values))
		if errors.Is(err, mb.ErrIllegalDataAddress) {
			return &meter.PollError{Reason: "protocol", Err: fmt.Errorf(
				"modbus %s unit %d has no register %d (illegal data address): it is not laid out as the register map %s assumes (%s)",
				d.addr, d.cfg.UnitID, *e.Address, d.regMap.Name, e.Description)}
		}
		if err != nil {
			return d.pollError(ctx, err)
		}
		if !slices.Equal(vals, e.Values) {
			return &meter.PollError{Reason: "protocol", Err: fmt.Errorf(
				"modbus %s unit %d holds %s at %d where the register map %s expects %s (%s): the device is not laid out as the map assumes",
				d.addr, d.cfg.UnitID, hex(vals), *e.Address, d.regMap.Name, hex(e.Values), e.Description)}
		}
	}
	return nil
}

// open connects, within ctx. The library dials with a fixed 5 s timeout;
// a dial that outlives ctx is abandoned, its connection closed when it
// ends.
func (d *Device) open(ctx context.Context) error {
	c, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + d.addr, Timeout: d.cfg.Timeout, Logger: quiet})
	if err != nil {
		return &meter.PollError{Reason: "connection", Err: fmt.Errorf("modbus %s: %w", d.addr, err)}
	}
	if err := c.SetUnitId(d.cfg.UnitID); err != nil {
		return &meter.PollError{Reason: "connection", Err: fmt.Errorf("modbus %s: %w", d.addr, err)}
	}
	done := make(chan error, 1)
	go func() { done <- c.Open() }()
	select {
	case err := <-done:
		if err != nil {
			_ = c.Close()
			return d.pollError(ctx, err)
		}
	case <-ctx.Done():
		go func() {
			if <-done == nil {
				_ = c.Close()
			}
		}()
		return d.pollError(ctx, ctx.Err())
	}
	d.client, d.checked = c, false
	return nil
}

type result struct {
	vals []uint16
	err  error
}

// read sends one read request, within ctx. The library bounds a request
// by the Timeout it was opened with; a request that outlives ctx is
// abandoned, and its connection closed once it ends (the next poll opens
// a new one).
func (d *Device) read(ctx context.Context, table string, addr, num int) ([]uint16, error) {
	c := d.client
	if c == nil {
		return nil, ctx.Err()
	}
	d.requests.Add(1)
	if ctx.Done() == nil {
		return c.ReadRegisters(uint16(addr), uint16(num), regType(table))
	}
	done := make(chan result, 1)
	go func() {
		v, err := c.ReadRegisters(uint16(addr), uint16(num), regType(table))
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.vals, r.err
	case <-ctx.Done():
		d.client, d.checked = nil, false
		go func() {
			<-done
			_ = c.Close()
		}()
		return nil, ctx.Err()
	}
}

// exceptions are the Modbus exceptions the library maps to errors.
var exceptions = []error{
	mb.ErrIllegalFunction, mb.ErrIllegalDataAddress, mb.ErrIllegalDataValue, mb.ErrServerDeviceFailure,
	mb.ErrAcknowledge, mb.ErrServerDeviceBusy, mb.ErrMemoryParityError, mb.ErrGWPathUnavailable,
}

// pollError classifies a failed poll: no answer in time (the request's
// timeout, the poll's deadline, or a gateway saying the meter behind it
// did not answer), an answer that is not what was asked (a Modbus
// exception, a malformed frame), or the network (refused, reset, closed).
func (d *Device) pollError(ctx context.Context, err error) error {
	who := fmt.Sprintf("modbus %s unit %d", d.addr, d.cfg.UnitID)
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), ctx.Err() != nil:
		return &meter.PollError{Reason: "timeout", Err: fmt.Errorf("%s: no answer within the poll's deadline: %w", who, cmp.Or(ctx.Err(), err))}
	case errors.Is(err, mb.ErrRequestTimedOut), errors.As(err, &ne) && ne.Timeout(), os.IsTimeout(err):
		return &meter.PollError{Reason: "timeout", Err: fmt.Errorf("%s: no answer within %s: %w", who, d.cfg.Timeout, err)}
	case errors.Is(err, mb.ErrGWTargetFailedToRespond):
		return &meter.PollError{Reason: "timeout", Err: fmt.Errorf("%s: the gateway says the unit did not answer: %w", who, err)}
	case slices.ContainsFunc(exceptions, func(e error) bool { return errors.Is(err, e) }),
		strings.HasPrefix(err.Error(), "unknown exception code"):
		return &meter.PollError{Reason: "protocol", Err: fmt.Errorf("%s answered with a Modbus exception: %w", who, err)}
	case errors.Is(err, mb.ErrProtocolError), errors.Is(err, mb.ErrBadUnitId), errors.Is(err, mb.ErrBadTransactionId),
		errors.Is(err, mb.ErrUnknownProtocolId), errors.Is(err, mb.ErrShortFrame), errors.Is(err, mb.ErrBadCRC):
		return &meter.PollError{Reason: "protocol", Err: fmt.Errorf("%s: malformed answer: %w", who, err)}
	}
	return &meter.PollError{Reason: "connection", Err: fmt.Errorf("%s: %w", who, err)}
}
