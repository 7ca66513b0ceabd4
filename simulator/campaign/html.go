package campaign

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"sort"
)

// HTML renders the report as one self-contained page: the tables in HTML, the plots as inline SVG
// drawn by an inline script from the report's own JSON (embedded in the page). No external
// assets, fonts or scripts.
func (r *Report) HTML() ([]byte, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	type row struct {
		Name string
		S    Stats
	}
	var rows []row
	for _, t := range r.typeNames() {
		rows = append(rows, row{t, r.Types[t].Stats})
	}
	type srcRow struct {
		Type, Name string
		S          Stats
	}
	var srcs []srcRow
	for _, t := range r.typeNames() {
		var names []string
		for n := range r.Types[t].Sources {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			srcs = append(srcs, srcRow{t, n, r.Types[t].Sources[n]})
		}
	}
	var buf bytes.Buffer
	err = page.Execute(&buf, map[string]any{"R": r, "Rows": rows, "Sources": srcs, "Data": template.JS(data)})
	return buf.Bytes(), err
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms": func(v float64) string { return fmt.Sprintf("%.3f", v) },
	"ts": func(t any) string { return fmt.Sprint(t) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>simlab campaign {{.R.RunID}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
table{border-collapse:collapse;margin:4px 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}
tr.totals td{font-weight:bold;background:#fafafa}
.pass{color:#116611;font-weight:bold} .fail{color:#aa1111;font-weight:bold} .none{color:#666}
.meta{color:#555} .plots{display:flex;flex-wrap:wrap;gap:16px} figure{margin:0} figcaption{font-weight:bold;margin-bottom:4px}
svg{background:#fcfcfc;border:1px solid #ddd} svg text{font-size:11px;fill:#333}
.small{font-size:12px;color:#555;max-width:1100px}
</style></head><body>
<h1>Campaign {{.R.RunID}} <span id="verdict" class="{{.R.Verdict}}">{{.R.Verdict}}</span></h1>
<div class="meta">stack <b>{{.R.Stack}}</b> · dataset <b>{{.R.Dataset.Path}}</b> (fingerprint <code>{{printf "%.16s" .R.Dataset.Fingerprint}}</code>, {{.R.Dataset.Types}} types, {{.R.Dataset.Sources}} sources, {{.R.Dataset.Records}} records, span {{.R.Dataset.Span}}) · start {{ts .R.Start}}{{if not .R.StoppedAt.IsZero}} · stopped {{ts .R.StoppedAt}}{{end}} · {{len .R.Workers}} workers took part</div>

<h2>Totals</h2>
<table id="totals"><thead><tr><th>type</th><th>expected</th><th>sent</th><th>acknowledged</th><th>lost</th><th>duplicated</th><th>possible dup.</th><th>failed</th><th>late p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr></thead><tbody>
{{range .Rows}}<tr class="type"><td>{{.Name}}</td><td>{{.S.Expected}}</td><td>{{.S.Sent}}</td><td>{{.S.Acknowledged}}</td><td>{{.S.Lost}}</td><td>{{.S.Duplicated}}</td><td>{{.S.PossibleDuplicates}}</td><td>{{.S.Failed}}</td><td>{{ms .S.Lateness.P50}}</td><td>{{ms .S.Lateness.P99}}</td><td>{{ms .S.Lateness.P999}}</td><td>{{ms .S.Lateness.Max}}</td></tr>
{{end}}<tr class="totals"><td>all</td><td>{{.R.Totals.Expected}}</td><td>{{.R.Totals.Sent}}</td><td>{{.R.Totals.Acknowledged}}</td><td>{{.R.Totals.Lost}}</td><td>{{.R.Totals.Duplicated}}</td><td>{{.R.Totals.PossibleDuplicates}}</td><td>{{.R.Totals.Failed}}</td><td>{{ms .R.Totals.Lateness.P50}}</td><td>{{ms .R.Totals.Lateness.P99}}</td><td>{{ms .R.Totals.Lateness.P999}}</td><td>{{ms .R.Totals.Lateness.Max}}</td></tr>
</tbody></table>

<h2>Thresholds</h2>
{{if .R.Thresholds}}<table id="thresholds"><thead><tr><th>threshold</th><th>line</th><th>measured</th><th>result</th></tr></thead><tbody>
{{range .R.Thresholds}}<tr><td><code>{{.Expr}}</code></td><td>{{.Line}}</td><td>{{if .Missing}}{{.Missing}}{{else}}{{.Measured}}{{end}}</td><td class="{{if .OK}}pass{{else}}fail{{end}}">{{if .OK}}pass{{else}}FAIL{{end}}</td></tr>
{{end}}</tbody></table>{{else}}<p class="none">no thresholds given</p>{{end}}

<h2>Plots</h2>
<div class="plots">
<figure><figcaption>Lateness against due time (p99 dots, p50 dashed; per second)</figcaption><svg id="lateness-vs-due" width="560" height="260"></svg></figure>
<figure><figcaption>Lateness distribution per type</figcaption><svg id="lateness-dist" width="560" height="260"></svg></figure>
<figure><figcaption>Records/s: due vs sent</figcaption><svg id="rate" width="560" height="260"></svg></figure>
<figure><figcaption>Workers over time</figcaption><svg id="workers" width="560" height="260"></svg></figure>
</div>

<h2>Worst sources</h2>
<table id="worst"><thead><tr><th>source</th><th>lost</th><th>sent</th><th>late p99 ms</th><th>max ms</th></tr></thead><tbody>
{{range .R.WorstSources}}<tr><td>{{.Source}}</td><td>{{.Lost}}</td><td>{{.Sent}}</td><td>{{ms .P99}}</td><td>{{ms .Max}}</td></tr>
{{end}}</tbody></table>

<h2>Workers</h2>
<table id="workerlist"><thead><tr><th>worker</th><th>type</th><th>first</th><th>last</th><th>left</th><th>sent</th></tr></thead><tbody>
{{range .R.Workers}}<tr><td>{{.ID}}</td><td>{{.Type}}</td><td>{{ts .First}}</td><td>{{ts .Last}}</td><td>{{.Left}}</td><td>{{.Sent}}</td></tr>
{{end}}</tbody></table>

<details><summary>All sources ({{len .Sources}})</summary>
<table id="sources"><thead><tr><th>source</th><th>expected</th><th>sent</th><th>acknowledged</th><th>lost</th><th>duplicated</th><th>late p99 ms</th><th>max ms</th></tr></thead><tbody>
{{range .Sources}}<tr><td>{{.Type}}/{{.Name}}</td><td>{{.S.Expected}}</td><td>{{.S.Sent}}</td><td>{{.S.Acknowledged}}</td><td>{{.S.Lost}}</td><td>{{.S.Duplicated}}</td><td>{{ms .S.Lateness.P99}}</td><td>{{ms .S.Lateness.Max}}</td></tr>
{{end}}</tbody></table></details>
<p class="small">{{.R.Measurement}}</p>

<script type="application/json" id="report-data">{{.Data}}</script>
<script>
(function(){
"use strict";
var R = JSON.parse(document.getElementById("report-data").textContent);
var NS = "http://www.w3.org/2000/svg";
var COLORS = ["#1f77b4","#d62728","#2ca02c","#9467bd","#ff7f0e","#8c564b","#e377c2","#17becf"];
var types = Object.keys(R.types).sort();
function color(t){ return COLORS[types.indexOf(t) % COLORS.length]; }
function el(parent, name, attrs, text){
  var e = document.createElementNS(NS, name);
  for (var k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  parent.appendChild(e); return e;
}
var M = {l:52, r:12, t:12, b:34};
function frame(svg, xmax, ymax, xlabel, ylabel, xlog){
  var W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  var w = W-M.l-M.r, h = H-M.t-M.b;
  if (!(ymax > 0)) ymax = 1;
  var xmin = xlog ? xlog : 0;
  if (!(xmax > xmin)) xmax = xmin + 1;
  var X = xlog ? function(v){ return M.l + w*Math.log(Math.max(v,xmin)/xmin)/Math.log(xmax/xmin); }
               : function(v){ return M.l + w*v/xmax; };
  var Y = function(v){ return M.t + h - h*v/ymax; };
  el(svg, "line", {x1:M.l, y1:M.t+h, x2:M.l+w, y2:M.t+h, stroke:"#888"});
  el(svg, "line", {x1:M.l, y1:M.t, x2:M.l, y2:M.t+h, stroke:"#888"});
  for (var i=0;i<=4;i++){
    var yv = ymax*i/4, y = Y(yv);
    el(svg, "line", {x1:M.l, y1:y, x2:M.l+w, y2:y, stroke:"#eee"});
    el(svg, "text", {x:M.l-4, y:y+4, "text-anchor":"end"}, fmt(yv));
    var xv = xlog ? xmin*Math.pow(xmax/xmin, i/4) : xmax*i/4;
    el(svg, "text", {x:X(xv), y:M.t+h+14, "text-anchor":"middle"}, fmt(xv));
  }
  el(svg, "text", {x:M.l+w/2, y:H-4, "text-anchor":"middle"}, xlabel);
  el(svg, "text", {x:12, y:M.t+h/2, transform:"rotate(-90 12 "+(M.t+h/2)+")", "text-anchor":"middle"}, ylabel);
  return {X:X, Y:Y};
}
function fmt(v){ if (v >= 100) return Math.round(v).toString(); if (v >= 1) return v.toFixed(1); return v.toPrecision(2); }
function legend(svg, names){
  names.forEach(function(n, i){
    var x = M.l + 8 + i*110;
    el(svg, "rect", {x:x, y:M.t+2, width:10, height:10, fill:color(n)});
    el(svg, "text", {x:x+14, y:M.t+11}, n);
  });
}
var t0 = Date.parse(R.start);
function secs(t){ return (Date.parse(t) - t0)/1000; }
var series = R.series || [];
var xmax = 0; series.forEach(function(p){ xmax = Math.max(xmax, secs(p.t)+1); });

// 1. lateness against due time
(function(){
  var svg = document.getElementById("lateness-vs-due"), ymax = 0, n = 0;
  series.forEach(function(p){ types.forEach(function(t){ var s = p.types[t]; if (s && s.sent > 0) ymax = Math.max(ymax, s.late_p99_ms); }); });
  var f = frame(svg, xmax, ymax*1.1, "seconds since start", "ms");
  types.forEach(function(t){
    var pts = [], med = [];
    series.forEach(function(p){ var s = p.types[t]; if (!s || s.sent === 0) return;
      var x = f.X(secs(p.t)+0.5); pts.push(x+","+f.Y(s.late_p99_ms)); med.push(x+","+f.Y(s.late_p50_ms));
      el(svg, "circle", {"class":"pt", cx:x, cy:f.Y(s.late_p99_ms), r:2.5, fill:color(t), "data-type":t}); n++; });
    el(svg, "polyline", {points:pts.join(" "), fill:"none", stroke:color(t), "stroke-width":1});
    el(svg, "polyline", {points:med.join(" "), fill:"none", stroke:color(t), "stroke-dasharray":"3,3"});
  });
  legend(svg, types); svg.setAttribute("data-points", n);
})();

// 2. lateness distribution per type (share of records per bucket, log x)
(function(){
  var svg = document.getElementById("lateness-dist"), n = 0, lo = 1, hi = 10, ymax = 0;
  types.forEach(function(t){ var h = R.types[t].lateness_hist || [], c = R.types[t].sent || 1;
    h.forEach(function(b){ hi = Math.max(hi, b[0]/1000); ymax = Math.max(ymax, b[1]/c); }); });
  lo = 0.001;
  var f = frame(svg, hi, ymax*1.1, "lateness ms (log)", "share", lo);
  // A bucket's lower bound from its upper bound u (µs): exact µs up to 16, then 16 buckets per
  // power of two (delivery.BucketUpper).
  function lower(u){ return u <= 16 ? u-1 : u - Math.pow(2, Math.floor(Math.log2(u-1)) - 4); }
  types.forEach(function(t){ var h = R.types[t].lateness_hist || [], c = R.types[t].sent || 1;
    h.forEach(function(b){ var x0 = f.X(Math.max(lower(b[0]), 1)/1000), x1 = f.X(b[0]/1000);
      el(svg, "rect", {"class":"bar", x:x0, y:f.Y(b[1]/c), width:Math.max(1, x1-x0), height:f.Y(0)-f.Y(b[1]/c), fill:color(t), "fill-opacity":0.55, "data-type":t}); n++; });
  });
  legend(svg, types); svg.setAttribute("data-points", n);
})();

// 3. records/s due vs sent (all types)
(function(){
  var svg = document.getElementById("rate"), ymax = 0, n = 0, due = [], sent = [];
  series.forEach(function(p){ var d = 0, s = 0; types.forEach(function(t){ var v = p.types[t]; if (v){ d += v.due; s += v.sent; } });
    due.push([secs(p.t)+0.5, d]); sent.push([secs(p.t)+0.5, s]); ymax = Math.max(ymax, d, s); });
  var f = frame(svg, xmax, ymax*1.1, "seconds since start", "records/s");
  [["due", due, "#888"], ["sent", sent, "#1f77b4"]].forEach(function(x){
    el(svg, "polyline", {points:x[1].map(function(p){ return f.X(p[0])+","+f.Y(p[1]); }).join(" "), fill:"none", stroke:x[2], "stroke-width":x[0]==="due"?3:1.5});
    x[1].forEach(function(p){ el(svg, "circle", {"class":"pt-"+x[0], cx:f.X(p[0]), cy:f.Y(p[1]), r:2, fill:x[2]}); n++; });
  });
  el(svg, "text", {x:M.l+10, y:M.t+12, fill:"#888"}, "due (grey), sent (blue)");
  svg.setAttribute("data-points", n);
})();

// 4. workers over time
(function(){
  var svg = document.getElementById("workers"), ymax = 0, n = 0, wot = R.workers_over_time || [];
  wot.forEach(function(p){ types.forEach(function(t){ ymax = Math.max(ymax, p.types[t] || 0); }); });
  var f = frame(svg, xmax, ymax+1, "seconds since start", "workers");
  types.forEach(function(t){ var pts = [];
    wot.forEach(function(p){ var x0 = f.X(secs(p.t)), x1 = f.X(secs(p.t)+1), y = f.Y(p.types[t] || 0);
      pts.push(x0+","+y, x1+","+y);
      el(svg, "circle", {"class":"pt-w", cx:(x0+x1)/2, cy:y, r:2, fill:color(t), "data-type":t}); n++; });
    el(svg, "polyline", {points:pts.join(" "), fill:"none", stroke:color(t), "stroke-width":1.5});
  });
  legend(svg, types); svg.setAttribute("data-points", n);
})();
document.body.setAttribute("data-rendered", "true");
})();
</script>
</body></html>
`))
