#!/usr/bin/env bash
# testnet.sh — a local testnet of real `peer` daemons on loopback.
#
#   testnet/testnet.sh up N [--profile lan|wan|heterogeneous] [--seed S] [--capacity C] [--uplink|--uplink-auto]
#   testnet/testnet.sh peer I ARGS...      run `peer ARGS...` against node I
#   testnet/testnet.sh kill I              SIGKILL node I (a crash)
#   testnet/testnet.sh stop I              SIGTERM node I (a graceful leave; SIGKILL after 15 s)
#   testnet/testnet.sh start I             start node I again (same identity, address and blocks)
#   testnet/testnet.sh status [--json]     a table of the whole net
#   testnet/testnet.sh wait [--timeout D]  until the running nodes' ring has converged
#   testnet/testnet.sh churn [--duration D] [--interval T] [--seed S] [--max-down K] [--spare I,J] [--graceful]
#   testnet/testnet.sh down                stop every process of the testnet
#
# All state lives in $TESTNET_DIR (default ./.testnet): the binaries it
# builds, one repo and log per node, the shaper's files, pid files. Needs Go;
# the shaped profiles need Linux (every node has its own 127.0.0.x address).
#
# Every process runs under testnet/guard, which holds the testnet's lease
# ($TESTNET_DIR/lease): `down` removes it, and a guard whose lease is gone
# (or whose owner, $TESTNET_OWNER, a pid given at `up`, has exited) stops
# its process. On Linux the kernel also kills a daemon whose guard dies.
set -euo pipefail

readonly ROOT=$(cd "$(dirname "$0")/.." && pwd)
dir=${TESTNET_DIR:-./.testnet}
# Only up creates the dir; other commands say there is no testnet.
[[ ${1:-} == up ]] && mkdir -p "$dir"
if [[ -d $dir ]]; then
	dir=$(cd "$dir" && pwd)
