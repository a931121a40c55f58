#!/usr/bin/env bash
# demo.sh [N] — start N peers (default 3) on loopback as separate daemons
# with testnet.sh, show `peer ring` of each once they form one Chord ring,
# share a random 4 MiB file from peer 1 and fetch it on peer N (checking
# that the bytes are identical), then stop them.
#
# Everything lives in a temp dir that is removed at the end; nothing touches
# ~/.chordshare. Needs only Go.
set -euo pipefail

n=${1:-3}
if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 64)); then
	echo "usage: testnet/demo.sh [N]   (1 <= N <= 64 peers)" >&2
	exit 2
fi

tn=$(cd "$(dirname "$0")" && pwd)/testnet.sh
TESTNET_DIR=$(mktemp -d /tmp/chordshare-demo.XXXXXX)
# The daemons stop when this script ends, even if it is killed.
export TESTNET_DIR TESTNET_OWNER=$$
cleanup() {
	"$tn" down >/dev/null 2>&1 || true
	rm -rf "$TESTNET_DIR"
}
trap cleanup EXIT

"$tn" up "$n" --capacity 4
for i in $(seq 1 "$n"); do
	echo
	echo "\$ testnet/testnet.sh peer $i ring"
	"$tn" peer "$i" ring
done

# A share needs W = 2 replicas to acknowledge every block.
if ((n < 2)); then
	echo >&2
	echo "one peer: nothing to share with (a share needs 2 replicas)" >&2
	exit 0
fi
echo
head -c $((4 << 20)) /dev/urandom >"$TESTNET_DIR/file"
echo "\$ testnet/testnet.sh peer 1 share $TESTNET_DIR/file"
cid=$("$tn" peer 1 share "$TESTNET_DIR/file")
echo "$cid"
echo "\$ testnet/testnet.sh peer $n fetch $cid -o $TESTNET_DIR/fetched"
"$tn" peer "$n" fetch "$cid" -o "$TESTNET_DIR/fetched"
if cmp -s "$TESTNET_DIR/file" "$TESTNET_DIR/fetched"; then
	echo "peer $n fetched the 4 MiB peer 1 shared: identical"
else
	echo "demo: the fetched file differs from the shared one" >&2
	exit 1
fi
