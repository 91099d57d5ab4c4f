// Command report-screenshot opens an HTML report in headless Chromium and
// saves a full-page PNG: how the screenshot in docs/ is made from the
// demo's report.
//
//	go run ./scripts/report-screenshot -in /tmp/joules-demo.X/report.html -out docs/report.png
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

import "github.com/joules-energy/joules/internal/browser"

func main() {
	in := flag.String("in", "", "the HTML report")
	out := flag.String("out", "report.png", "where to write the PNG")
	chromium := flag.String("chromium", "chromium", "Chromium's binary")
	width := flag.Int("width", 1200, "viewport width in CSS pixels")
	flag.Parse()
	if *in == "" {
		fmt.Fprintln(os.Stderr, "report-screenshot: -in is required")
		os.Exit(2)
	}
	abs, err := filepath.Abs(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report-screenshot:", err)
		os.Exit(1)
	}
	page, err := browser.Open(context.Background(), *chromium, abs, *width)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report-screenshot:", err)
		os.Exit(1)
	}
	for _, p := range page.Problems {
		fmt.Fprintln(os.Stderr, "report-screenshot: console:", p)
	}
	if err := os.WriteFile(*out, page.Screenshot, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "report-screenshot:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d charts drawn of %d\n", *out, page.Drawn, page.Charts)
}