elif [[ $dir != /* ]]; then
	dir=$PWD/$dir
fi
readonly dir
readonly bin=$dir/bin
readonly MARKER=$dir/.testnet-dir
readonly MAX_NODES=254

die() {
	echo "testnet: $*" >&2
	exit 1
}
usage() {
	sed -n '3,13p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
log() { echo "testnet: $*" >&2; }

# seconds D: a duration ("90", "90s", "5m", "1h") in whole seconds.
seconds() {
	local d=$1
	case $d in
	*h) echo $((${d%h} * 3600)) ;;
	*m) echo $((${d%m} * 60)) ;;
	*s) echo $((${d%s})) ;;
	*) echo $((d)) ;;
	esac 2>/dev/null || die "bad duration \"$d\" (want e.g. 90s, 5m)"
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# --- net config (written by up) ---------------------------------------------

n=0 profile=lan seed=1 capacity= uplink=
load_net() {
	[[ -f $dir/net ]] || die "no testnet in $dir (start one with: testnet/testnet.sh up N)"
	# shellcheck source=/dev/null
	source "$dir/net"
}
check_node() {
	is_uint "$1" && (($1 >= 1 && $1 <= n)) || die "no node \"$1\": nodes are 1..$n"
}
ndir() { echo "$dir/node$1"; }

# --- processes ----------------------------------------------------------------

# ours PID: PID runs and is one of this testnet's processes (its command line
# names this testnet's dir), not a stranger that got a recycled pid.
ours() {
	local pid=$1 args
	is_uint "$pid" || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r /proc/$pid/cmdline ]]; then
		args=$(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null) || return 1
	else
		args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
	fi
	[[ $args == *"$dir/"* || $args == *"$dir "* ]]
}
readpid() { [[ -f $1 ]] && cat "$1" 2>/dev/null || true; }

# node_pid I: the daemon's pid if it runs, else empty.
node_pid() {
	local pid
	pid=$(readpid "$(ndir "$1")/pid")
	ours "$pid" && echo "$pid" || true
}
node_up() { [[ -n $(node_pid "$1") ]]; }

# wait_gone SECONDS PID...: until none of the PIDs runs; fails on timeout.
wait_gone() {
	local deadline=$((SECONDS + $1)) pid alive
	shift
	while :; do
		alive=0
		for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || return 0
		((SECONDS >= deadline)) && return 1
		sleep 0.1
	done
}

# guarded NAME PIDFILE EXITFILE LOG COMMAND...: run COMMAND under guard in
# the background, in its own process group; prints the guard's pid.
guarded() {
	local name=$1 pidfile=$2 exitfile=$3 logf=$4
	shift 4
	rm -f "$pidfile" "$exitfile"
	"$bin/guard" -lease "$dir/lease" -pidfile "$pidfile" -exitfile "$exitfile" -- "$@" </dev/null >>"$logf" 2>&1 &
	local gpid=$!
	local deadline=$((SECONDS + 10))
	until [[ -s $pidfile ]]; do
		kill -0 "$gpid" 2>/dev/null || die "$name did not start: $(tail -n 3 "$logf")"
		((SECONDS < deadline)) || die "$name did not start within 10 s"
		sleep 0.05
	done
	echo "$gpid"
}

# --- nodes ----------------------------------------------------------------------

# node_listen I / node_announce I: the node's own and announced addresses.
# Shaped: from the shaper's links file; lan: 127.0.0.1 with the port the
# node got at its first start (port 0 until then).
node_listen() {
	if [[ -f $dir/links ]]; then
		awk -v i="$1" '$1 == i { split($2, a, ":"); print "/ip4/" a[1] "/tcp/" a[2] }' "$dir/links"
	else
		echo "/ip4/127.0.0.1/tcp/$(cat "$(ndir "$1")/port" 2>/dev/null || echo 0)"
	fi
}
node_announce() {
	[[ -f $dir/links ]] && awk -v i="$1" '$1 == i { split($3, a, ":"); print "/ip4/" a[1] "/tcp/" a[2] }' "$dir/links"
	true
}

# json_field NAME: the value of the first "NAME": in JSON on stdin (a string
# or a number).
json_field() { grep -m1 "\"$1\":" | sed -E 's/^[^:]*: *"?([^",]*)"?,?$/\1/'; }

# start_node I: start node I's daemon, joining through up to 3 running
# nodes (none: it starts a ring), and wait until its API answers.
start_node() {
	local i=$1 d j boot=() pid listen announce
	d=$(ndir "$i")
	mkdir -p "$d"
	for ((j = 1; j <= n && ${#boot[@]} < 6; j++)); do
		((j != i)) && node_up "$j" && [[ -s $(ndir "$j")/addr ]] && boot+=(--bootstrap "$(cat "$(ndir "$j")/addr")")
	done
	listen=$(node_listen "$i")
	announce=$(node_announce "$i")
	local args=(daemon --repo "$d/repo" --listen "$listen")
	[[ -n $announce ]] && args+=(--announce "$announce")
	[[ -n $capacity ]] && args+=(--capacity "$capacity")
	# --uplink: tell each daemon its drawn rate (bit/s in the links file),
	# so it paces its block uploads below it; --uplink-auto: each daemon
	# estimates it (--uplink auto).
	if [[ $uplink == auto ]]; then
		args+=(--uplink auto)
	elif [[ -n $uplink && -f $dir/links ]]; then
		local rate
		rate=$(awk -v i="$i" '$1 == i { printf "%d", $5 / 8 }' "$dir/links")
		((rate > 0)) && args+=(--uplink "$rate")
	fi
	echo "=== $(date -u +%FT%TZ) start: peer ${args[*]} ${boot[*]}" >>"$d/log"
	local gpid
	gpid=$(guarded "node $i" "$d/pid" "$d/exit" "$d/log" "$bin/peer" "${args[@]}" "${boot[@]}")
	echo "$gpid" >"$d/guard.pid"
	pid=$(cat "$d/pid")
	local deadline=$((SECONDS + 60))
	until PEER_REPO=$d/repo "$bin/peer" status >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			die "node $i exited ($(cat "$d/exit" 2>/dev/null)): $(grep -v '^===' "$d/log" | tail -n 3)"
		fi
		((SECONDS < deadline)) || die "node $i did not answer within 60 s (log: $d/log)"
		sleep 0.1
	done
	local st
	st=$(PEER_REPO=$d/repo "$bin/peer" status --json)
	json_field id <<<"$st" >"$d/id"
	grep -m1 -oE '"/ip4/[^"]+' <<<"$st" | tr -d '"' >"$d/addr"
	# lan: keep the port for restarts, so the others' address for it holds.
	[[ -f $dir/links ]] || sed -E 's#^/ip4/[^/]+/tcp/([0-9]+)/.*#\1#' "$d/addr" >"$d/port"
}

# stop_node I SIGNAL: signal node I's daemon and wait for it and its guard.
stop_node() {
	local i=$1 sig=$2 pid gpid d
	d=$(ndir "$i")
	pid=$(node_pid "$i")
	[[ -n $pid ]] || die "node $i is not running"
	gpid=$(readpid "$d/guard.pid")
	echo "=== $(date -u +%FT%TZ) $sig" >>"$d/log"
	kill -s "$sig" "$pid" 2>/dev/null || true
	if ! wait_gone 15 "$pid"; then
		log "node $i (pid $pid) still running 15 s after SIG$sig: SIGKILL"
		kill -s KILL "$pid" 2>/dev/null || true
		wait_gone 5 "$pid" || die "node $i (pid $pid) survived SIGKILL"
	fi
	# The guard exits as soon as its daemon has.
	ours "$gpid" && { wait_gone 5 "$gpid" || kill -s KILL "$gpid" 2>/dev/null || true; }
	true
}

# --- ring convergence -------------------------------------------------------------

# settled: every running node's vnodes have the next running positions on
# the circle as their successors (all of them, at most 16) and the one
# before as their predecessor (`peer ring` prints positions as 16 hex
# digits). Sets $unsettled to the first thing found wrong.
unsettled=
settled() {
	local i all want out pairs
	all=$(for ((i = 1; i <= n; i++)); do
		node_up "$i" || continue
		PEER_REPO=$(ndir "$i")/repo "$bin/peer" status --json | grep -oE '"[0-9a-f]{64}"' | tr -d '"' | cut -c1-16 ||
			{ echo "node $i does not answer"; return 1; }
	done | sort) || { unsettled=$all; return 1; }
	[[ -n $all ]] || return 0
	want=$(($(wc -l <<<"$all") - 1))
	((want > 16)) && want=16
	# "position sK position" for every position and its k-th successor,
	# "position p position" for its predecessor.
	pairs=$(awk -v w="$want" '{ p[NR - 1] = $0 } END {
		for (i = 0; i < NR; i++) {
			for (k = 1; k <= w; k++) print p[i], "s" k, p[(i + k) % NR]
			print p[i], "p", p[(i + NR - 1) % NR]
		} }' <<<"$all")
	for ((i = 1; i <= n; i++)); do
		node_up "$i" || continue
		out=$(PEER_REPO=$(ndir "$i")/repo "$bin/peer" ring 2>/dev/null) || { unsettled="node $i does not answer"; return 1; }
		# Fails, saying why, unless every vnode's lines are expected and complete.
		unsettled=$(awk -v w="$want" -v node="$i" 'NR == FNR { ok[$0] = 1; next }
			function fail(why) { if (!bad) print "node " node ", vnode " v ": " why; bad = 1 }
			function count() { if (v != "" && c != w) fail(c " successors, want " w) }
			/^vnode / { count(); v = substr($4, 1, 16); c = 0 }
			/^  predecessor / { if (!ok[v " p " $3]) fail("predecessor " $3 " is not the previous position") }
			/^  successor / { c++; if (!ok[v " s" $2 " " $4]) fail("successor " $2 " " $4 " is not the next running position") }
			END { count(); if (v == "") fail("no vnodes"); exit bad }' <(echo "$pairs") <(echo "$out")) || return 1
	done
	unsettled=
}

cmd_wait() {
	local timeout=90
	while (($#)); do
		case $1 in
		--timeout) timeout=$(seconds "${2:?--timeout needs a duration}"); shift 2 ;;
		*) usage ;;
		esac
	done
	load_net
	local start=$SECONDS deadline=$((SECONDS + timeout))
	until settled; do
		((SECONDS < deadline)) || die "the ring did not converge within ${timeout}s: $unsettled (logs in $dir/node*/log)"
		sleep 0.5
	done
	log "ring converged ($((SECONDS - start)) s)"
}

