#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the `slurm` tests and for trying the
# profile: munged, slurmctld and slurmd from Debian's packages (slurmctld slurmd munge
# slurm-client), this host as the only node with its real CPUs and memory and two fake GPUs.
#
# Idempotent: a running cluster with the same configuration is left alone; a changed one is
# restarted. Needs root (or passwordless sudo) because SLURM reads /etc/slurm/slurm.conf only:
# the executor plugin drops SLURM_CONF before its inner srun. Refuses to touch a slurm.conf it
# did not write, so it never reconfigures a real cluster.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # slurmd, munged for users without sbin on PATH

MARKER="# Written by segsweep tests/slurm_cluster.sh"
CONF_DIR=/etc/slurm
# Fake GPUs: one device file each, else slurmd counts a mismatch and drains the node.
GPU_FILES=/dev/null,/dev/zero
N_GPUS=2
# squeue forgets finished jobs after MinJobAge: the plugin needs ≥ 3 × its first status delay,
# the test reads the GPU requests of finished jobs with scontrol after the run.
MIN_JOB_AGE=3600

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "slurm_cluster: needs root or sudo" >&2; exit 2; }
    SUDO=(sudo -n)
fi
as_root() { "${SUDO[@]}" "$@"; }

log() { echo "slurm_cluster: $*" >&2; }

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    if ! as_root test -s /etc/munge/munge.key; then
        as_root mungekey --create --keyfile=/etc/munge/munge.key
    fi
    as_root chown munge:munge /etc/munge/munge.key
    as_root chmod 0400 /etc/munge/munge.key
    as_root install -d -o munge -g munge -m 0755 /run/munge
    as_root runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.2
    done
    log "munged did not come up"
    exit 1
}

node_line() {
    # slurmd -C reports this host as SLURM sees it: NodeName, CPUs, sockets, cores, RealMemory.
    local line
    line=$(slurmd -C | head -n 1)
    echo "$line NodeAddr=127.0.0.1 Gres=gpu:$N_GPUS State=UNKNOWN"
}

slurm_conf() {
    local host=$1
    cat <<EOF
$MARKER: a single-node test cluster.
ClusterName=segsweep
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
SlurmUser=slurm
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
$(node_line)
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

gres_conf() {
    echo "$MARKER."
    echo "Name=gpu File=$GPU_FILES"
}

node_state() {
    sinfo --noheader --node "$1" --format=%T 2>/dev/null | head -n 1
}

daemon_pid() {
    # The pid in a daemon's pid file, if that process is still this daemon (pids get reused).
    local pid
    pid=$(as_root cat "/run/$1.pid" 2>/dev/null) || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1" ]] && echo "$pid"
}

stop_daemon() {
    local pid
    pid=$(daemon_pid "$1") || return 0
    as_root kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        as_root kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    log "$1 (pid $pid) did not stop"
    exit 1
}

wait_idle() {
    local node=$1 state=""
    for _ in $(seq 120); do
        state=$(node_state "$node")
        case $state in
            idle | mixed | allocated | completing) log "node $node is $state"; return ;;
            *drain* | down*) break ;;
        esac
        sleep 0.5
    done
    log "node $node is '${state:-unknown}', not idle"
    sinfo --list-reasons >&2 || true
    as_root tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    exit 1
}

main() {
    local host conf gres fresh=()
    host=$(hostname -s)
    start_munge
    conf=$(slurm_conf "$host")
    gres=$(gres_conf)
    if as_root test -e "$CONF_DIR/slurm.conf" \
        && ! as_root grep -qxF "$MARKER: a single-node test cluster." "$CONF_DIR/slurm.conf"; then
        log "$CONF_DIR/slurm.conf exists and was not written by this script; not touching it"
        exit 2
    fi
    if [[ "$(as_root cat "$CONF_DIR/slurm.conf" 2>/dev/null)" == "$conf" ]] \
        && [[ "$(as_root cat "$CONF_DIR/gres.conf" 2>/dev/null)" == "$gres" ]] \
        && daemon_pid slurmctld >/dev/null && daemon_pid slurmd >/dev/null; then
        wait_idle "$host"
        return
    fi
    if [[ "$(as_root cat "$CONF_DIR/slurm.conf" 2>/dev/null)" != "$conf" ]]; then
        fresh=(-c)  # a new node definition: drop the saved state of the old one
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    as_root install -d -m 0755 "$CONF_DIR"
    printf '%s\n' "$conf" | as_root tee "$CONF_DIR/slurm.conf" >/dev/null
    printf '%s\n' "$gres" | as_root tee "$CONF_DIR/gres.conf" >/dev/null
    as_root install -d -o slurm -g slurm -m 0755 \
        /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
    as_root /usr/sbin/slurmctld "${fresh[@]}"
    as_root /usr/sbin/slurmd
    wait_idle "$host"
}

main "$@"
