package storage

import (
	"strings"
	"testing"

	"github.com/simlab/simlab/infra/config"
)

// TestOSDHandOffAndRejoinOnARealAPIServer runs a replaced worker's settle
// scripts (Settle: the delete before its machine goes, the create after
// its new machine joined) against a real kube-apiserver with kwok's nodes
// and a stand-in for the ceph CLI (cephStandIn):
//   - without a CephCluster both do nothing and call no ceph;
//   - the hand-off waits for `ceph osd ok-to-stop`, then marks the OSD out,
//     purges it and deletes its Deployment, the other node's untouched; when
//     Ceph never agrees it fails naming the node and purges nothing;
//   - the rejoin fails, naming what is missing, until an OSD of the node is
//     up, then waits for the health level (HEALTH_OK; HEALTH_WARN accepted
//     when configured) and leaves a node the CephCluster does not list alone.
//
// What it leaves unproven: that Rook brings an OSD up on the new disk by
// itself, and how long Ceph's recovery takes.
func TestOSDHandOffAndRejoinOnARealAPIServer(t *testing.T) {
	r := newRookAPI(t, 2)
	replaced, other := r.c.Nodes[0], r.c.Nodes[1]
	handOff := func(ceph string, timeout int) (string, error) {
		return r.run(osdReplacedScriptWith(r.kubectl, ceph, replaced, timeout, 0))
	}
	rejoin := func(ceph, health string, timeout int) (string, error) {
		return r.run(osdJoinedScriptWith(r.kubectl, ceph, replaced, health, timeout, 0))
	}

	// No CephCluster: the first `up` (the cluster layer comes first) and
	// destroy (the storage layer went first).
	ceph, log := cephStandIn(t, 0)
	if out, err := handOff(ceph, 60); err != nil || !strings.Contains(out, "no CephCluster: no OSD to take out") {
		t.Fatalf("hand-off without a CephCluster: %v\n%s", err, out)
	}
	if out, err := rejoin(ceph, config.CephHealthOK, 60); err != nil || !strings.Contains(out, "no CephCluster yet") {
		t.Fatalf("rejoin without a CephCluster: %v\n%s", err, out)
	}
	if l := cephCalls(log); l != "" {
		t.Fatalf("ceph was called without a CephCluster:\n%s", l)
	}

	r.installRook()
	r.apply(cephClusterOf(replaced, other))
	r.apply(osdDeployment(0, replaced))
	r.apply(osdDeployment(1, other))

	// Ceph never agrees: nothing is purged, the machine stays.
	never, neverLog := cephStandIn(t, -1)
	out, err := handOff(never, 0)
	if err == nil || !strings.Contains(out, replaced+": stopping OSD(s) osd.0 would leave placement groups without enough copies") {
		t.Errorf("a hand-off Ceph refuses: %v\n%s", err, out)
	}
	if l := cephCalls(neverLog); strings.Contains(l, "purge") || strings.Contains(l, "osd out") {
		t.Errorf("changed Ceph although it refused:\n%s", l)
	}
	if !strings.Contains(r.deployments(), "rook-ceph-osd-0") {
		t.Error("the OSD's Deployment was deleted although Ceph refused")
	}

	// Ceph agrees on the third ask.
	ceph, log = cephStandIn(t, 2)
	if out, err = handOff(ceph, 60); err != nil {
		t.Fatalf("hand-off: %v\n%s", err, out)
	}
	want := "osd ok-to-stop osd.0\npg stat\nosd ok-to-stop osd.0\npg stat\nosd ok-to-stop osd.0\nosd out osd.0\nosd purge 0 --yes-i-really-mean-it\n"
	if l := cephCalls(log); l != want {
		t.Errorf("ceph calls:\n%s\nwant:\n%s", l, want)
	}
	if d := r.deployments(); strings.Contains(d, "rook-ceph-osd-0") || !strings.Contains(d, "rook-ceph-osd-1") {
		t.Errorf("deployments after the hand-off: %s (want osd-0 gone, osd-1 kept)", d)
	}
	if !strings.Contains(out, "out and purged before its machine is replaced") {
		t.Errorf("the hand-off does not say what it did:\n%s", out)
	}
	if out, err = handOff(ceph, 60); err != nil || !strings.Contains(out, "no OSD on it") {
		t.Errorf("a retried hand-off: %v\n%s", err, out)
	}

	// The new machine joined; Rook has made no OSD on it yet.
	ceph, log = cephStandIn(t, 2)
	out, err = rejoin(ceph, config.CephHealthOK, 0)
	if err == nil || !strings.Contains(out, replaced+": no OSD of it is up") || !strings.Contains(out, "simlab:storage.readyTimeoutMinutes") {
		t.Errorf("a rejoin with no OSD up: %v\n%s", err, out)
	}
	// Its new OSD (kwok runs its pod): then Ceph's health, HEALTH_OK on the third ask.
	r.apply(osdDeployment(2, replaced))
	if out, err = rejoin(ceph, config.CephHealthOK, 60); err != nil {
		t.Fatalf("rejoin: %v\n%s", err, out)
	}
	if l := cephCalls(log); strings.Count(l, "health") != 3 {
		t.Errorf("ceph calls: want three health checks:\n%s", l)
	}
	if !strings.Contains(out, replaced+": its OSD(s) 2 up and Ceph healthy (HEALTH_OK)") {
		t.Errorf("the rejoin does not say it is done:\n%s", out)
	}
	// HEALTH_WARN accepted when the stack says so.
	warn, _ := cephStandIn(t, -1)
	if out, err = rejoin(warn, config.CephHealthWarn, 0); err != nil || !strings.Contains(out, "HEALTH_WARN Degraded") {
		t.Errorf("a rejoin accepting HEALTH_WARN: %v\n%s", err, out)
	}
	if out, err = rejoin(warn, config.CephHealthOK, 0); err == nil || !strings.Contains(out, "Ceph is not healthy (HEALTH_WARN") {
		t.Errorf("a rejoin waiting for HEALTH_OK past its deadline: %v\n%s", err, out)
	}
	// A node the CephCluster does not list (a worker added before the
	// CephCluster lists it) waits for nothing.
	r.apply(cephClusterOf(other))
	if out, err = rejoin(never, config.CephHealthOK, 0); err != nil || !strings.Contains(out, "not a storage node") {
		t.Errorf("a rejoin of a node the CephCluster does not list: %v\n%s", err, out)
	}
}

