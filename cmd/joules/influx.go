package main

import (
	"cmp"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/joules-energy/joules/internal/config"
)

// influxFlags say where the accounting's InfluxDB is: flags, the
// environment, or an aggregator's configuration file.
type influxFlags struct {
	configFile, influxURL, org, bucket, tokenFile *string
	timeout                                       *time.Duration
}

func newInfluxFlags(cmd *kingpin.CmdClause) *influxFlags {
	f := cmd.Flag
	return &influxFlags{
		configFile: f("config.file", "Read the InfluxDB connection from the influx section of this aggregator configuration.").String(),
		influxURL:  f("influx.url", "InfluxDB URL (default: the config file's, else $JOULES_INFLUX_URL, else http://127.0.0.1:8086).").Envar("JOULES_INFLUX_URL").String(),
		org:        f("influx.org", "InfluxDB 2.x organisation.").Envar("JOULES_INFLUX_ORG").String(),
		bucket:     f("influx.bucket", "Bucket (InfluxDB 1.8: db/rp).").Envar("JOULES_INFLUX_BUCKET").String(),
		tokenFile:  f("influx.token-file", "File holding the InfluxDB token (1.8: user:password); $JOULES_INFLUX_TOKEN works too.").String(),
		timeout:    f("timeout", "Timeout of each InfluxDB query.").Default("60s").Duration(),
	}
}

var labelRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// validLabel says whether a name can be a workload label's (workloads.labels).
func validLabel(name string) bool { return labelRE.MatchString(name) }

// connection gathers InfluxDB's URL, org, bucket and token: flags, then the
// environment, then the aggregator's configuration file.
func (c *influxFlags) connection() (serverURL, org, bucket, token string, err error) {
	serverURL, org, bucket = *c.influxURL, *c.org, *c.bucket
	if *c.configFile != "" {
		cfg, err := config.LoadAggregator(*c.configFile)
		if err != nil {
			return "", "", "", "", fmt.Errorf("--config.file: %w", err)
		}
		serverURL = cmp.Or(serverURL, cfg.Influx.URL.Value)
		org = cmp.Or(org, cfg.Influx.Org)
		bucket = cmp.Or(bucket, cfg.Influx.Bucket)
		if *c.tokenFile == "" {
			if token, err = cfg.Influx.Token(); err != nil {
				return "", "", "", "", fmt.Errorf("--config.file: influx token: %w", err)
			}
		}
	}
	serverURL = cmp.Or(serverURL, "http://127.0.0.1:8086")
	bucket = cmp.Or(bucket, "joules/autogen")
	if *c.tokenFile != "" {
		raw, err := os.ReadFile(*c.tokenFile)
		if err != nil {
			return "", "", "", "", fmt.Errorf("--influx.token-file: %w", err)
		}
		token = strings.TrimSpace(string(raw))
	} else if token == "" {
		token = os.Getenv("JOULES_INFLUX_TOKEN")
	}
	return serverURL, org, bucket, token, nil
}
