package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/state"
)

type metrics struct {
	reg           *prometheus.Registry
	recordsLoaded prometheus.Counter
	runs          prometheus.Counter
	requests      *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(),
		recordsLoaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_controller_records_loaded_total", Help: "Records written to Kafka by loads."}),
		runs:          prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_controller_runs_total", Help: "Runs started."}),
		requests:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "simulator_controller_requests_total", Help: "API requests by route and status code."}, []string{"route", "code"}),
	}
	m.reg.MustRegister(m.recordsLoaded, m.runs, m.requests, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

type apiError struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitempty"`
}

// Handler returns the HTTP API, /metrics, /healthz and /readyz.
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, h func(r *http.Request) (int, any)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			code, body := h(r)
			c.m.requests.WithLabelValues(pattern, fmt.Sprint(code)).Inc()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(body)
		})
	}
	route("POST /v1/dataset", c.handleLoad)
	route("GET /v1/dataset", func(r *http.Request) (int, any) {
		st := c.reader.Stage()
		ms := map[string]*state.Manifest{}
		for _, t := range st.Types {
			if m := c.reader.Manifest(t); m != nil {
				ms[t] = m
			}
		}
		return 200, map[string]any{"stage": st.Stage, "fingerprint": st.Fingerprint, "span": st.Span.String(), "manifests": ms}
	})
	route("DELETE /v1/dataset", func(r *http.Request) (int, any) {
		if err := c.Delete(r.Context()); err != nil {
			return errCode(err), apiError{Error: err.Error()}
		}
		return 200, map[string]string{"stage": state.StageEmpty}
	})
	route("POST /v1/start", func(r *http.Request) (int, any) {
		var req StartRequest
		if err := decode(r, &req); err != nil {
			return 400, apiError{Error: err.Error()}
		}
		st, err := c.Start(r.Context(), req)
		if err != nil {
			return errCode(err), apiError{Error: err.Error()}
		}
		return 200, st
	})
	route("POST /v1/stop", func(r *http.Request) (int, any) {
		st, err := c.Stop(r.Context())
		if err != nil {
			return errCode(err), apiError{Error: err.Error()}
		}
		return 200, st
	})
	route("GET /v1/status", func(r *http.Request) (int, any) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		s, err := c.Status(ctx)
		if err != nil {
			return 503, apiError{Error: err.Error()}
		}
		return 200, s
	})
	route("GET /v1/runs", func(r *http.Request) (int, any) {
		return 200, map[string]any{"runs": c.agg.Runs(), "current": c.reader.Stage().RunID}
	})
	route("GET /v1/runs/{run}/delivery", func(r *http.Request) (int, any) {
		run := r.PathValue("run")
		if run == "current" {
			run = c.reader.Stage().RunID
		}
		v := c.Delivery(run, r.URL.Query().Get("sources") == "1")
		if v == nil {
			return 404, apiError{Error: fmt.Sprintf("no delivery summary of run %q yet (workers publish one every second while they are in the run)", run)}
		}
		return 200, v
	})
	route("GET /v1/types/{type}/sources", func(r *http.Request) (int, any) {
		m := c.reader.Manifest(r.PathValue("type"))
		if m == nil {
			return 404, apiError{Error: fmt.Sprintf("type %q is not loaded", r.PathValue("type"))}
		}
		return 200, m
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !c.reader.Ready() {
			http.Error(w, "state topic not read yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.m.reg, promhttp.HandlerOpts{}))
	return mux
}

func (c *Controller) handleLoad(r *http.Request) (int, any) {
	var req LoadRequest
	if err := decode(r, &req); err != nil {
		return 400, apiError{Error: err.Error()}
	}
	dir, err := c.resolve(req.Path)
	if err != nil {
		return 400, apiError{Error: err.Error()}
	}
	res, err := c.Load(r.Context(), dir, req)
	var ve *dataset.ValidationError
	switch {
	case errors.As(err, &ve):
		return 400, apiError{Error: fmt.Sprintf("dataset %s is invalid; nothing was loaded", req.Path), Problems: ve.Strings()}
	case err != nil:
		return errCode(err), apiError{Error: err.Error()}
	}
	return 200, res
}

// resolve maps a request path to a directory under the dataset root.
func (c *Controller) resolve(p string) (string, error) {
	if p == "" {
		return "", errors.New("path is required")
	}
	if filepath.IsAbs(p) || strings.Contains(filepath.ToSlash(p), "..") {
		return "", fmt.Errorf("path %q: must be relative to the dataset root, without ..", p)
	}
	return filepath.Join(c.cfg.DatasetRoot, p), nil
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("request body: %v", err)
	}
	return nil
}

func errCode(err error) int {
	switch {
	case errors.Is(err, ErrConflict):
		return 409
	case errors.Is(err, ErrInvalid):
		return 400
	case strings.Contains(err.Error(), "opening dataset"), strings.Contains(err.Error(), "partitioning"),
		strings.Contains(err.Error(), "loops"), strings.Contains(err.Error(), "delay"):
		return 400
	}
	return 500
}
