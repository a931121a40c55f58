#!/usr/bin/env bash
# demo.sh [N] — start N peers (default 3) on loopback as separate daemons,
# join them into one Chord ring, show `peer ring` of each, share a random
# 4 MiB file from peer 1 and fetch it on peer N (checking that the bytes are
# identical), then stop them.
#
# Everything lives in a temp dir that is removed at the end; nothing touches
# ~/.chordshare. Needs only Go.
set -euo pipefail

n=${1:-3}
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
	"$peer" daemon --repo "$dir/$i" --listen /ip4/127.0.0.1/tcp/0 --capacity 4 "${boot[@]}" >"$dir/$i.log" 2>&1 &
	pids+=($!)
	wait_for "peer $i to start" 30 "$peer" status --repo "$dir/$i"
	if ((i == 1)); then
		# Every later peer joins through the first one's TCP address.
		addr=$(grep -m1 '^listening on /ip4/127.0.0.1/tcp/' "$dir/1.log" | cut -d' ' -f3)
		boot=(--bootstrap "$addr")
	fi
	echo "peer $i: $("$peer" status --repo "$dir/$i" --json | grep -m1 '"id"' | cut -d'"' -f4)" >&2
done

# Settled when every vnode's successor list is complete (all other vnodes,
# at most 16) and starts with the next position on the circle of all
# peers' positions (`peer ring` prints positions as 16 hex digits).
positions() {
	local i
	for i in $(seq 1 "$n"); do
		"$peer" status --repo "$dir/$i" --json | grep -oE '"[0-9a-f]{64}"' | tr -d '"' || return 1
	done | sort
}
settled() {
	local all pairs out i v s count want
	all=$(positions) || return 1
	want=$(($(wc -l <<<"$all") - 1))
	((want > 16)) && want=16
	pairs=$(awk 'NR == 1 { first = $0 } NR > 1 { print substr(prev, 1, 16), substr($0, 1, 16) } { prev = $0 }
		END { print substr(prev, 1, 16), substr(first, 1, 16) }' <<<"$all")
	for i in $(seq 1 "$n"); do
		out=$("$peer" ring --repo "$dir/$i") || return 1
		while read -r v s count; do
			grep -qx "$v $s" <<<"$pairs" && ((count == want)) || return 1
		done < <(awk '/^vnode / { if (v) print v, s, c; v = substr($4, 1, 16); c = 0 }
			/^  successor 1 / { s = $4 } /^  successor / { c++ } END { if (v) print v, s, c }' <<<"$out")
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

# A share needs W = 2 replicas to acknowledge every block.
if ((n < 2)); then
	echo >&2
	echo "one peer: nothing to share with (a share needs 2 replicas)" >&2
	exit 0
fi
echo
head -c $((4 << 20)) /dev/urandom >"$dir/file"
echo "\$ peer share --repo $dir/1 $dir/file"
cid=$("$peer" share --repo "$dir/1" "$dir/file")
echo "$cid"
echo "\$ peer fetch --repo $dir/$n $cid -o $dir/fetched"
"$peer" fetch --repo "$dir/$n" "$cid" -o "$dir/fetched"
if cmp -s "$dir/file" "$dir/fetched"; then
	echo "peer $n fetched the 4 MiB peer 1 shared: identical"
else
	echo "demo: the fetched file differs from the shared one" >&2
	exit 1
fi
