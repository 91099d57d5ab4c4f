package cluster

import (
	"testing"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// The quick scan reads the same site and host as the line-protocol
// decoder, escapes included.
func FuzzSiteAndHost(f *testing.F) {
	for _, l := range []string{
		`m,host=n1,site=s1 value=1 1`,
		`m\,x,a=1,host=n\ 1,site=s\,1 value=1`,
		`m,host=a\=b,site=x value="q, r" 1`,
		`m value=1 1`,
		`m,site=s1,zz=host value=1`,
		`m\ y,host\=x=1,host=h value=1`,
		`m,host=a\\,x=y,site=s value=1`,
		`m,host=a\\ value=1`,
		`m,host=a\b,site=c\\\,d value=1`,
	} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		dec := lineprotocol.NewDecoderWithBytes([]byte(line))
		if !dec.Next() {
			return
		}
		if _, err := dec.Measurement(); err != nil {
			return
		}
		var site, host string
		for {
			k, v, err := dec.NextTag()
			if err != nil {
				return // not a line ingest would have let through
			}
			if k == nil {
				break
			}
			switch string(k) {
			case "site":
				site = string(v)
			case "host":
				host = string(v)
			}
		}
		if _, _, err := dec.NextField(); err != nil {
			return
		}
		gotSite, gotHost := siteAndHost([]byte(line), "site", "host")
		if gotSite != site || gotHost != host {
			t.Fatalf("%q: scanned site %q host %q, the decoder reads %q %q", line, gotSite, gotHost, site, host)
		}
	})
}
