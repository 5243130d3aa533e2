#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost for the tests (Debian packages, run as root).
#
#   .ci/slurm.sh install   apt packages: slurmctld slurmd slurm-client munge mariadb-server slurmdbd
#   .ci/slurm.sh start     write configs, start munged, mariadb, slurmdbd, slurmctld, slurmd; wait for an idle node
#   .ci/slurm.sh stop      stop exactly the daemons `start` started (by the PIDs it recorded)
#   .ci/slurm.sh status    sinfo
#
# State lives in $RECON3D_SLURM_RUN (default /tmp/recon3d-slurm); configs go to /etc/slurm.
set -euo pipefail

RUN=${RECON3D_SLURM_RUN:-/tmp/recon3d-slurm}
CONF=/etc/slurm
CLUSTER=recon3d
DB_PASS=recon3d-slurm

log() { echo "[slurm] $*"; }

install_packages() {
    local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge mariadb-server slurmdbd >/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq 1 "$((seconds * 4))"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    log "timed out waiting for $what"; return 1
}

started() {  # remember a daemon we started
    echo "$2" > "$RUN/pids/$1.pid"
}

start() {
    [ "$(id -u)" -eq 0 ] || { log "start must run as root (it writes /etc/slurm and starts daemons)"; exit 1; }
    # A fresh cluster every start: a saved state left the node waiting, and a job counter that
    # started again against an old accounting database let sacct answer for a new job with an
    # old, finished job of the same id (submitit then took a running job for a finished one).
    rm -rf "$RUN"/{state,spool,mysql}
    mkdir -p "$RUN"/{pids,logs,state,spool,mysql} "$CONF"
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

    # --- munge
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null; then mungekey --create --force; else create-munge-key -f; fi
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
    if ! munge -n >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged --foreground --force >"$RUN/logs/munged.log" 2>&1 &
        started munged $!
        wait_for 20 munged munge -n
    fi
    log "munge ok"

    # --- mariadb (for slurmdbd, so that sacct answers)
    if [ ! -d "$RUN/mysql/mysql" ]; then
        mariadb-install-db --user=root --datadir="$RUN/mysql" --auth-root-authentication-method=normal >"$RUN/logs/mysql-install.log" 2>&1
    fi
    /usr/sbin/mariadbd --user=root --datadir="$RUN/mysql" --socket="$RUN/mysql.sock" --port=0 \
        --skip-networking=0 --bind-address=127.0.0.1 --port=3307 --pid-file="$RUN/mysql.pid" \
        >"$RUN/logs/mariadb.log" 2>&1 &
    started mariadb $!
    wait_for 60 mariadb mariadb --socket="$RUN/mysql.sock" -uroot -e "select 1"
    mariadb --socket="$RUN/mysql.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
    log "mariadb ok"

    # --- configs
    cat > "$CONF/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$RUN/logs/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$CONF/slurmdbd.conf"
    cat > "$CONF/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobRequeue=1
StateSaveLocation=$RUN/state
SlurmdSpoolDir=$RUN/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$RUN/logs/slurmctld.log
SlurmdLogFile=$RUN/logs/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
KillWait=2
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    # --- slurmdbd, then the cluster's accounting record
    /usr/sbin/slurmdbd -D >"$RUN/logs/slurmdbd.out" 2>&1 &
    started slurmdbd $!
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
    log "slurmdbd ok"

    /usr/sbin/slurmctld -D -i >"$RUN/logs/slurmctld.out" 2>&1 &
    started slurmctld $!
    wait_for 60 slurmctld scontrol ping
    /usr/sbin/slurmd -D -N localhost >"$RUN/logs/slurmd.out" 2>&1 &
    started slurmd $!
    wait_for 90 "an idle node" bash -c "sinfo -h -N -o %T | grep -q idle"
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    log "cluster up: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
}

stop() {
    [ -d "$RUN/pids" ] || { log "nothing to stop"; return 0; }
    for name in slurmd slurmctld slurmdbd mariadb munged; do
        local f="$RUN/pids/$name.pid"
        [ -f "$f" ] || continue
        local pid; pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -9 "$pid" 2>/dev/null || true
            log "stopped $name ($pid)"
        fi
        rm -f "$f"
    done
}

case "${1:-}" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
