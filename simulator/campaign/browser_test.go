package campaign

import (
	"bytes"
	"fmt"
	"image/png"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/delivery"
)

// chromium finds Debian's chromium. `make test` installs it first (the Makefile's chromium
// target); a missing browser fails the test rather than skipping it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: run `make chromium` (apt-get install -y --no-install-recommends chromium); the report page is tested in a real browser")
	return ""
}

func headless(t *testing.T, args ...string) []byte {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(chromium(t), append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--disable-extensions", "--user-data-dir=" + filepath.Join(home, "profile"), "--virtual-time-budget=5000"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.Bytes()
}

// sampleReport is a report of a 40 s run of three types whose workers scale 2 → 4 → 3 (type1),
// with lateness growing while the fleet is small, and one source losing records.
func sampleReport() *Report {
	start := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewSource(7))
	exp := &Expectation{Span: 40 * time.Second, Offsets: map[string]map[string][]time.Duration{},
		Info: DatasetInfo{Path: "campaign-1", Fingerprint: "8c871dd2afe50982aa", Types: 3, Sources: 30, Records: 0, Span: "40s"}}
	agg := delivery.NewAggregator()
	seq := int64(0)
	for ti, typ := range []string{"router", "switch", "sftp-probe"} {
		exp.Offsets[typ] = map[string][]time.Duration{}
		for s := range 10 {
			inst := fmt.Sprintf("ne%05d", s+1)
			var offs []time.Duration
			for k := range 200 {
				offs = append(offs, time.Duration(k)*200*time.Millisecond)
			}
			exp.Offsets[typ][inst] = offs
			exp.Info.Records += len(offs)
		}
		for sec := 1; sec <= 40; sec++ {
			workers := 2
			if typ == "router" && sec > 12 && sec <= 28 {
				workers = 4
			} else if typ == "router" && sec > 28 {
				workers = 3
			}
			for w := range workers {
				src, tot := map[string]*delivery.Counts{}, &delivery.Counts{}
				for s := w; s < 10; s += workers {
					inst := fmt.Sprintf("ne%05d", s+1)
					c := &delivery.Counts{Sent: 5, Acked: 5}
					if typ == "switch" && s == 3 && sec > 30 {
						c.Sent, c.Acked = 3, 3 // a source losing records at the end
					}
					base := 0.3 + float64(ti)*0.2
					if typ == "router" && sec <= 12 {
						base = 2 + float64(sec)/3
					}
					for range c.Sent {
						c.Late.Observe(time.Duration((base + rng.ExpFloat64()*base) * float64(time.Millisecond)))
					}
					src[inst] = c
					tot.Sent, tot.Acked = tot.Sent+c.Sent, tot.Acked+c.Acked
					tot.Late.Merge(&c.Late)
				}
				seq++
				agg.Add(&delivery.Summary{V: 1, Run: "r-demo", Type: typ, Worker: fmt.Sprintf("%s-w%d", typ, w), Seq: seq,
					From: start.Add(time.Duration(sec-1) * time.Second), To: start.Add(time.Duration(sec) * time.Second),
					Final: sec == 40, Partitions: 10 / workers, Totals: tot, Sources: src})
			}
		}
	}
	r := BuildReport(exp, agg.View("r-demo", true), runWindow{start: start, loops: 1}, "lab", "http://127.0.0.1:8080")
	ths, _ := parseThresholds("thresholds.txt", strings.NewReader("late_p99 < 5ms\nlost == 0\nsent_ratio{router} >= 0.999\n"))
	r.Judged(Judge(ths, r, false))
	return r
}

