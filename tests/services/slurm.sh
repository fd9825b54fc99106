#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine (Debian's slurm-wlm + munge), for the `slurm`
# tests and for trying the SLURM launcher before a real cluster. Run as root.
#   tests/services/slurm.sh start    install if missing, write the config, start munged, slurmctld
#                                    and slurmd, wait until the node is idle
#   tests/services/slurm.sh stop     stop the three daemons
#   tests/services/slurm.sh status   sinfo
# Exit codes: 0 ok; 3 cannot run here (not root, no apt-get, or a daemon did not come up).
set -euo pipefail

conf=/etc/slurm/slurm.conf
host=$(hostname)

fail() { echo "slurm.sh: $*" >&2; exit 3; }

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return
    command -v apt-get >/dev/null || fail "slurm-wlm and munge are not installed and there is no apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null \
        || fail "apt-get install slurm-wlm munge failed"
}

write_config() {
    local mem_mb
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    chown slurm:slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    # linuxproc/none plugins: no cgroups needed, so it runs in containers and VMs alike.
    cat > "$conf" <<CONF
ClusterName=local
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( mem_mb / $(nproc) ))
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
NodeName=$host CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
    [ "$(id -u)" = 0 ] || fail "must run as root (it writes $conf and starts daemons)"
    install
    write_config
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 60); do
        state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
        case "$state" in idle|mixed|allocated) echo "slurm: node $host $state"; return 0;; esac
        sleep 1
    done
    fail "the node did not come up (state '${state:-none}'); see /var/log/slurm/"
}

stop() {
    for daemon in slurmd slurmctld munged; do
        pkill -x "$daemon" || true
        for _ in $(seq 100); do pgrep -x "$daemon" >/dev/null || break; sleep 0.2; done
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
