package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"regexp"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart colours: IT blue, facility orange, work green; readable printed in grey.
var (
	colourIT       = color.RGBA{R: 0x1f, G: 0x5f, B: 0xbf, A: 0xff}
	colourFacility = color.RGBA{R: 0xd9, G: 0x6c, B: 0x00, A: 0xff}
	colourWork     = color.RGBA{R: 0x2e, G: 0x8b, B: 0x57, A: 0xff}
	colourHosts    = color.RGBA{R: 0x6b, G: 0x7c, B: 0x99, A: 0xff}
)

// Chart is one rendered SVG chart.
type Chart struct {
	Title string
	SVG   []byte
	Empty string // why there is no chart
}

// Charts renders the report's charts as inline SVG.
func Charts(r *Report) ([]Chart, error) {
	var charts []Chart
	for _, c := range []struct {
		title string
		draw  func(*Report) (*plot.Plot, string)
	}{
		{"Power: IT and facility (mean per " + r.Series.Step + ")", powerPlot},
		{"PUE over time", puePlot},
		{"Energy by host (top " + fmt.Sprint(min(len(r.Series.HostEnergy), 15)) + ")", hostBars},
		{"Work per joule over time", workPlot},
	} {
		p, empty := c.draw(r)
		if p == nil {
			charts = append(charts, Chart{Title: c.title, Empty: empty})
			continue
		}
		svg, err := render(p)
		if err != nil {
			return nil, fmt.Errorf("chart %q: %w", c.title, err)
		}
		charts = append(charts, Chart{Title: c.title, SVG: svg})
	}
	return charts, nil
}

var (
	svgProlog = regexp.MustCompile(`(?s)^<\?xml[^>]*>\s*<!--.*?-->\s*`)
	svgSize   = regexp.MustCompile(`^<svg width="[^"]*" height="[^"]*"`)
)

// render draws a plot as SVG for inlining: no XML prolog, sized by CSS.
func render(p *plot.Plot) ([]byte, error) {
	c := vgsvg.New(8*vg.Inch, 3.2*vg.Inch)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, err
	}
	out := svgProlog.ReplaceAll(buf.Bytes(), nil)
	out = svgSize.ReplaceAll(out, []byte(`<svg class="chart" role="img"`))
	return out, nil
}

// sans sets every text of a plot in Liberation Sans (the library's
// default is the serif face), to match the page.
func sans(p *plot.Plot) *plot.Plot {
	for _, style := range []*text.Style{&p.Title.TextStyle, &p.X.Label.TextStyle, &p.Y.Label.TextStyle, &p.X.Tick.Label, &p.Y.Tick.Label, &p.Legend.TextStyle} {
		style.Font.Variant = "Sans"
	}
	return p
}

