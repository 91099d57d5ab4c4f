package workload

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// slurm asks scontrol what a job is, once per job and again every
// slurmRefresh (a comment may be set after the job starts). A job asked
// for on a GPU pass is looked up on the next Refresh: passes never wait
// for scontrol.
type slurm struct {
	cmd string
	log *slog.Logger

	mu     sync.Mutex
	jobs   map[string]slurmJob
	wanted map[string]bool
	warned bool
}

const slurmRefresh = 5 * time.Minute

// slurmJob is what scontrol says of a job: its fields (JobName, UserId,
// Account, Partition, NumNodes, NumCPUs, Comment…) and its comment's
// key=value pairs.
type slurmJob struct {
	fields  map[string]string
	comment map[string]string
	fetched time.Time
}

func newSlurm(cmd string, logger *slog.Logger) *slurm {
	return &slurm{cmd: cmd, log: logger, jobs: map[string]slurmJob{}, wanted: map[string]bool{}}
}

// job returns what is known of a job; an unknown one is asked for.
func (s *slurm) job(id string) (slurmJob, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok || time.Since(j.fetched) > slurmRefresh {
		s.wanted[id] = true
	}
	return j, ok
}

func (s *slurm) refresh(ctx context.Context) {
	s.mu.Lock()
	ids := make([]string, 0, len(s.wanted))
	for id := range s.wanted {
		ids = append(ids, id)
	}
	s.wanted = map[string]bool{}
	s.mu.Unlock()
	for _, id := range ids {
		j, err := s.show(ctx, id)
		s.mu.Lock()
		if err != nil {
			if !s.warned {
				s.log.Warn("cannot read Slurm jobs: they are named by id only", "err", err)
				s.warned = true
			}
		} else {
			s.jobs[id] = j
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	for id, j := range s.jobs {
		if time.Since(j.fetched) > 24*time.Hour {
			delete(s.jobs, id) // finished long ago
		}
	}
	s.mu.Unlock()
}

func (s *slurm) show(ctx context.Context, id string) (slurmJob, error) {
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return slurmJob{}, fmt.Errorf("slurm job id %q is not a number", id)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.cmd, "show", "job", "--oneliner", id).Output()
	if err != nil {
		return slurmJob{}, fmt.Errorf("%s show job %s: %w (workloads.slurm.scontrol names the command)", s.cmd, id, err)
	}
	return parseJob(string(out)), nil
}

// fieldRE finds the start of each Key= of scontrol's one-line output: a
// value may hold spaces (a comment), a key never does, and scontrol's keys
// start with a capital (a comment's own keys are lower case).
var fieldRE = regexp.MustCompile(`(?:^|\s)([A-Z][A-Za-z_:/]*)=`)

// parseJob reads `scontrol show job --oneliner`.
func parseJob(out string) slurmJob {
	j := slurmJob{fields: map[string]string{}, comment: map[string]string{}, fetched: time.Now()}
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	idx := fieldRE.FindAllStringSubmatchIndex(line, -1)
	for i, m := range idx {
		end := len(line)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		key := line[m[2]:m[3]]
		j.fields[key] = strings.TrimSpace(line[m[1]:end])
	}
	// The comment's pairs: "team=vision,model=llama" or spaces or semicolons.
	for _, kv := range strings.FieldsFunc(j.fields["Comment"], func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			j.comment[k] = v
		}
	}
	return j
}

// value is a label's value: the comment's key, else the job's field of
// that name (account, partition, user, name).
func (j slurmJob) value(key string) string {
	if v, ok := j.comment[key]; ok {
		return v
	}
	switch strings.ToLower(key) {
	case "account":
		return j.fields["Account"]
	case "partition":
		return j.fields["Partition"]
	case "user":
		u, _, _ := strings.Cut(j.fields["UserId"], "(")
		return u
	case "name", "job_name":
		return j.fields["JobName"]
	case "qos":
		return j.fields["QOS"]
	}
	return ""
}

// cpusPerNode is the job's CPUs on each of its nodes.
func (j slurmJob) cpusPerNode() float64 {
	cpus, err1 := strconv.ParseFloat(j.fields["NumCPUs"], 64)
	nodes, err2 := strconv.ParseFloat(strings.SplitN(j.fields["NumNodes"], "-", 2)[0], 64)
	if err1 != nil || err2 != nil || nodes <= 0 {
		return 0
	}
	return cpus / nodes
}
