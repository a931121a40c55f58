package peer

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"
)

// sizeUnits are the suffixes ParseSize reads: SI (powers of 1000) and IEC
// (powers of 1024), as `df -H` and `df -h` print them. A bare K, M, G or T
// is SI, as in most storage tools' configs.
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"k":   1e3,
	"kb":  1e3,
	"m":   1e6,
	"mb":  1e6,
	"g":   1e9,
	"gb":  1e9,
	"t":   1e12,
	"tb":  1e12,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// ParseSize reads a byte count: plain bytes ("1048576") or a number with a
// unit ("500MB", "2GiB", "1.5 GB"; units are case-insensitive). Fractions
// round down to whole bytes.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: want bytes or a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s)
	}
	// Exact arithmetic: "0.1GB" is 100000000 bytes, not a float's idea of it.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q: %q is not a number", s, num)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n.Int64(), nil
}

// FormatSize prints n bytes for a person: "0 B", "512 B", "1.5 MiB".
func FormatSize(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		f /= 1024
		if math.Abs(f) < 1024 || u == "PiB" {
			if math.Abs(f) < 10 {
				return fmt.Sprintf("%.2f %s", f, u)
			}
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	panic("unreachable")
}

// ByteSize is a size in a config file: written as a string with the largest
// unit that divides it exactly ("2GiB", "500MB", "0"), read from such a
// string (see ParseSize) or a plain JSON number of bytes.
type ByteSize int64

// String is the exact form MarshalJSON writes.
func (b ByteSize) String() string {
	n := int64(b)
	if n == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"TB", 1e12}, {"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"KB", 1e3}} {
		if n%u.mult == 0 {
			return fmt.Sprintf("%d%s", n/u.mult, u.name)
		}
	}
	return fmt.Sprintf("%d", n)
}

// MarshalJSON writes the size as a string, e.g. "2GiB".
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads a size string or a number of bytes.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		var n int64
		if err := json.Unmarshal(data, &n); err != nil {
			return fmt.Errorf("size %s: want a string such as \"2GiB\" or a number of bytes", data)
		}
		*b = ByteSize(n)
		return nil
	}
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	*b = ByteSize(n)
	return nil
}

// UplinkSize is a link's capacity per second, or UplinkAuto, written
// "auto": the node estimates it.
type UplinkSize int64

// ParseUplink reads "auto" or a size (ParseSize) a node can be paced to.
func ParseUplink(s string) (int64, error) {
	if strings.TrimSpace(s) == "auto" {
		return UplinkAuto, nil
	}
	n, err := ParseSize(s)
	if err != nil {
		return 0, err
	}
	return n, checkUplink(n)
}

// MarshalJSON writes "auto" or the size as ByteSize does.
func (u UplinkSize) MarshalJSON() ([]byte, error) {
	if u == UplinkAuto {
		return json.Marshal("auto")
	}
	return ByteSize(u).MarshalJSON()
}

// UnmarshalJSON reads "auto", a size string or a number of bytes.
func (u *UplinkSize) UnmarshalJSON(data []byte) error {
	var s string
	if json.Unmarshal(data, &s) == nil && strings.TrimSpace(s) == "auto" {
		*u = UplinkAuto
		return nil
	}
	var b ByteSize
	if err := b.UnmarshalJSON(data); err != nil {
		return err
	}
	// UplinkAuto is -1 inside the program only: a negative number here
	// is refused as it was before "auto" existed, not taken for auto.
	if b < 0 {
		return fmt.Errorf("uplink %d: want 0 (unpaced), \"auto\" or more", int64(b))
	}
	*u = UplinkSize(b)
	return nil
}
