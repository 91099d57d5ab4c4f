package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/gosnmp/gosnmp"
)

// sims are the snmpsimd processes; every one serves every recording.
type sims struct {
	procs []*exec.Cmd
	addrs []string
	exits []chan error
}

// startSims copies the recordings into dir (snmpsimd serves each file with
// its name as community) and starts n snmpsimd processes on loopback UDP
// ports, returning once each answers every community.
func startSims(dir, from string, recordings []string, n int) (*sims, error) {
	s := &sims{}
	if err := s.start(dir, from, recordings, n); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *sims) start(dir, from string, recordings []string, n int) error {
	bin, err := exec.LookPath("snmpsimd")
	if err != nil {
		return fmt.Errorf("snmpsimd not found (apt-get install snmpsim): %w", err)
	}
	data := filepath.Join(dir, "snmprec")
	if err := os.MkdirAll(data, 0o777); err != nil {
		return err
	}
	for _, r := range recordings {
		raw, err := os.ReadFile(filepath.Join(from, r+".snmprec"))
		if err != nil {
			return fmt.Errorf("recording: %w (-recordings names the folder)", err)
		}
		if err := os.WriteFile(filepath.Join(data, r+".snmprec"), raw, 0o644); err != nil {
			return err
		}
	}
	// Run as root, snmpsimd drops to nobody, who must read the data and
	// write the index it builds.
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(data, 0o777); err != nil {
		return err
	}
	for i := range max(n, 1) {
		cache := filepath.Join(dir, "snmpsim-cache-"+strconv.Itoa(i))
		if err := os.MkdirAll(cache, 0o777); err != nil {
			return err
		}
		if err := os.Chmod(cache, 0o777); err != nil {
			return err
		}
		addr, err := freeAddr("udp")
		if err != nil {
			return err
		}
		args := []string{"--data-dir=" + data, "--cache-dir=" + cache, "--agent-udpv4-endpoint=" + addr, "--logging-method=null"}
		if os.Geteuid() == 0 {
			args = append(args, "--process-user=nobody", "--process-group=nogroup")
		}
		cmd := exec.Command(bin, args...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		exit := make(chan error, 1)
		go func() { exit <- cmd.Wait() }()
		s.procs, s.addrs, s.exits = append(s.procs, cmd), append(s.addrs, addr), append(s.exits, exit)
	}
	for i, addr := range s.addrs {
		for _, r := range recordings {
			if err := waitSNMP(addr, r, s.exits[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitSNMP GETs sysUpTime.0 until the agent answers, whatever the answer.
func waitSNMP(addr, community string, exit chan error) error {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	c := &gosnmp.GoSNMP{Target: host, Port: uint16(p), Community: community, Version: gosnmp.Version2c, Timeout: 200 * time.Millisecond}
	if err := c.Connect(); err != nil {
		return err
	}
	defer c.Conn.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exit:
			exit <- err
			return fmt.Errorf("snmpsimd at %s exited before answering: %v", addr, err)
		default:
		}
		if pkt, err := c.Get([]string{".1.3.6.1.2.1.1.3.0"}); err == nil && pkt != nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("snmpsimd at %s never answered community %s: %v", addr, community, err)
		}
	}
}

// cpu is the CPU time of every snmpsimd so far.
func (s *sims) cpu() time.Duration {
	var total time.Duration
	for _, p := range s.procs {
		total += cpuTime(p.Process.Pid)
	}
	return total
}

func (s *sims) stop() {
	for i, p := range s.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exits[i]:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-s.exits[i]
		}
	}
}
