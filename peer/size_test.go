package peer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"500MB", 500e6},
		{"500mb", 500e6},
		{"2GiB", 2 << 30},
		{"1.5 GB", 1.5e9},
		{"0.1GB", 1e8},
		{"64KiB", 64 << 10},
		{"1k", 1000},
		{"3T", 3e12},
		{"10B", 10},
		{" 7 ", 7},
	}
	for _, tc := range cases {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "-5", "MB", "5XB", "1e3", "1.2.3", "9999999999TiB", "five"} {
		if got, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", bad, got)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.50 KiB", 20 << 20: "20.0 MiB", 3 << 40: "3.00 TiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestByteSizeJSON(t *testing.T) {
	for n, want := range map[ByteSize]string{0: `"0"`, 2 << 30: `"2GiB"`, 500e6: `"500MB"`, 1234567: `"1234567"`} {
		b, err := json.Marshal(n)
		if err != nil || string(b) != want {
			t.Errorf("marshal %d = %s, %v; want %s", n, b, err, want)
		}
		var back ByteSize
		if err := json.Unmarshal(b, &back); err != nil || back != n {
			t.Errorf("unmarshal %s = %d, %v", b, back, err)
		}
	}
	var b ByteSize
	if err := json.Unmarshal([]byte(`1000`), &b); err != nil || b != 1000 {
		t.Errorf("a plain number: %d, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`"lots"`), &b); err == nil {
		t.Error("accepted \"lots\"")
	}
}

// The uplink setting is a size or "auto", on the command line and in
// config.json alike.
func TestUplinkSize(t *testing.T) {
	for in, want := range map[string]int64{"auto": UplinkAuto, "10KB": 10_000, "0": 0} {
		if got, err := ParseUplink(in); err != nil || got != want {
			t.Errorf("ParseUplink(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for u, want := range map[UplinkSize]string{UplinkAuto: `"auto"`, 10_000: `"10KB"`} {
		b, err := json.Marshal(u)
		if err != nil || string(b) != want {
			t.Errorf("marshal %d = %s, %v; want %s", u, b, err, want)
		}
		var back UplinkSize
		if err := json.Unmarshal(b, &back); err != nil || back != u {
			t.Errorf("unmarshal %s = %d, %v", b, back, err)
		}
	}
	var u UplinkSize
	if err := json.Unmarshal([]byte(`"often"`), &u); err == nil {
		t.Error(`accepted "often"`)
	}
}

// An uplink paced so slowly that its largest block outlasts the receiver's
// patience is refused wherever it is set, not left to fail every put.
func TestUplinkBelowTheFloorIsRefused(t *testing.T) {
	// The floor itself works: its paced rate is the slowest sender a
	// receiver waits for.
	if got := bulkShare * float64(MinUplink); got < slowestSender {
		t.Fatalf("MinUplink paces at %.0f B/s, below slowestSender (%d)", got, slowestSender)
	}
	rc, cfg := DefaultRepoConfig(), DefaultConfig()
	for _, c := range []int64{MinUplink, 0, UplinkAuto, 10_000} {
		if _, err := ParseUplink(fmt.Sprint(c)); c != UplinkAuto && err != nil {
			t.Errorf("ParseUplink(%d): %v", c, err)
		}
		rc.Uplink, cfg.Uplink = UplinkSize(c), c
		if err := rc.Validate(); err != nil {
			t.Errorf("repo config, uplink %d: %v", c, err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("node config, uplink %d: %v", c, err)
		}
	}
	for _, c := range []int64{MinUplink - 1, 1, -2} {
		if _, err := ParseUplink(fmt.Sprint(c)); c > 0 && (err == nil || !strings.Contains(err.Error(), "too slow")) {
			t.Errorf("ParseUplink(%d): err = %v, want too slow", c, err)
		}
		rc.Uplink, cfg.Uplink = UplinkSize(c), c
		if err := rc.Validate(); err == nil || !strings.HasPrefix(err.Error(), "uplink ") {
			t.Errorf("repo config, uplink %d: err = %v", c, err)
		}
		if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), "uplink ") {
			t.Errorf("node config, uplink %d: err = %v", c, err)
		}
	}
}

func TestRepoConfigStorageMax(t *testing.T) {
	dir := shortDir(t)
	cfg := `{"version":1,"listen":[],"bootstrap":[],"capacity":2,"lookup":"recursive","storage_max":"2GiB"}`
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if got := r.Config().StorageMax; got != 2<<30 {
		t.Errorf("storage_max = %d, want 2 GiB", got)
	}
	// A repo made before storage_max existed has no limit.
	dir = shortDir(t)
	cfg = `{"version":1,"listen":[],"bootstrap":[],"capacity":2,"lookup":"recursive"}`
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err = OpenRepo(dir); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if got := r.Config().StorageMax; got != 0 {
		t.Errorf("storage_max = %d, want 0", got)
	}
	c := DefaultRepoConfig()
	c.StorageMax = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "storage_max") {
		t.Errorf("negative storage_max: err = %v", err)
	}
}
