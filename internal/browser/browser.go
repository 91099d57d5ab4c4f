// Package browser opens pages in headless Chromium through chromedp: for
// the report's tests, and to take the screenshot the docs show.
package browser

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Page is what Chromium made of a page.
type Page struct {
	Screenshot []byte   // full page, PNG
	PDF        []byte   // printed, backgrounds on
	Problems   []string // console errors and warnings, exceptions, error log entries
	Charts     int      // svg.chart elements
	Drawn      int      // of them, with a size and paths
}

// Open loads a file in headless Chromium (the binary at chromium) with a
// viewport width in CSS pixels (under 600: a phone's, emulated), and
// returns what it shows.
func Open(ctx context.Context, chromium, path string, width int) (*Page, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(width, 900))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	var mu sync.Mutex
	var problems []string
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				problems = append(problems, string(e.Type)+": "+consoleText(e.Args))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				problems = append(problems, "log: "+e.Entry.Text)
			}
		}
	}
	tabCtx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(listen))
	defer cancel()
	tabCtx, cancelTimeout := context.WithTimeout(tabCtx, 90*time.Second)
	defer cancelTimeout()

	enableLog := func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, t, cdplog.Enable, cdp.Empty{})
		return chromedp.Void{}, err
	}
	printToPDF := func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		res, err := cdp.Call(ctx, t, page.PrintToPDF, page.PrintToPDFParams{PrintBackground: new(true)})
		return res.Data, err
	}
	p := &Page{}
	viewport := chromedp.EmulateViewport(int64(width), 900)
	if width < 600 {
		viewport = chromedp.EmulateViewport(int64(width), 844, chromedp.EmulateMobile)
	}
	if err := chromedp.Do(tabCtx, enableLog, viewport, chromedp.Navigate("file://"+path), chromedp.WaitReady("body")); err != nil {
		return nil, fmt.Errorf("chromium: open %s: %w", path, err)
	}
	var err error
	if p.Charts, err = chromedp.Run(tabCtx, chromedp.Evaluate[int](`document.querySelectorAll("svg.chart").length`)); err != nil {
		return nil, fmt.Errorf("chromium: count charts: %w", err)
	}
	if p.Drawn, err = chromedp.Run(tabCtx, chromedp.Evaluate[int](`[...document.querySelectorAll("svg.chart")].filter(s => { const b = s.getBoundingClientRect(); return b.width > 200 && b.height > 80 && s.querySelectorAll("path").length > 5 }).length`)); err != nil {
		return nil, fmt.Errorf("chromium: check charts: %w", err)
	}
	if p.Screenshot, err = chromedp.Run(tabCtx, chromedp.FullScreenshot(100)); err != nil {
		return nil, fmt.Errorf("chromium: screenshot: %w", err)
	}
	if p.PDF, err = chromedp.Run(tabCtx, printToPDF); err != nil {
		return nil, fmt.Errorf("chromium: print to PDF: %w", err)
	}
	mu.Lock()
	p.Problems = append([]string(nil), problems...)
	mu.Unlock()
	return p, nil
}

func consoleText(args []*runtime.RemoteObject) string {
	var b bytes.Buffer
	for _, a := range args {
		b.Write(a.Value)
		b.WriteString(a.Description)
		b.WriteByte(' ')
	}
	return b.String()
}

// Evaluate loads a file in headless Chromium with a viewport width in CSS
// pixels, as Open does, and returns what a JavaScript expression that
// gives a string evaluates to: what a reader sees, for tests to check.
func Evaluate(ctx context.Context, chromium, path string, width int, expression string) (string, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(width, 900))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	tabCtx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	tabCtx, cancelTimeout := context.WithTimeout(tabCtx, 90*time.Second)
	defer cancelTimeout()
	if err := chromedp.Do(tabCtx, chromedp.EmulateViewport(int64(width), 900), chromedp.Navigate("file://"+path), chromedp.WaitReady("body")); err != nil {
		return "", fmt.Errorf("chromium: open %s: %w", path, err)
	}
	out, err := chromedp.Run(tabCtx, chromedp.Evaluate[string](expression))
	if err != nil {
		return "", fmt.Errorf("chromium: evaluate: %w", err)
	}
	return out, nil
}