# --- commands -----------------------------------------------------------------------

cmd_up() {
	local count=${1:-}
	is_uint "$count" && ((count >= 1 && count <= MAX_NODES)) || die "up N: N must be 1..$MAX_NODES"
	shift
	local want_profile=lan want_seed=1 want_capacity= want_uplink=
	while (($#)); do
		case $1 in
		--profile) want_profile=${2:?--profile needs a name}; shift 2 ;;
		--seed) want_seed=${2:?--seed needs a number}; shift 2 ;;
		--capacity) want_capacity=${2:?--capacity needs a number}; shift 2 ;;
		--uplink) want_uplink=1; shift ;;
		--uplink-auto) want_uplink=auto; shift ;;
		*) usage ;;
		esac
	done
	case $want_profile in lan | wan | heterogeneous) ;; *) die "unknown profile \"$want_profile\" (lan, wan, heterogeneous)" ;; esac
	is_uint "$want_seed" || die "--seed: want a whole number"
	[[ -z $want_capacity ]] || is_uint "$want_capacity" || die "--capacity: want a whole number"

	if [[ -f $dir/net ]]; then
		load_net
		local i
		for ((i = 1; i <= n; i++)); do
			node_up "$i" && die "a testnet is running in $dir (stop it first: testnet/testnet.sh down)"
		done
	fi
	# A fresh net: clear what an earlier one left, but never a dir that is
	# not a testnet's.
	if [[ -n $(ls -A "$dir") && ! -f $MARKER ]]; then
		die "$dir is not empty and not a testnet dir: set TESTNET_DIR to another one"
	fi
	find "$dir" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
	touch "$MARKER"
	n=$count profile=$want_profile seed=$want_seed capacity=$want_capacity uplink=$want_uplink

	log "building peer, shaper and guard into $bin ..."
	(cd "$ROOT" && go build -o "$bin/" ./cmd/peer ./testnet/shaper ./testnet/guard) || die "go build failed"

	{
		echo "testnet $(date -u +%FT%TZ) $$ $RANDOM$RANDOM"
		[[ -n ${TESTNET_OWNER:-} ]] && echo "owner $TESTNET_OWNER"
	} >"$dir/lease"
	printf 'n=%d\nprofile=%s\nseed=%d\ncapacity=%s\nuplink=%s\n' "$n" "$profile" "$seed" "$capacity" "$uplink" >"$dir/net"

	if [[ $profile != lan ]]; then
		local gpid
		gpid=$(guarded shaper "$dir/shaper.pid" "$dir/shaper.exit" "$dir/shaper.log" \
			"$bin/shaper" -dir "$dir" -n "$n" -profile "$profile" -seed "$seed")
		echo "$gpid" >"$dir/shaper.guard.pid"
		local deadline=$((SECONDS + 10))
		until [[ -f $dir/links ]]; do
			kill -0 "$(cat "$dir/shaper.pid")" 2>/dev/null || die "the shaper exited: $(tail -n 3 "$dir/shaper.log")"
			((SECONDS < deadline)) || die "the shaper did not start within 10 s"
			sleep 0.05
		done
	fi
	local i
	for ((i = 1; i <= n; i++)); do
		start_node "$i"
		log "node $i up: $(cat "$(ndir "$i")/addr")"
	done
	if ((n > 1)); then
		cmd_wait --timeout "${TESTNET_WAIT:-120}"
	fi
	cmd_status
}