func newPlot(yLabel string) *plot.Plot {
	p := sans(plot.New())
	p.Y.Label.Text = yLabel
	p.X.Tick.Marker = timeTicks{}
	p.Y.Tick.Marker = valueTicks{}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

func unix(t time.Time) float64 { return float64(t.Unix()) }

func line(p *plot.Plot, name string, c color.Color, xys plotter.XYs) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

func powerPlot(r *Report) (*plot.Plot, string) {
	if len(r.Series.Power) < 2 {
		return nil, "fewer than two chart steps of data"
	}
	p := newPlot("kW")
	var it, hosts, facility plotter.XYs
	withPUE := r.Headline.PUE != nil
	for _, pt := range r.Series.Power {
		x := unix(pt.Time)
		hosts = append(hosts, plotter.XY{X: x, Y: pt.HostsWatts / 1000})
		if withPUE && pt.ITWatts > 0 {
			it = append(it, plotter.XY{X: x, Y: pt.ITWatts / 1000})
		}
		if pt.FacilityWatts != nil {
			facility = append(facility, plotter.XY{X: x, Y: *pt.FacilityWatts / 1000})
		}
	}
	if len(facility) > 1 {
		if err := line(p, "facility", colourFacility, facility); err != nil {
			return nil, err.Error()
		}
	}
	if len(it) > 1 {
		if err := line(p, "IT at the "+r.Series.ITPoint, colourIT, it); err != nil {
			return nil, err.Error()
		}
	}
	if err := line(p, "hosts (their BMCs)", colourHosts, hosts); err != nil {
		return nil, err.Error()
	}
	p.Y.Min = 0
	p.Y.Max = headroom(hosts, it, facility)
	return p, ""
}

func puePlot(r *Report) (*plot.Plot, string) {
	if len(r.Series.PUE) < 2 {
		if r.PUE.Reason != "" {
			return nil, "no PUE: " + r.PUE.Reason
		}
		return nil, "fewer than two chart steps with a PUE"
	}
	p := newPlot("PUE")
	var xys plotter.XYs
	top := 1.0
	for _, pt := range r.Series.PUE {
		xys = append(xys, plotter.XY{X: unix(pt.Time), Y: pt.Value})
		top = max(top, pt.Value)
	}
	p.Y.Max = 1 + (top-1)*1.15 + 0.01 // room above the line
	if err := line(p, "PUE", colourFacility, xys); err != nil {
		return nil, err.Error()
	}
	p.Y.Min = 1
	return p, ""
}

func hostBars(r *Report) (*plot.Plot, string) {
	rows := r.Series.HostEnergy
	if len(rows) == 0 {
		return nil, "no host energy in the range"
	}
	rows = rows[:min(len(rows), 15)]
	values := make(plotter.Values, len(rows))
	names := make([]string, len(rows))
	for i, row := range rows {
		values[i] = row.KWh
		names[i] = row.Host
	}
	p := sans(plot.New())
	p.Y.Label.Text = "kWh"
	p.Y.Tick.Marker = valueTicks{}
	// Bars share the plot's width (about 500 pt of the 8 in canvas), so a
	// few hosts do not get needles and many do not overlap.
	width := vg.Points(max(4, min(48, 500/float64(len(rows))*0.7)))
	bars, err := plotter.NewBarChart(values, width)
	if err != nil {
		return nil, err.Error()
	}
	bars.Color = colourIT
	bars.LineStyle.Width = 0
	p.Add(plotter.NewGrid(), bars)
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.6
	p.X.Tick.Label.XAlign = draw.XRight
	p.Y.Min = 0
	return p, ""
}

func workPlot(r *Report) (*plot.Plot, string) {
	if len(r.Series.WorkPerJoule) < 2 {
		return nil, "no work counters in the range (an inference server's tokens, a job's FLOP or samples)"
	}
	p := newPlot(r.Series.WorkUnit + "s per joule")
	var xys plotter.XYs
	for _, pt := range r.Series.WorkPerJoule {
		xys = append(xys, plotter.XY{X: unix(pt.Time), Y: pt.Value})
	}
	if err := line(p, r.Series.WorkUnit+"s per IT joule", colourWork, xys); err != nil {
		return nil, err.Error()
	}
	p.Y.Min = 0
	p.Y.Max = headroom(xys)
	return p, ""
}

// headroom is a y-axis top a third above the highest value, so the
// legend sits above the lines, not on them.
func headroom(series ...plotter.XYs) float64 {
	top := 0.0
	for _, xys := range series {
		for _, p := range xys {
			top = max(top, p.Y)
		}
	}
	return top * 1.35
}

// timeTicks put the time axis's ticks on round times whose labels all
// differ: the step is the first that gives at most six ticks, the format as
// fine as the step, and the date where it changes.
type timeTicks struct{}

var tickSteps = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 28 * 24 * time.Hour}

// Ticks implements plot.Ticker.
func (timeTicks) Ticks(lo, hi float64) []plot.Tick {
	from, to := time.Unix(0, int64(lo*1e9)).UTC(), time.Unix(0, int64(hi*1e9)).UTC()
	span := to.Sub(from)
	step := tickSteps[len(tickSteps)-1]
	for _, s := range tickSteps {
		if span/s <= 6 {
			step = s
			break
		}
	}
	clock := "15:04"
	if step < time.Minute {
		clock = "15:04:05"
	}
	var ticks []plot.Tick
	lastDay := ""
	for t := from.Truncate(step); !t.After(to); t = t.Add(step) {
		if t.Before(from) {
			continue
		}
		day := t.Format("Jan 2")
		label := day
		if step < 24*time.Hour {
			label = t.Format(clock)
			if day != lastDay {
				label += "\n" + day
			}
		}
		lastDay = day
		ticks = append(ticks, plot.Tick{Value: unix(t), Label: label})
	}
	return ticks
}

// valueTicks label a value axis at four to six round steps (1, 2, 2.5 or 5
// times a power of ten) with as many decimals as the step needs.
type valueTicks struct{}

// Ticks implements plot.Ticker.
func (valueTicks) Ticks(lo, hi float64) []plot.Tick {
	span := hi - lo
	if !(span > 0) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'f', -1, 64)}}
	}
	mag := math.Pow(10, math.Floor(math.Log10(span)))
	step := mag
	for _, f := range []float64{0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10} {
		if span/(f*mag) <= 6 {
			step = f * mag
			break
		}
	}
	decimals := max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
	if f := step / math.Pow(10, -float64(decimals)); math.Abs(f-math.Round(f)) > 1e-9 {
		decimals++ // 2.5 × 10⁻ⁿ needs one more
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
	}
	return ticks
}