// TestOSDPauseAndResumeOnARealAPIServer runs a resized worker's Ceph
// scripts (Settle.Pausing before its drain, Settle.Resumed once it is back
// and uncordoned) against a real kube-apiserver with kwok's nodes and a
// stand-in for the ceph CLI (cephStandIn):
//   - without a CephCluster both do nothing and call no ceph;
//   - the pause waits for `ceph osd ok-to-stop` of the node's OSDs only,
//     then sets them noout; when Ceph never agrees it fails naming the
//     node and sets nothing;
//   - the resume fails, leaving noout, until an OSD of the node is up,
//     then removes noout and waits for Ceph's health.
//
// What it leaves unproven: Ceph's own answers, and that its OSDs come back
// by themselves after a real restart.
func TestOSDPauseAndResumeOnARealAPIServer(t *testing.T) {
	r := newRookAPI(t, 2)
	node, other := r.c.Nodes[0], r.c.Nodes[1]
	pause := func(ceph string, timeout int) (string, error) {
		return r.run(osdPausingScriptWith(r.kubectl, ceph, node, timeout, 0))
	}
	resume := func(ceph string, timeout int) (string, error) {
		return r.run(osdResumedScriptWith(r.kubectl, ceph, node, config.CephHealthOK, timeout, 0))
	}

	ceph, log := cephStandIn(t, 0)
	if out, err := pause(ceph, 60); err != nil || !strings.Contains(out, "no CephCluster: no OSD to pause") {
		t.Fatalf("pause without a CephCluster: %v\n%s", err, out)
	}
	if out, err := resume(ceph, 60); err != nil || !strings.Contains(out, "no CephCluster yet") {
		t.Fatalf("resume without a CephCluster: %v\n%s", err, out)
	}
	if l := cephCalls(log); l != "" {
		t.Fatalf("ceph was called without a CephCluster:\n%s", l)
	}

	r.installRook()
	r.apply(cephClusterOf(node, other))
	r.apply(osdDeployment(0, node))
	r.apply(osdDeployment(1, other))

	never, neverLog := cephStandIn(t, -1)
	if out, err := pause(never, 0); err == nil || !strings.Contains(out, node+": stopping OSD(s) osd.0 would leave placement groups without enough copies") ||
		!strings.Contains(out, "its machine is not restarted") {
		t.Errorf("a pause Ceph refuses: %v\n%s", err, out)
	}
	if l := cephCalls(neverLog); strings.Contains(l, "noout") {
		t.Errorf("set noout although Ceph refused:\n%s", l)
	}

	ceph, log = cephStandIn(t, 1)
	out, err := pause(ceph, 60)
	if err != nil || !strings.Contains(out, "OSD(s) osd.0 set noout") {
		t.Fatalf("pause: %v\n%s", err, out)
	}
	if l, want := cephCalls(log), "osd ok-to-stop osd.0\npg stat\nosd ok-to-stop osd.0\nosd add-noout osd.0\n"; l != want {
		t.Errorf("ceph calls:\n%s\nwant:\n%s", l, want)
	}

	// Back, but its OSD is not up yet (its pod not running again).
	if _, err := r.c.KubectlContext(r.ctx, nil, "-n", RookNamespace, "scale", "deployment", "rook-ceph-osd-0", "--replicas=0"); err != nil {
		t.Fatal(err)
	}
	ceph, log = cephStandIn(t, 0)
	out, err = resume(ceph, 0)
	if err == nil || !strings.Contains(out, node+": no OSD of it is up") || !strings.Contains(out, "it stays noout") {
		t.Errorf("a resume with no OSD up: %v\n%s", err, out)
	}
	if l := cephCalls(log); strings.Contains(l, "rm-noout") {
		t.Errorf("removed noout before its OSD was up:\n%s", l)
	}
	if _, err := r.c.KubectlContext(r.ctx, nil, "-n", RookNamespace, "scale", "deployment", "rook-ceph-osd-0", "--replicas=1"); err != nil {
		t.Fatal(err)
	}
	if out, err = resume(ceph, 60); err != nil || !strings.Contains(out, "noout removed") || !strings.Contains(out, "Ceph healthy (HEALTH_OK)") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if l, want := cephCalls(log), "osd rm-noout osd.0\nhealth\n"; l != want {
		t.Errorf("ceph calls:\n%s\nwant:\n%s", l, want)
	}
}
