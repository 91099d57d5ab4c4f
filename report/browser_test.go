package report

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/joules-energy/joules/internal/browser"
	"github.com/joules-energy/joules/internal/testenv"
)

// artifactDir is where browser tests leave their screenshots and PDFs.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("JOULES_ARTIFACT_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "joules-test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// inBrowser opens the HTML report in headless Chromium, at desktop and
// phone widths: no console errors, every chart drawn, a full-page
// screenshot and a PDF print.
func inBrowser(t *testing.T, r *Report) {
	chromium := testenv.Tool(t, "chromium", "apt-get install -y chromium")
	var html bytes.Buffer
	if err := Write(&html, r, "html"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(path, html.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := artifactDir(t)
	for _, width := range []int{1200, 390} {
		p, err := browser.Open(context.Background(), chromium, path, width)
		if err != nil {
			t.Fatal(err)
		}
		for _, problem := range p.Problems {
			t.Errorf("width %d: browser console: %s", width, problem)
		}
		if p.Charts != 4 || p.Drawn != 4 {
			t.Errorf("width %d: %d charts, %d of them drawn (paths and a size); want 4 and 4", width, p.Charts, p.Drawn)
		}
		img, err := png.Decode(bytes.NewReader(p.Screenshot))
		if err != nil {
			t.Fatal(err)
		}
		if n := colours(img); n < 20 {
			t.Errorf("width %d: the screenshot has %d colours: blank", width, n)
		}
		if img.Bounds().Dx() > width+20 {
			t.Errorf("width %d: the page is %d pixels wide: it does not fit", width, img.Bounds().Dx())
		}
		if !bytes.HasPrefix(p.PDF, []byte("%PDF")) || len(p.PDF) < 20_000 {
			t.Errorf("print to PDF gave %d bytes", len(p.PDF))
		}
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("report-%d.png", width)), p.Screenshot, 0o644)
		if width == 1200 {
			os.WriteFile(filepath.Join(dir, "report.pdf"), p.PDF, 0o644)
		}
	}
	os.WriteFile(filepath.Join(dir, "report.html"), html.Bytes(), 0o644)
	t.Logf("screenshots, PDF and page in %s", dir)
}

// colours counts the distinct colours of an image, up to 1,000.
func colours(img image.Image) int {
	seen := map[uint32]bool{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 3 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			seen[r>>8<<16|g>>8<<8|b>>8] = true
			if len(seen) >= 1000 {
				return len(seen)
			}
		}
	}
	return len(seen)
}
