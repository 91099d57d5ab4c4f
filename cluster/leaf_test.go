package cluster

import (
	"maps"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// Two sites: the central site's NATS cluster runs JetStream and the tier;
// the second site's NATS servers are a leaf node of it, and its ingest
// replica publishes through them. One roll-up then derives both sites,
// as one process fed by both would.
func TestTwoSitesOverALeafNodeReportFromOnePlace(t *testing.T) {
	hub := testenv.StartNATSCluster(t, "central", 3, nil)
	leaf := testenv.StartNATSCluster(t, "site-b", 1, hub)
	now := time.Now()
	from := pastHour(now)
	central := testenv.RecordedSite([]string{"s1"}, 6, from, 10)
	remote := testenv.RecordedSite([]string{"s2"}, 4, from, 10)
	want, _ := oneProcess(t, append(append([][]byte(nil), central...), remote...), now)

	tr := newTier(t, hub, 8)
	tr.cfg.Domain = "central"
	inCentral, _ := tr.ingest("ingest-central")
	remoteTier := *tr
	remoteTier.cfg.URLs = leaf.URLs()
	inRemote, _ := remoteTier.ingest("ingest-site-b")
	tr.stops = append(tr.stops, remoteTier.stops[len(tr.stops):]...)
	for i := range central {
		if code := post(t, inCentral.URL, central[i]); code != 204 {
			t.Fatalf("central batch %d: %d", i, code)
		}
		if code := post(t, inRemote.URL, remote[i]); code != 204 {
			t.Fatalf("site-b batch %d through the leaf node: %d", i, code)
		}
	}
	tr.worker("w1")
	tr.worker("w2")
	tr.rollup("w1")
	tr.sameAs(want, 90*time.Second)
	sites := map[string]bool{}
	for k := range maps.Keys(tr.derive.derivedCopy()) {
		for _, s := range []string{"site=s1", "site=s2"} {
			if contains(k, s) {
				sites[s] = true
			}
		}
	}
	if len(sites) != 2 {
		t.Errorf("derived points name the sites %v, want both", sites)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
