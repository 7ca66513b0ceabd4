package controller

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/broker"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/state"
)

func TestHTTPAPI(t *testing.T) {
	b, err := broker.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	root := t.TempDir()
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer = 1, 2, 5
	if err := dataset.Generate(filepath.Join(root, "good"), o); err != nil {
		t.Fatal(err)
	}
	if err := dataset.Generate(filepath.Join(root, "bad"), o); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "bad", "type1", "ne00001", "source.json"), []byte("{\"protocol\": \"tcp\"}\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := New(ctx, Config{Brokers: b.Addrs(), Names: state.Names{Prefix: "t"}, DatasetRoot: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go c.Run(ctx)
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	call := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/v1/start", `{}`, 409, "nothing loaded"},
		{"POST", "/v1/dataset", `{"path": "../etc"}`, 400, "relative to the dataset root"},
		{"POST", "/v1/dataset", `{"path": "good", "colour": 1}`, 400, "unknown field"},
		{"POST", "/v1/dataset", `{"path": "missing"}`, 400, "opening dataset"},
		{"POST", "/v1/dataset", `{"path": "bad"}`, 400, "nothing was loaded"},
		{"POST", "/v1/dataset", `{"path": "good", "partitioning": "round-robin"}`, 400, "partitioning"},
		{"POST", "/v1/dataset", `{"path": "good", "address_override": "sut.example"}`, 400, "address_override"},
		{"POST", "/v1/dataset", `{"path": "good", "address_override": "sut.example:0"}`, 400, "want 1-65535"},
		{"POST", "/v1/dataset", `{"path": "good"}`, 200, ""},
		{"POST", "/v1/dataset", `{"path": "good"}`, 200, ""},
		{"GET", "/v1/types/nope/sources", ``, 404, "not loaded"},
		{"GET", "/v1/runs/r-nope/delivery", ``, 404, `no delivery summary of run "r-nope" yet`},
		{"POST", "/v1/start", `{"delay": "forever"}`, 400, "delay"},
		{"POST", "/v1/start", `{"start_time": "2020-01-01T00:00:00Z"}`, 400, "in the past"},
		{"POST", "/v1/start", `{"loops": 3}`, 400, "needs repeat"},
		{"POST", "/v1/start", `{"start_time": "2999-01-01T00:00:00Z", "delay": "1s"}`, 400, "not both"},
		{"POST", "/v1/start", ``, 200, ""},
		{"POST", "/v1/start", `{}`, 409, "already running"},
		{"POST", "/v1/dataset", `{"path": "good"}`, 409, "stop it"},
		{"DELETE", "/v1/dataset", ``, 409, "stop it"},
		{"POST", "/v1/stop", ``, 200, ""},
		{"POST", "/v1/stop", ``, 409, "not running"},
		{"DELETE", "/v1/dataset", ``, 200, ""},
	} {
		code, body := call(tc.method, tc.path, tc.body)
		msg, _ := body["error"].(string)
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s %s: got %d %q, want %d %q", tc.method, tc.path, tc.body, code, msg, tc.code, tc.want)
		}
		if tc.path == "/v1/dataset" && strings.Contains(tc.body, "bad") {
			probs, _ := body["problems"].([]any)
			if len(probs) != 1 || !strings.HasPrefix(probs[0].(string), "type1/ne00001/source.json:1: protocol tcp needs tcp.address") {
				t.Errorf("problems %v", probs)
			}
		}
	}
	if code, body := call("GET", "/v1/status", ""); code != 200 || body["stage"] != "empty" {
		t.Errorf("status %d %v", code, body)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := call("GET", p, ""); code != 200 && p != "/healthz" && p != "/readyz" {
			t.Errorf("%s: %d", p, code)
		}
		resp, err := http.Get(srv.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", p, resp.Status, err)
		}
		resp.Body.Close()
	}
}
