#!/usr/bin/env bash
# demo.sh [N] — start N peers (default 2) on loopback as separate daemons,
# join them into one Chord ring, show `peer ring` of each, then stop them.
#
# Everything lives in a temp dir that is removed at the end; nothing touches
# ~/.chordshare. Needs only Go.
set -euo pipefail

n=${1:-2}
if ! [[ $n =~ ^[0-9]+$ ]] || (( n < 1 || n > 64 )); then
	echo "usage: testnet/demo.sh [N]   (1 <= N <= 64 peers)" >&2
	exit 2
fi

cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/chordshare-demo.XXXXXX)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

echo "building peer ..." >&2
peer=$dir/peer
go build -o "$peer" ./cmd/peer

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			echo "demo: timed out waiting for $what" >&2
			for i in $(seq 1 "$n"); do
				[[ -f $dir/$i.log ]] && { echo "--- peer $i log:" >&2; cat "$dir/$i.log" >&2; }
			done
			exit 1
		fi
		sleep 0.2
	done
}

boot=()
for i in $(seq 1 "$n"); do
	"$peer" daemon --repo "$dir/$i" --listen /ip4/127.0.0.1/tcp/0 --capacity 1 "${boot[@]}" >"$dir/$i.log" 2>&1 &
	pids+=($!)
	wait_for "peer $i to start" 30 "$peer" status --repo "$dir/$i"
	if ((i == 1)); then
		# Every later peer joins through the first one's TCP address.
		addr=$(grep -m1 '^listening on /ip4/127.0.0.1/tcp/' "$dir/1.log" | cut -d' ' -f3)
		boot=(--bootstrap "$addr")
	fi
	echo "peer $i: $("$peer" status --repo "$dir/$i" --json | grep -m1 '"id"' | cut -d'"' -f4)" >&2
done

# Settled when every peer knows its predecessor and none is its own
# successor (with N > 1).
settled() {
	local out
	for i in $(seq 1 "$n"); do
		out=$("$peer" ring --repo "$dir/$i") || return 1
		if grep -qE 'successor 1 +self/|predecessor +\(unknown\)' <<<"$out"; then return 1; fi
	done
}
if ((n > 1)); then
	echo "waiting for the ring to stabilize ..." >&2
	wait_for "the ring to stabilize" 60 settled
fi

for i in $(seq 1 "$n"); do
	echo
	echo "\$ peer ring --repo $dir/$i"
	"$peer" ring --repo "$dir/$i"
done