// TestReportPageInChromium opens report.html in headless chromium and checks what the page
// shows once its script ran: the number of points and bars each plot drew, the totals row, the
// thresholds, the verdict; and takes a screenshot (CAMPAIGN_SCREENSHOT=path keeps it).
func TestReportPageInChromium(t *testing.T) {
	r := sampleReport()
	dir := t.TempDir()
	_, html, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(html)
	for _, ext := range []string{`src="http`, `href="http`, `@import`, `url(`} {
		if bytes.Contains(page, []byte(ext)) {
			t.Errorf("report.html refers to an external asset (%s)", ext)
		}
	}
	dom := string(headless(t, "--dump-dom", "file://"+html))
	if !strings.Contains(dom, `data-rendered="true"`) {
		t.Fatalf("the page's script did not finish:\n%.2000s", dom)
	}
	svg := func(id string) string {
		m := regexp.MustCompile(`(?s)<svg id="` + id + `"[^>]*>.*?</svg>`).FindString(dom)
		if m == "" {
			t.Fatalf("no svg #%s in the page", id)
		}
		return m
	}
	count := func(s, sub string) int { return strings.Count(s, sub) }
	// Lateness against due time: one dot per type and second in which records were sent.
	want := 0
	for _, p := range r.Series {
		for _, st := range p.Types {
			if st.Sent > 0 {
				want++
			}
		}
	}
	if got := count(svg("lateness-vs-due"), `class="pt"`); got != want || want != 3*40 {
		t.Errorf("lateness plot: %d points, want %d (3 types × 40 s)", got, want)
	}
	// Distribution: one bar per histogram bucket of each type.
	bars := 0
	for _, ts := range r.Types {
		bars += len(ts.LatenessHist)
	}
	if got := count(svg("lateness-dist"), `class="bar"`); got != bars || bars == 0 {
		t.Errorf("distribution: %d bars, want %d", got, bars)
	}
	// Due vs sent: one point per second for each.
	if d, s := count(svg("rate"), `class="pt-due"`), count(svg("rate"), `class="pt-sent"`); d != len(r.Series) || s != len(r.Series) {
		t.Errorf("rate plot: %d due and %d sent points, want %d each", d, s, len(r.Series))
	}
	// Workers over time: the router fleet's 2 → 4 → 3 shows as points at those heights.
	wsvg := svg("workers")
	if got := count(wsvg, `class="pt-w"`); got != 3*len(r.WorkersOverTime) {
		t.Errorf("workers plot: %d points, want %d", got, 3*len(r.WorkersOverTime))
	}
	ys := map[string]bool{}
	for _, m := range regexp.MustCompile(`<circle class="pt-w" cx="[^"]*" cy="([^"]*)" r="2" fill="[^"]*" data-type="router"`).FindAllStringSubmatch(wsvg, -1) {
		ys[m[1]] = true
	}
	if len(ys) != 3 {
		t.Errorf("router workers plotted at %d heights, want 3 (2, 4 and 3 workers): %v", len(ys), ys)
	}
	// The totals row shows the run's totals; the failed thresholds and the verdict show.
	tot := fmt.Sprintf(`<tr class="totals"><td>all</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td>`, r.Totals.Expected, r.Totals.Sent, r.Totals.Acknowledged, r.Totals.Lost)
	if !strings.Contains(dom, tot) || r.Totals.Lost != 20 {
		t.Errorf("totals row %q not in the page (lost %d)", tot, r.Totals.Lost)
	}
	if !strings.Contains(dom, `<span id="verdict" class="fail">fail</span>`) || count(dom, `<td class="fail">FAIL</td>`) != 2 {
		t.Errorf("verdict or failed thresholds not shown")
	}
	if !strings.Contains(dom, "<td>switch/ne00004</td><td>20</td>") {
		t.Errorf("the worst source (switch/ne00004, 20 lost) is not first in the worst-sources table")
	}

	shot := filepath.Join(dir, "report.png")
	headless(t, "--screenshot="+shot, "--window-size=1240,1700", "--hide-scrollbars", "file://"+html)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1240 || b.Dy() != 1700 {
		t.Errorf("screenshot %v, want 1240×1700", b)
	}
	// The plots are drawn: the plot area is not blank (many distinct colours).
	colours := map[[3]uint32]bool{}
	for y := 500; y < 1200; y += 3 {
		for x := 0; x < 1240; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 12, g >> 12, b >> 12}] = true
		}
	}
	if len(colours) < 20 {
		t.Errorf("the screenshot's plot area has %d colours: blank?", len(colours))
	}
	if keep := os.Getenv("CAMPAIGN_SCREENSHOT"); keep != "" {
		b, _ := os.ReadFile(shot)
		if err := os.WriteFile(keep, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
