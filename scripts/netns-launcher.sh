#!/bin/sh
# mpirun's remote-start agent for scripts/check-two-hosts.sh, used instead of ssh (`--mca plm_rsh_agent`):
# mpirun calls it as `AGENT HOST COMMAND...`, and it runs COMMAND in the network namespace that plays HOST,
# under that host's name, as ssh would run it in a shell on HOST.
host=$1
shift
case "$host" in
    10.77.0.1) ns=paella-host-a ;;
    10.77.0.2) ns=paella-host-b ;;
    *) echo "netns-launcher.sh: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"
