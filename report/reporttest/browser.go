package reporttest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Page is what a person sees of an HTML file opened in headless Chromium.
type Page struct {
	Title  string
	Text   string     // the body's rendered text (innerText)
	Tables []Table    // every table, as rendered
	Images []Image    // every <img>
	URLs   []string   // every URL the page requested, itself included
	PNG    []byte     // a screenshot of the whole page
	Size   [2]int     // the page's width and height in CSS pixels
	Broken []string   // images that failed, by alt text
	mu     sync.Mutex // guards URLs while the page loads
}

// Table is one <table>: its id and rows of cell texts, header row included.
type Table struct {
	ID   string     `json:"id"`
	Rows [][]string `json:"rows"`
}

// Image is one <img> as laid out.
type Image struct {
	Alt      string  `json:"alt"`
	Complete bool    `json:"complete"` // the browser finished with it
	NaturalW int     `json:"naturalW"` // 0 for an image that could not be decoded
	NaturalH int     `json:"naturalH"`
	ShownW   float64 `json:"shownW"` // its box on the page
	ShownH   float64 `json:"shownH"`
}

// Drawn says the image loaded, decoded and takes room on the page.
func (i Image) Drawn() bool {
	return i.Complete && i.NaturalW > 0 && i.NaturalH > 0 && i.ShownW > 0 && i.ShownH > 0
}

// ChromiumPath finds Debian's chromium (or another Chromium or Chrome).
func ChromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH (Debian package chromium)")
}

// RequireChromium returns chromium's path. Without it the test is skipped,
// saying why, except under CI=true, where a missing browser must not pass
// silently: there it fails.
func RequireChromium(t testing.TB) string {
	t.Helper()
	p, err := ChromiumPath()
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v: CI must run the browser test (.ci/run installs chromium)", err)
	}
	t.Skipf("skipped: %v; install it (apt-get install chromium) to open report.html in a real browser. Under CI=true this fails instead.", err)
	return ""
}

// ArtefactDir is where tests keep what a person may want to look at after
// them (screenshots): $PROFILEMATE_ARTEFACTS, else build/test-artefacts in
// the repository, which git ignores.
func ArtefactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("PROFILEMATE_ARTEFACTS")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "build", "test-artefacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// Open loads the HTML file at path in headless Chromium (run as the
// machine allows: no sandbox as root, no GPU, no network of its own) at
// width CSS pixels and reads back what it shows.
func Open(ctx context.Context, chromium, path string, width int) (*Page, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	profile, err := os.MkdirTemp("", "reporttest-chromium-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(width, 1000),
	)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	page := &Page{}
	err = chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			page.mu.Lock()
			page.URLs = append(page.URLs, e.Request.URL)
			page.mu.Unlock()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("chromium: %w", err)
	}
	type probeT struct {
		Title  string  `json:"title"`
		Text   string  `json:"text"`
		Tables []Table `json:"tables"`
		Images []Image `json:"images"`
		W      int     `json:"w"`
		H      int     `json:"h"`
	}
	const read = `(() => ({
		title: document.title,
		text: document.body.innerText,
		tables: [...document.querySelectorAll('table')].map(t => ({
			id: t.id,
			rows: [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim())),
		})),
		images: [...document.images].map(i => {
			const r = i.getBoundingClientRect();
			return {alt: i.alt, complete: i.complete, naturalW: i.naturalWidth, naturalH: i.naturalHeight, shownW: r.width, shownH: r.height};
		}),
		w: document.documentElement.scrollWidth,
		h: document.documentElement.scrollHeight,
	}))()`
	if err := chromedp.Do(bctx, chromedp.Navigate("file://"+abs), chromedp.WaitReady("body")); err != nil {
		return nil, fmt.Errorf("chromium on %s: %w", abs, err)
	}
	// Every image decoded or failed, so what is read is what shows.
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`[...document.images].every(i => i.complete)`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		return nil, fmt.Errorf("chromium on %s: images: %w", abs, err)
	}
	probe, err := chromedp.Run(bctx, chromedp.Evaluate[probeT](read))
	if err != nil {
		return nil, fmt.Errorf("chromium on %s: %w", abs, err)
	}
	if page.PNG, err = chromedp.Run(bctx, chromedp.FullScreenshot(100)); err != nil {
		return nil, fmt.Errorf("chromium on %s: screenshot: %w", abs, err)
	}
	page.Title, page.Text, page.Tables, page.Images = probe.Title, probe.Text, probe.Tables, probe.Images
	page.Size = [2]int{probe.W, probe.H}
	for _, img := range page.Images {
		if !img.Drawn() {
			page.Broken = append(page.Broken, img.Alt)
		}
	}
	return page, nil
}

// Requests are the URLs the page requested, its own included.
func (p *Page) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.URLs...)
}
