package campaign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/delivery"
	"github.com/simlab/simlab/simulator/state"
)

// Client talks to the controller's HTTP API (docs/API.md).
type Client struct {
	URL  string
	HTTP *http.Client
	// Via says how URL reaches the controller, for errors (empty: URL says it).
	Via string
}

// where names the controller in errors.
func (c *Client) where() string {
	if c.Via != "" {
		return c.Via
	}
	return c.URL
}

// NewClient returns a client for a controller base URL.
func NewClient(url string) *Client {
	return &Client{URL: strings.TrimRight(url, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// errNotFound is a 404 answer.
var errNotFound = errors.New("not found")

type apiError struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems"`
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return fmt.Errorf("controller %s: %w", c.where(), err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("controller %s: %w", c.where(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("controller %s: %s %s: %w", c.where(), method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var ae apiError
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			msg = ae.Error
			if len(ae.Problems) > 0 {
				msg += ":\n  " + strings.Join(ae.Problems, "\n  ")
			}
		}
		err := fmt.Errorf("controller %s: %s %s: %s: %s", c.where(), method, path, resp.Status, msg)
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w: %w", errNotFound, err)
		}
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("controller %s: %s %s: %w", c.where(), method, path, err)
	}
	return nil
}

// Load asks the controller to load a dataset.
func (c *Client) Load(ctx context.Context, req controller.LoadRequest) (*controller.LoadResult, error) {
	var res controller.LoadResult
	return &res, c.do(ctx, "POST", "/v1/dataset", req, &res)
}

// LoadedDataset is the body of GET /v1/dataset.
type LoadedDataset struct {
	Stage       string                     `json:"stage"`
	Fingerprint string                     `json:"fingerprint"`
	Span        string                     `json:"span"`
	Manifests   map[string]*state.Manifest `json:"manifests"`
}

// Dataset returns the loaded dataset's manifests.
func (c *Client) Dataset(ctx context.Context) (*LoadedDataset, error) {
	var res LoadedDataset
	return &res, c.do(ctx, "GET", "/v1/dataset", nil, &res)
}

// Start starts a run.
func (c *Client) Start(ctx context.Context, req controller.StartRequest) (*state.Stage, error) {
	var st state.Stage
	return &st, c.do(ctx, "POST", "/v1/start", req, &st)
}

// Stop stops the run.
func (c *Client) Stop(ctx context.Context) (*state.Stage, error) {
	var st state.Stage
	return &st, c.do(ctx, "POST", "/v1/stop", struct{}{}, &st)
}

// WaitReady waits, up to within, until the controller's /readyz answers 200 (it has read its
// state topic), asking every interval; a controller that is still starting, or a Service
// without a ready endpoint yet, is waited for. wait is told the first failure, once. The error
// names the last failure.
func (c *Client) WaitReady(ctx context.Context, within, interval time.Duration, wait func(error)) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		err := c.do(ctx, "GET", "/readyz", nil, nil)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			// Not the deadline cutting a request short: that says nothing new.
			if last == nil && wait != nil {
				wait(err)
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the controller was not ready within %s: %w", within, last)
		case <-time.After(interval):
		}
	}
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (*controller.Status, error) {
	var st controller.Status
	return &st, c.do(ctx, "GET", "/v1/status", nil, &st)
}

// Delivery is the workers' aggregate of a run; nil (no error) when no worker reported yet.
func (c *Client) Delivery(ctx context.Context, run string, sources bool) (*delivery.View, error) {
	path := "/v1/runs/" + run + "/delivery"
	if sources {
		path += "?sources=1"
	}
	var v delivery.View
	err := c.do(ctx, "GET", path, nil, &v)
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &v, nil
}
