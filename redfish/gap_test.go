package redfish

import (
	"testing"
	"time"

	"github.com/joules-energy/joules/collector"
)

func label(s collector.Sample, name string) string {
	for _, l := range s.Labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

func hostEnergy(t *testing.T, samples []collector.Sample) collector.Sample {
	t.Helper()
	for _, s := range samples {
		if s.Name == "joules_redfish_host_energy_joules_total" {
			return s
		}
	}
	t.Fatal("no host energy")
	return collector.Sample{}
}

// TestIntegratedEnergyMarksItsGaps reads a BMC with host power but no
// energy counter (psu-input-sum without its energy sensors: 760 + 745 =
// 1505 W), so the agent integrates it. While the BMC is unreadable for
// 60 s (longer than the integration's 30 s gap) the energy stays flat and
// its epoch changes, so the aggregator does not take the flat step for a
// measured zero at full coverage.
func TestIntegratedEnergyMarksItsGaps(t *testing.T) {
	dir := ownMockup("psu-input-sum")
	b := serveRaw(t, "gap", dir, map[string]any{
		"Chassis/Node1/Sensors": withoutMembers(t, dir, "Chassis/Node1/Sensors", "PSU0_Energy", "PSU1_Energy"),
	})
	first := hostEnergy(t, b.poll(t))
	second := hostEnergy(t, b.poll(t))
	if label(first, "method") != "integrated" || second.Value != 15050 || label(second, "epoch") != label(first, "epoch") {
		t.Fatalf("integrated: %v then %v J (epochs %s, %s), want 1505 W × 10 s = 15,050 J in one epoch", first.Value, second.Value, label(first, "epoch"), label(second, "epoch"))
	}
	b.at = b.at.Add(50 * time.Second) // the BMC was unreadable: 60 s since the last reading
	afterGap := hostEnergy(t, b.poll(t))
	if afterGap.Value != second.Value || label(afterGap, "epoch") == label(second, "epoch") {
		t.Errorf("after the gap: %v J in epoch %s, want %v J (the gap is not filled) in a new epoch", afterGap.Value, label(afterGap, "epoch"), second.Value)
	}
	next := hostEnergy(t, b.poll(t))
	if next.Value != second.Value+15050 || label(next, "epoch") != label(afterGap, "epoch") {
		t.Errorf("then %v J in epoch %s, want %v in the new epoch", next.Value, label(next, "epoch"), second.Value+15050)
	}
}
