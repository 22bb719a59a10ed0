# The lab the profiling scripts of bench.d share (profile-local, profile-established,
# local-programs); sourced after scripts/lib.sh, as root. `profile_lab NAME` builds
# ppctl (release) into $PPCTL, brings up the namespaces $C | $LB | $B (NAME-$$-*, by
# scripts/lab.sh), pins under $PPCTL_PIN_ROOT, makes a cgroup $cg and a work directory
# $work, and starts the bench's nginx (bench.d/nginx.conf) in $B. Everything goes at
# exit, with what the caller lists in `pids` (stopped by PID) and the previous
# kernel.bpf_stats_enabled.
profile_lab() {
	swift build -c release --product ppctl >/dev/null
	PPCTL=$(swift build -c release --show-bin-path)/ppctl
	local lab="$1-$$"
	C="$lab-c" LB="$lab-lb" B="$lab-b"
	export PPCTL_PIN_ROOT="/sys/fs/bpf/ppctl-$lab"
	work=$(mktemp -d)
	local cgroot=/sys/fs/cgroup/unified; [ -e "$cgroot/cgroup.procs" ] || cgroot=/sys/fs/cgroup
	cg="$cgroot/ppctl-$lab"
	pids=()
	stats_before=$(sysctl -n kernel.bpf_stats_enabled)
	trap profile_lab_down EXIT
	scripts/lab.sh up "$C" "$LB" "$B"
	mkdir -p "$cg"
	sed "s|@WORK@|$work|g" scripts/bench.d/nginx.conf > "$work/nginx.conf"
	head -c 64 /dev/zero | tr '\0' 'x' > "$work/index.html"
	ip netns exec "$B" /usr/sbin/nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
}

profile_lab_down() {
	set +e
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
	"$PPCTL" --netns "$LB" detach >/dev/null 2>&1
	scripts/lab.sh down "$C" "$LB" "$B"
	rm -rf "$PPCTL_PIN_ROOT" "$work"
	rm -f "/run/ppctl/$(echo "$PPCTL_PIN_ROOT/$LB" | tr / _).lock"
	rmdir "$cg" 2>/dev/null
	sysctl -qw kernel.bpf_stats_enabled="$stats_before"
}