cmd_peer() {
	load_net
	check_node "${1:-}"
	local d
	d=$(ndir "$1")
	shift
	PEER_REPO=$d/repo exec "$bin/peer" "$@"
}

cmd_kill() {
	load_net
	check_node "${1:-}"
	stop_node "$1" KILL
	log "node $1 killed"
}

cmd_stop() {
	load_net
	check_node "${1:-}"
	stop_node "$1" TERM
	log "node $1 stopped"
}

cmd_start() {
	load_net
	check_node "${1:-}"
	node_up "$1" && die "node $1 is already running"
	[[ -f $dir/lease ]] || die "the testnet is down (start a new one with: testnet/testnet.sh up N)"
	if [[ $profile != lan ]] && ! ours "$(readpid "$dir/shaper.pid")"; then
		die "the shaper is not running"
	fi
	start_node "$1"
	log "node $1 up: $(cat "$(ndir "$1")/addr")"
}

cmd_down() {
	[[ -f $dir/net ]] || { log "no testnet in $dir"; return 0; }
	load_net
	local i pids=() groups=() term=() pid gpid
	for ((i = 0; i <= n; i++)); do
		if ((i == 0)); then
			pid=$(readpid "$dir/shaper.pid") gpid=$(readpid "$dir/shaper.guard.pid")
		else
			pid=$(readpid "$(ndir "$i")/pid") gpid=$(readpid "$(ndir "$i")/guard.pid")
		fi
		if ours "$gpid"; then
			groups+=("$gpid") pids+=("$gpid")
			ours "$pid" && pids+=("$pid")
		elif ours "$pid"; then
			pids+=("$pid") term+=("$pid")
		fi
	done
	# The guards stop their processes once the lease is gone; signal them
	# too (they pass SIGTERM on), so that down does not wait for their next
	# look at it.
	rm -f "$dir/lease"
	for pid in "${groups[@]}" "${term[@]}"; do kill -s TERM "$pid" 2>/dev/null || true; done
	if ((${#pids[@]})) && ! wait_gone 10 "${pids[@]}"; then
		log "still running 10 s after SIGTERM: SIGKILL"
		for gpid in "${groups[@]}"; do kill -s KILL -- "-$gpid" 2>/dev/null || true; done
		for pid in "${pids[@]}"; do kill -s KILL "$pid" 2>/dev/null || true; done
		wait_gone 5 "${pids[@]}" || die "processes survived SIGKILL: ${pids[*]}"
	fi
	rm -f "$dir"/node*/pid "$dir"/node*/guard.pid "$dir/shaper.pid" "$dir/shaper.guard.pid"
	log "down: ${#pids[@]} processes stopped; logs and repos stay in $dir"
}

cmd_status() {
	local asjson=0
	[[ ${1:-} == --json ]] && asjson=1
	load_net
	local i d pid st id addr blocks state link rtt rate
	((asjson)) && printf '{"dir": "%s", "profile": "%s", "seed": %s, "nodes": [' "$dir" "$profile" "$seed"
	((asjson)) || {
		echo "testnet in $dir: $n nodes, profile $profile (seed $seed)$(
			[[ $profile == lan ]] || { ours "$(readpid "$dir/shaper.pid")" && echo ", shaper pid $(cat "$dir/shaper.pid") ($(grep -m1 '^unattributed' "$dir/shaper.stats" 2>/dev/null || echo 'unattributed 0') connections)" || echo ", shaper NOT RUNNING"; }
		)"
		printf '%-4s %-9s %-8s %-14s %-26s %-9s %-12s %s\n' NODE STATE PID "PEER ID" ADDRESS RTT RATE BLOCKS
	}
	for ((i = 1; i <= n; i++)); do
		d=$(ndir "$i")
		pid=$(node_pid "$i")
		id=$(cat "$d/id" 2>/dev/null || echo -)
		addr=$(cat "$d/addr" 2>/dev/null || echo -)
		addr=${addr%%/p2p/*}
		blocks=-
		if [[ -n $pid ]]; then
			state=up
			if st=$(PEER_REPO=$d/repo timeout 5 "$bin/peer" status --json 2>/dev/null); then
				blocks=$(json_field blocks_stored <<<"$st")
			else
				state=busy
			fi
		else
			pid=-
			case $(cat "$d/exit" 2>/dev/null) in
			"killed by SIGKILL") state=killed ;;
			"exit 0") state=stopped ;;
			"") state=down ;;
			*) state="died:$(sed -E 's/^killed by SIG//; s/^exit /exit/' "$d/exit")" ;;
			esac
		fi
		rtt=- rate=-
		if [[ -f $dir/links ]]; then
			read -r rtt rate < <(awk -v i="$i" '$1 == i { print $4, $5 }' "$dir/links")
		fi
		if ((asjson)); then
			((i > 1)) && printf ', '
			printf '{"node": %d, "state": "%s", "pid": %s, "id": "%s", "addr": "%s", "rtt_ms": %s, "rate_bps": %s, "blocks_stored": %s}' \
				"$i" "$state" "${pid/-/null}" "$id" "$addr" "${rtt/-/null}" "${rate/-/null}" "${blocks/-/null}"
		else
			if [[ $rtt != - ]]; then
				rate=$(awk -v r="$rate" 'BEGIN { if (r == 0) print "unlimited"; else if (r >= 1e6) printf "%.1fMbit/s", r / 1e6; else printf "%.1fkbit/s", r / 1e3 }')
				rtt=$(awk -v r="$rtt" 'BEGIN { printf "%.1fms", r }')
			fi
			printf '%-4s %-9s %-8s %-14s %-26s %-9s %-12s %s\n' "$i" "$state" "$pid" "${id:0:6}..${id: -6}" "$addr" "$rtt" "$rate" "$blocks"
		fi
	done
	((asjson)) && echo ']}'
	true
}

cmd_churn() {
	local duration=60 interval=10 churn_seed=1 maxdown=1 sig=KILL spare=,
	while (($#)); do
		case $1 in
		--spare) spare+=${2:?--spare needs node numbers, e.g. 1,2},; shift 2 ;;
		--duration) duration=$(seconds "${2:?--duration needs a duration}"); shift 2 ;;
		--interval) interval=$(seconds "${2:?--interval needs a duration}"); shift 2 ;;
		--seed) churn_seed=${2:?--seed needs a number}; shift 2 ;;
		--max-down) maxdown=${2:?--max-down needs a number}; shift 2 ;;
		--graceful) sig=TERM; shift ;;
		*) usage ;;
		esac
	done
	is_uint "$churn_seed" && is_uint "$maxdown" || die "--seed and --max-down take whole numbers"
	((interval >= 1)) || die "--interval must be at least 1s"
	load_net
	[[ -f $dir/lease ]] || die "the testnet is down"
	local clog=$dir/churn.log
	say() {
		local line
		line="$(date -u +%T) churn: $*"
		echo "$line"
		echo "$line" >>"$clog"
	}
	RANDOM=$churn_seed
	local end=$((SECONDS + duration)) took=() i up down victim next
	[[ $spare == , ]] || say "sparing nodes ${spare:1:-1}"
	say "for ${duration}s, a step every ${interval}s, at most $maxdown down at once, seed $churn_seed, $([[ $sig == KILL ]] && echo SIGKILL || echo SIGTERM)"
	while ((SECONDS < end)); do
		next=$((SECONDS + interval))
		up=() down=()
		for ((i = 1; i <= n; i++)); do
			if node_up "$i"; then
				[[ $spare == *",$i,"* ]] || up+=("$i")
			else
				down+=("$i")
			fi
		done
		# Take one down while fewer than max-down are, else (or by a coin
		# flip when both are possible) bring one back.
		if ((${#down[@]} < maxdown && ${#up[@]} > 0)) && { ((${#down[@]} == 0)) || ((RANDOM % 2)); }; then
			victim=${up[RANDOM % ${#up[@]}]}
			stop_node "$victim" "$sig"
			took+=("$victim")
			say "node $victim $([[ $sig == KILL ]] && echo killed || echo stopped) (down now: $(echo ${down[*]} $victim))"
		elif ((${#down[@]})); then
			victim=${down[RANDOM % ${#down[@]}]}
			if (start_node "$victim") 2>>"$clog"; then
				say "node $victim restarted"
			else
				say "node $victim failed to restart (see $(ndir "$victim")/log)"
			fi
		fi
		while ((SECONDS < next && SECONDS < end)); do sleep 0.2; done
	done
	# Leave the net as churn found it: bring back every node churn took down.
	for i in $(printf '%s\n' "${took[@]}" | sort -un); do
		node_up "$i" && continue
		if (start_node "$i") 2>>"$clog"; then say "node $i restarted (end of churn)"; else say "node $i failed to restart"; fi
	done
	say "done"
}

main() {
	(($#)) || usage
	local cmd=$1
	shift
	case $cmd in
	up) cmd_up "$@" ;;
	peer) cmd_peer "$@" ;;
	kill) cmd_kill "$@" ;;
	stop) cmd_stop "$@" ;;
	start) cmd_start "$@" ;;
	down) cmd_down "$@" ;;
	status) cmd_status "$@" ;;
	wait) cmd_wait "$@" ;;
	churn) cmd_churn "$@" ;;
	help | -h | --help) usage ;;
	*) echo "testnet: unknown command \"$cmd\"" >&2; usage ;;
	esac
}
main "$@"
