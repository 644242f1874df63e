#!/usr/bin/env bash
# A real 3-node swarmlet cluster on 127.0.0.1-3: init, join, a service scaled,
# answered by DNS and reached through a published port, then the leader killed and
# replaced. Cleans up after itself unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$PWD/bin
DIR=$(mktemp -d /tmp/swarmlet-demo.XXXXXX)
FLAGS="--engine process --lb userspace --dns-port 5353 --dns-upstream 127.0.0.1:1"
PIDS=()

cleanup() {
	if [ "${KEEP:-}" = 1 ]; then
		echo; echo "KEEP=1: cluster left running; data in $DIR. Stop it with: pkill -f 'swarmlet (init|join)'; pkill -f $BIN/whoami"
		return
	fi
	echo; echo "== cleaning up"
	for n in 1 2 3; do "$BIN/swarmlet" --host "unix://$DIR/n$n/swarmlet.sock" service rm web >/dev/null 2>&1 && break || true; done
	sleep 1
	kill "${PIDS[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	pkill -f "$BIN/whoami" 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT

sw() { local n=$1; shift; "$BIN/swarmlet" --host "unix://$DIR/n$n/swarmlet.sock" "$@"; }
wait_sock() { for _ in $(seq 100); do [ -S "$DIR/n$1/swarmlet.sock" ] && return; sleep 0.1; done; echo "node $1 did not start; see $DIR/n$1.log" >&2; exit 1; }
step() { echo; echo "== $*"; }

step "swarmlet init on 127.0.0.1"
mkdir -p "$DIR/n1" "$DIR/n2" "$DIR/n3"
"$BIN/swarmlet" init --advertise-addr 127.0.0.1 --data-dir "$DIR/n1" $FLAGS >"$DIR/n1.log" 2>&1 & PIDS+=($!)
wait_sock 1
MT=$(sw 1 join-token -q manager)
step "swarmlet join (managers) on 127.0.0.2 and 127.0.0.3"
"$BIN/swarmlet" join --token "$MT" --advertise-addr 127.0.0.2 --data-dir "$DIR/n2" $FLAGS 127.0.0.1 >"$DIR/n2.log" 2>&1 & PIDS+=($!)
"$BIN/swarmlet" join --token "$MT" --advertise-addr 127.0.0.3 --data-dir "$DIR/n3" $FLAGS 127.0.0.1 >"$DIR/n3.log" 2>&1 & PIDS+=($!)
wait_sock 2; wait_sock 3
for _ in $(seq 50); do [ "$(sw 1 info --format json | grep -o '"managers_reachable": [0-9]*' | grep -o '[0-9]*$')" = 3 ] && break; sleep 0.2; done
sw 2 node ls

step "service create --name web --replicas 5 -p 8080:80 (process engine: IMAGE is a program)"
sw 1 service create --name web --replicas 5 -p 8080:80 "$BIN/whoami"
sw 1 service scale web=7
sw 3 service ps web

step "DNS on any node: web, tasks.web, SRV"
if command -v dig >/dev/null; then
	echo "web       -> $(dig @127.0.0.2 -p 5353 +short web | tr '\n' ' ')"
	echo "tasks.web -> $(dig @127.0.0.3 -p 5353 +short tasks.web | tr '\n' ' ')"
	dig @127.0.0.1 -p 5353 +short tasks.web SRV | head -3
else
	echo "(dig not installed: apt-get install dnsutils)"
fi

step "requests through the published port 8080 on every node (routing mesh)"
for ip in 127.0.0.1 127.0.0.2 127.0.0.3; do
	for _ in 1 2; do printf '%s:8080 -> ' $ip; curl -s --max-time 2 "http://$ip:8080/" || echo "(no answer)"; done
done

step "secure by default: the TCP API answers only clients with a certificate of the cluster"
if command -v curl >/dev/null; then
	curl -s --max-time 2 http://127.0.0.1:4240/v1/nodes >/dev/null && echo "plain HTTP answered?!" || echo "plain HTTP on 127.0.0.1:4240: refused"
	curl -sk --max-time 2 https://127.0.0.1:4240/v1/nodes >/dev/null && echo "TLS without a certificate answered?!" || echo "TLS without a client certificate: refused in the handshake"
fi
sw 1 ca issue-client --out "$DIR/operator" --name demo >/dev/null
echo "with an operator certificate from 'swarmlet ca issue-client':"
SWARMLET_CERT_PATH="$DIR/operator" "$BIN/swarmlet" --host tcp://127.0.0.2:4240 --tlsverify node ls

step "kill -9 the leader"
LEADER=$(sw 1 node ls --format json | tr -d ' \n' | grep -o '"addr":"[0-9.]*","role":"manager","status":"ready","availability":"[a-z]*","leader":true' | grep -o '127\.0\.0\.[0-9]')
N=${LEADER##*.}
T0=$(date +%s%N)
kill -9 "${PIDS[$((N-1))]}"
OTHER=$(( N % 3 + 1 ))
until sw $OTHER service scale web=6 --detach >/dev/null 2>&1; do sleep 0.05; done
T1=$(date +%s%N)
echo "new leader accepting writes after $(( (T1-T0)/1000000 )) ms"
until sw $OTHER node ls | grep "$LEADER " | grep -q down; do sleep 0.1; done
T2=$(date +%s%N)
echo "dead node marked down after $(( (T2-T0)/1000000 )) ms"
sw $OTHER node ls
sw $OTHER service scale web=6
sw $OTHER service ls

# Containers: a 2-host bed (scenarios/bed: two network namespaces on a private
# bridge, a dockerd each; the machine's own network is never touched), a
# swarmlet node in each host, and a client container calling web by name.
if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null || ! command -v containerd >/dev/null || ! command -v nsenter >/dev/null || ! docker info >/dev/null 2>&1; then
	step "containers calling a service by name: skipped (needs root, docker, dockerd, containerd and nsenter)"
	exit 0
fi
step "containers calling a service by name, on a 2-host bed (a dockerd per host)"
bash cmd/whoami/build.sh >/dev/null
go build -o "$BIN/swlbed" ./scenarios/bed/cmd/swlbed
"$BIN/swlbed" up -n 2 -load swarmlet/whoami:test >"$DIR/bed.out" 2>&1 & BEDPID=$!
for _ in $(seq 300); do grep -q "^Up until" "$DIR/bed.out" && break; kill -0 $BEDPID 2>/dev/null || { cat "$DIR/bed.out"; exit 1; }; sleep 0.1; done
bedcleanup() { kill -TERM $BEDPID 2>/dev/null; wait $BEDPID 2>/dev/null || true; }
trap 'bedcleanup; cleanup' EXIT
NS=($(awk '/^h[0-9] /{print $4}' "$DIR/bed.out")); ADDR=($(awk '/^h[0-9] /{print $2}' "$DIR/bed.out"))
DH=($(awk '/export DOCKER_HOST=/{sub("DOCKER_HOST=","",$2); print $2}' "$DIR/bed.out"))
onhost() { local i=$1; shift; nsenter --net=/run/netns/${NS[$i]} env DOCKER_HOST=${DH[$i]} "$@"; }
bsw() { "$BIN/swarmlet" --host "unix://$DIR/b$1/swarmlet.sock" "${@:2}"; }
BFLAGS="--engine docker --lb nftables --dns-upstream 127.0.0.1:1"
mkdir -p "$DIR/b1" "$DIR/b2"
onhost 0 "$BIN/swarmlet" init --advertise-addr ${ADDR[0]} --hostname bed1 --data-dir "$DIR/b1" $BFLAGS >"$DIR/b1.log" 2>&1 &
for _ in $(seq 100); do [ -S "$DIR/b1/swarmlet.sock" ] && break; sleep 0.1; done
onhost 1 "$BIN/swarmlet" join --token "$(bsw 1 join-token -q worker)" --advertise-addr ${ADDR[1]} --hostname bed2 --data-dir "$DIR/b2" $BFLAGS ${ADDR[0]} >"$DIR/b2.log" 2>&1 &
for _ in $(seq 100); do [ "$(bsw 1 node ls -q 2>/dev/null | wc -l)" = 2 ] && break; sleep 0.1; done
bsw 1 node ls
bsw 1 service create --name web --replicas 2 swarmlet/whoami:test
bsw 1 service create --name client --constraint node.hostname==bed1 swarmlet/whoami:test >/dev/null
bsw 1 service ls
CTR=$(docker -H ${DH[0]} ps -q --filter label=swarmlet.service=client)
echo "inside the client container on bed1 (its resolver is the node's DNS, through Docker's embedded one):"
echo "  web       -> $(docker -H ${DH[0]} exec $CTR /whoami resolve web | tr '\n' ' ')(the VIP)"
echo "  tasks.web -> $(docker -H ${DH[0]} exec $CTR /whoami resolve tasks.web | tr '\n' ' ')(container addresses on both hosts)"
echo "  GET http://web/, 4 times:"
# The tasks run once create returns; each node's balancer follows a moment later.
for _ in $(seq 50); do docker -H ${DH[0]} exec $CTR /whoami get http://web/ >/dev/null 2>&1 && break; sleep 0.1; done
docker -H ${DH[0]} exec $CTR /whoami get http://web/ 4 | sed 's/^/    /'
