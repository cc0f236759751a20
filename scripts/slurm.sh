# Starts and stops a one-node Slurm cluster on loopback for the Slurm tests (sourced, not run;
# after scripts/tools.sh). Installs Debian's `slurm-wlm` with apt-get when `sbatch` is
# missing (needs root). Everything the cluster writes (config, state, spool, logs) lives in
# one temporary folder, removed when the cluster stops; no systemd, no munge (auth/none:
# only for a test cluster). The node offers two stand-in GPUs (gres.conf over /dev/null), so
# `--gres=gpu:N` jobs run, with CUDA_VISIBLE_DEVICES set by Slurm, on machines without GPUs.
# peirce_start_slurm exports what the Slurm tests read:
#   PEIRCE_TEST_SLURM  1 once the node is idle (tests/slurm.rs runs against it)
#   SLURM_CONF         the cluster's slurm.conf, for sbatch/squeue/scontrol/scancel
peirce_install_slurm() {
    if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "scripts: Slurm is missing and installing it needs root (apt-get install slurm-wlm)" >&2
        return 1
    fi
    echo "scripts: installing slurm-wlm" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm >/dev/null; }
}

peirce_start_slurm() {
    peirce_install_slurm || return 1
    local dir host cpus mem_mb
    dir="$(mktemp -d -t peirce-slurm.XXXXXX)"
    host="$(hostname -s)"
    cpus="$(nproc)"
    # Leave the runner some memory: the node offers 3/4 of the machine's.
    mem_mb="$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 3 / 4 }' /proc/meminfo)"
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    cat >"$dir/slurm.conf" <<EOF
ClusterName=peirce-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmctldPort=$(peirce_free_port)
SlurmdPort=$(peirce_free_port)
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=600
DefMemPerCPU=2048
KillWait=5
InactiveLimit=0
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    # Two stand-in GPUs: Slurm hands them out by `--gres=gpu:N` and sets CUDA_VISIBLE_DEVICES
    # (and SLURM_JOB_GPUS) in the job from the number that ends each one's device file.
    # Plain empty files, so this works on a machine without GPUs.
    mkdir -p "$dir/dev"
    ln -s /dev/null "$dir/dev/nvidia0"
    ln -s /dev/null "$dir/dev/nvidia1"
    echo "Name=gpu File=$dir/dev/nvidia[0-1]" >"$dir/gres.conf"
    export SLURM_CONF="$dir/slurm.conf"
    PEIRCE_SLURM_DIR="$dir"
    slurmctld -D -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
    PEIRCE_SLURMCTLD_PID=$!
    slurmd -D -f "$SLURM_CONF" -N "$host" >"$dir/log/slurmd.out" 2>&1 &
    PEIRCE_SLURMD_PID=$!
    local state=""
    for _ in $(seq 1 300); do
        state="$(sinfo -h -N -n "$host" -o %T 2>/dev/null || true)"
        [ "$state" = idle ] && break
        if ! kill -0 "$PEIRCE_SLURMCTLD_PID" 2>/dev/null || ! kill -0 "$PEIRCE_SLURMD_PID" 2>/dev/null; then
            tail -n 20 "$dir"/log/* >&2
            echo "scripts: a Slurm daemon did not start (logs in $dir/log)" >&2
            peirce_stop_slurm
            return 1
        fi
        sleep 0.2
    done
    if [ "$state" != idle ]; then
        tail -n 20 "$dir"/log/* >&2
        echo "scripts: the Slurm node is not idle after 60 s (state: '$state'; logs in $dir/log)" >&2
        peirce_stop_slurm
        return 1
    fi
    export PEIRCE_TEST_SLURM=1
    echo "scripts: Slurm cluster up on $host ($cpus CPUs, $mem_mb MB; SLURM_CONF=$SLURM_CONF)" >&2
}

peirce_stop_slurm() {
    local pid
    for pid in "${PEIRCE_SLURMD_PID:-}" "${PEIRCE_SLURMCTLD_PID:-}"; do
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    PEIRCE_SLURMD_PID= PEIRCE_SLURMCTLD_PID=
    # The logs were shown already if the start failed.
    if [ -n "${PEIRCE_SLURM_DIR:-}" ]; then
        rm -rf "$PEIRCE_SLURM_DIR"
        PEIRCE_SLURM_DIR=
    fi
}
