package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// The simulator at a tiny scale: every report's figures must be
// consistent with each other and with the profile. The real runs are
// programs (REPORT.md), not tests.

func TestLookupsTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := lookupsFlags{common: common{peers: 16, profile: "wan", seed: 3, vnodes: 2, proximity: true, backoff: 8},
		lookups: 40, concurrency: 8, rtts: 20, rounds: 2, phaseWarmup: 2, warmup: 1, kad: true, kadRefreshSample: 2, traceCalls: true}
	var out strings.Builder
	res, err := runLookups(ctx, f, &out)
	if err != nil {
		t.Fatal(err)
	}
	// -trace-calls: a row per batch in the calls' table and the lookups'.
	for _, b := range []string{"recursive 1", "recursive 2", "iterative 1", "iterative 2"} {
		if n := strings.Count(out.String(), "| "+b+" |"); n != 2 {
			t.Errorf("batch %q in %d of the 2 call-trace tables", b, n)
		}
	}
	// wan: every pair's round trip is 20–200 ms (plus the simulator's own
	// delays).
	if res.RTT.P50 < 20*time.Millisecond || res.RTT.P50 > 300*time.Millisecond {
		t.Errorf("median direct round trip %v, outside the wan profile's 20–200 ms", res.RTT.P50)
	}
	if len(res.Chord) != 4 {
		t.Fatalf("%d chordshare batches, want 4 (2 modes × 2 passes)", len(res.Chord))
	}
	for _, l := range res.Chord {
		if l.Lookups != f.lookups || l.Errors != 0 || l.Right != l.Lookups {
			t.Errorf("chordshare %s: %d lookups, %d errors, %d right; want %d, 0, all", l.Mode, l.Lookups, l.Errors, l.Right, f.lookups)
		}
		if l.Latency.P50 > l.Latency.P99 || l.P99Hops > l.MaxHops {
			t.Errorf("chordshare %s: percentiles out of order: %+v", l.Mode, l)
		}
	}
	// On 16 peers many askers answer from their own state (a floor of 0),
	// not all of them.
	if res.IterFloor.N != f.lookups || res.IterFloor.P99 <= 0 {
		t.Errorf("iterative floor %+v: want one per lookup (%d), above zero at p99", res.IterFloor, f.lookups)
	}
	if res.Maint.Calls <= 0 || res.Maint.PayloadBytes <= 0 || res.Maint.WireBytes < res.Maint.PayloadBytes {
		t.Errorf("maintenance %+v: want calls and bytes > 0, wire >= payload", res.Maint)
	}
	if len(res.Kad) != 4 {
		t.Fatalf("%d kad-dht batches, want 4", len(res.Kad))
	}
	for _, k := range res.Kad {
		if k.Lookups != f.lookups || k.Errors != 0 || k.Right != k.Lookups {
			t.Errorf("kad-dht %s pass %d: %d lookups, %d errors, %d right (%v); want %d, 0, all", k.Op, k.Pass, k.Lookups, k.Errors, k.Right, k.FirstError, f.lookups)
		}
	}
	if res.KadMaint.BytesPerRefresh <= 0 || res.KadMaint.RoutingTableMean < 10 {
		t.Errorf("kad-dht maintenance %+v: want a refresh to cost bytes and tables of most of the 15 others", res.KadMaint)
	}
}

func TestChurnTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := churnFlags{common: common{peers: 16, profile: "wan", seed: 5, vnodes: 1, proximity: true, backoff: 8},
		scale: 20, duration: 2 * time.Minute, session: 90 * time.Second, down: 20 * time.Second, quiet: 0.3,
		lookupRate: 10, putRate: 4, blockSize: 1024, mode: "iterative"}
	rep, err := runChurn(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.write(&b, f)
	t.Log("\n" + b.String())
	if rep.Crashes == 0 || rep.Lookups == 0 || rep.Puts == 0 {
		t.Errorf("no churn or no work: %d crashes, %d lookups, %d puts", rep.Crashes, rep.Lookups, rep.Puts)
	}
	if rep.Joins > rep.Crashes || rep.LiveMin > rep.LiveMax || rep.LiveMax > f.peers ||
		rep.LiveMean < float64(rep.LiveMin) || rep.LiveMean > float64(rep.LiveMax) {
		t.Errorf("peer counts inconsistent: %d crashes, %d joins, live %d / %.1f / %d of %d", rep.Crashes, rep.Joins, rep.LiveMin, rep.LiveMean, rep.LiveMax, f.peers)
	}
	if rep.Right > rep.Lookups-rep.LookupErrors || rep.FirstLive > rep.Lookups-rep.LookupErrors || rep.Right > rep.FirstLive {
		t.Errorf("lookups: %d, %d errors, %d right, %d first live right", rep.Lookups, rep.LookupErrors, rep.Right, rep.FirstLive)
	}
	if rep.Acked > rep.Puts || rep.WithLiveCopy > rep.Acked || rep.Retrievable > rep.WithLiveCopy {
		t.Errorf("blocks: %d put, %d acked, %d with a live copy, %d retrievable", rep.Puts, rep.Acked, rep.WithLiveCopy, rep.Retrievable)
	}
	if rep.MaintCalls <= 0 || rep.MaintBytes <= 0 {
		t.Errorf("maintenance %.2f calls, %.0f B per peer and second: want both > 0", rep.MaintCalls, rep.MaintBytes)
	}
}

func TestFetchTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := fetchFlags{common: common{peers: 8, profile: "wan", seed: 2, vnodes: 2, proximity: true, backoff: 8}, size: 1 << 20, ranks: "1"}
	res, err := runFetch(ctx, f, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Err != nil || res[0].Rate <= 0 || res[0].HolderCount < 3 || res[0].HolderCount > 7 {
		t.Fatalf("fetch: %+v; want one fetch of the right bytes, from 3–7 holders", res)
	}
}

func TestBalance(t *testing.T) {
	rows, err := balance(500, "heterogeneous", 1, 20, 1024, 250e3, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Storing+r.Clients != 500 || r.RawP99 < 1 || r.RawMax < r.RawP99 || r.FairMax < r.FairP99 {
			t.Errorf("%s: inconsistent row %+v", r.Scheme, r)
		}
		if strings.HasPrefix(r.Scheme, "by capacity: 20 per 250") && !strings.Contains(r.Scheme, "placed") && (r.FairMean < 0.95 || r.FairMean > 1.05) {
			// No peer reaches the cap: every peer's vnodes follow its
			// capacity, so keys per unit of capacity average about 1
			// (with random positions; placed ones skew it a little).
			t.Errorf("%s: fair mean %.2f, want about 1", r.Scheme, r.FairMean)
		}
	}
	// One vnode per peer: arcs are about exponential, p99 ≈ 4.6 × mean.
	if r := rows[0]; r.Scheme != "1 each" || r.RawP99 < 3 || r.RawP99 > 6.5 {
		t.Errorf("1 vnode each: raw p99/mean %.2f, want about 4.6", r.RawP99)
	}
}

func TestRunUsage(t *testing.T) {
	if err := run(context.Background(), []string{"nope"}, io.Discard); err == nil {
		t.Fatal("an unknown subcommand was accepted")
	}
	if err := run(context.Background(), []string{"lookups", "-capacity-vnodes", "x"}, io.Discard); err == nil {
		t.Fatal("a bad -capacity-vnodes was accepted")
	}
	// The context only bounds the run should -concurrency 0 be taken.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := run(ctx, []string{"lookups", "-n", "20", "-kad=false", "-concurrency", "0"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-concurrency") {
		t.Fatalf("lookups -concurrency 0: %v; want it refused", err)
	}
}
