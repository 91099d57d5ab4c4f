package metersim

import (
	"fmt"
	"io"
	"log"
	"math"
	"time"

	mb "github.com/simonvetter/modbus"
)

// Registers gives a Modbus device's holding registers at a time, by wire
// address; an address it lacks is refused as an illegal data address.
type Registers func(t time.Time) map[uint16]uint16

// ModbusServer serves Registers over Modbus TCP.
type ModbusServer struct {
	server *mb.ModbusServer
	regs   Registers
	addr   string
}

// Addr is where the server listens.
func (s *ModbusServer) Addr() string { return s.addr }

// NewModbusServer listens on addr (host:port) and starts serving.
func NewModbusServer(addr string, regs Registers) (*ModbusServer, error) {
	s := &ModbusServer{regs: regs, addr: addr}
	srv, err := mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, Timeout: time.Minute, MaxClients: 16,
		Logger: log.New(io.Discard, "", 0)}, s)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("modbus server on %s: %w", addr, err)
	}
	s.server = srv
	return s, nil
}

// Stop closes the server.
func (s *ModbusServer) Stop() error { return s.server.Stop() }

// HandleHoldingRegisters implements mb.RequestHandler: reads only.
func (s *ModbusServer) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	if req.IsWrite {
		return nil, mb.ErrIllegalFunction
	}
	regs := s.regs(time.Now())
	out := make([]uint16, req.Quantity)
	for i := range out {
		v, ok := regs[req.Addr+uint16(i)]
		if !ok {
			return nil, mb.ErrIllegalDataAddress
		}
		out[i] = v
	}
	return out, nil
}

// HandleCoils implements mb.RequestHandler: a meter has none.
func (s *ModbusServer) HandleCoils(*mb.CoilsRequest) ([]bool, error) {
	return nil, mb.ErrIllegalFunction
}

// HandleDiscreteInputs implements mb.RequestHandler: a meter has none.
func (s *ModbusServer) HandleDiscreteInputs(*mb.DiscreteInputsRequest) ([]bool, error) {
	return nil, mb.ErrIllegalFunction
}

// HandleInputRegisters implements mb.RequestHandler: the simulated meters
// keep everything in holding registers.
func (s *ModbusServer) HandleInputRegisters(*mb.InputRegistersRequest) ([]uint16, error) {
	return nil, mb.ErrIllegalDataAddress
}

// PM5000 lays a meter out as a Schneider PM5000 does (the modbus package's
// schneider-pm5000 map): power W and energy J at t, three balanced phases
// at 230 V.
func PM5000(power, energy func(time.Time) float64) Registers {
	return func(t time.Time) map[uint16]uint16 {
		w := power(t)
		regs := map[uint16]uint16{}
		float32At(regs, 3059, w/1000)
		for i := range uint16(3) {
			float32At(regs, 3053+2*i, w/3/1000)
			float32At(regs, 2999+2*i, w/3/230)
			float32At(regs, 3027+2*i, 230)
		}
		wh := uint64(math.Floor(energy(t) / 3600))
		for i := range uint16(4) {
			regs[3203+i] = uint16(wh >> (48 - 16*i))
		}
		return regs
	}
}

// float32At writes v as a big-endian float32, high word first.
func float32At(regs map[uint16]uint16, addr uint16, v float64) {
	bits := math.Float32bits(float32(v))
	regs[addr], regs[addr+1] = uint16(bits>>16), uint16(bits)
}
