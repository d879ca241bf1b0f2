#!/usr/bin/env bash
# A real single-node Slurm cluster (with accounting) on this machine, for the Slurm tests.
#
#   bash slurm/local-cluster.sh install   # apt-get the packages (skipped when already there)
#   bash slurm/local-cluster.sh start     # install if needed, write configs, start daemons, wait for idle
#   bash slurm/local-cluster.sh stop      # stop the daemons by the PIDs in their pid files
#   bash slurm/local-cluster.sh status    # daemon states + sinfo; exit 0 if usable, 1 otherwise
#   bash slurm/local-cluster.sh restart   # stop + start
#
# Made for Debian 12 (Slurm 22.05), run as root, without systemd (CI containers): every daemon is
# started by hand.  Background and the reasons for the settings: docs/SLURM-CI.md (shared docs).
# Daemons, in start order: munged, MariaDB (socket only), slurmdbd, slurmctld, slurmd.
#
# Environment (all optional):
#   LOCAL_CLUSTER_NAME     Slurm ClusterName (default: prunebench)
#   LOCAL_CLUSTER_TIMEOUT  seconds to wait for each daemon / for the node to become idle (default: 60)
#
# Partition: "debug" (the default partition).  MaxArraySize=1001, so job arrays may have indices
# 0..1000; the harness splits bigger arrays into chunks below MaxArraySize (it reads it from
# `scontrol show config`).
set -Eeuo pipefail

# Run from any cwd, with or without sbin on PATH (CI shells sometimes lack it).
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
export LC_ALL=C

CLUSTER_NAME="${LOCAL_CLUSTER_NAME:-prunebench}"
TIMEOUT="${LOCAL_CLUSTER_TIMEOUT:-60}"

SLURM_CONF=/etc/slurm/slurm.conf
SLURMDBD_CONF=/etc/slurm/slurmdbd.conf
LOG_DIR=/var/log/slurm
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MYSQL_RUN=/run/mysqld
MYSQL_SOCK=$MYSQL_RUN/mysqld.sock
MYSQL_DATADIR=/var/lib/mysql
MYSQL_LOG=$LOG_DIR/mariadb.log
DB_NAME=slurm_acct_db
DB_USER=slurm

# name | pid file | process name (/proc/PID/comm, guards against a recycled PID)
PID_munged=$MUNGE_RUN/munged.pid;  COMM_munged=munged
PID_mariadb=$MYSQL_RUN/mysqld.pid; COMM_mariadb=mariadbd
PID_slurmdbd=/run/slurmdbd.pid;    COMM_slurmdbd=slurmdbd
PID_slurmctld=/run/slurmctld.pid;  COMM_slurmctld=slurmctld
PID_slurmd=/run/slurmd.pid;        COMM_slurmd=slurmd
DAEMONS=(munged mariadb slurmdbd slurmctld slurmd)

HOST="$(hostname -s)"

# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------
T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%5.1fs", b - a }'; }
say() { echo "[local-cluster $(elapsed)] $*"; }
warn() { echo "[local-cluster $(elapsed)] WARNING: $*" >&2; }

show_logs() {
    local f since=${T0%.*}
    for f in "$LOG_DIR"/*.log "$LOG_DIR"/*.out /var/log/munge/munged.log; do
        [[ -s $f ]] || continue
        # NAME.out is rewritten at each launch: skip those from earlier runs.
        [[ $f != *.out || $(stat -c %Y "$f") -ge $since ]] || continue
        echo "----- last lines of $f -----" >&2
        tail -n 25 "$f" >&2 || true
    done
    if command -v sinfo >/dev/null 2>&1; then
        echo "----- sinfo -R -----" >&2
        timeout 5 sinfo -R >&2 2>&1 || true
    fi
}

die() {
    echo "[local-cluster $(elapsed)] ERROR: $*" >&2
    show_logs
    exit 1
}

# An unexpected failing command (set -e) still shows where and the logs.
trap 'rc=$?; echo "[local-cluster] ERROR: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; show_logs; exit $rc' ERR

[[ $(id -u) -eq 0 ]] || { echo "local-cluster.sh must run as root" >&2; exit 1; }
# The daemons inherit our working directory: start them from / so they never pin the caller's
# (possibly temporary) directory.  All paths below are absolute.
cd /

# ---------------------------------------------------------------------------------------------
# PID-file based process handling (never by process name)
# ---------------------------------------------------------------------------------------------
# daemon_pid NAME: prints the PID and returns 0 if NAME's pid file names a live process of the
# expected kind; returns 1 otherwise.
daemon_pid() {
    local pidf="PID_$1" commv="COMM_$1" pid
    pidf=${!pidf}
    [[ -r $pidf ]] || return 1
    pid=$(tr -dc '0-9' <"$pidf")
    [[ -n $pid ]] && alive "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${!commv}" ]] || return 1
    echo "$pid"
}

# launch NAME COMMAND...: start a daemon that stays in the foreground (-D), in its own session so
# it outlives this script.  A background job of a non-interactive shell is no process-group
# leader, so setsid does not fork and LAUNCHED_PID is the daemon's own PID: wait_for notices at
# once when it dies (instead of waiting out the timeout).  Its stdout/stderr (errors from before
# its log file is open, then a copy of its log) go to $LOG_DIR/NAME.out, rewritten each start.
LAUNCHED_PID=""
launch() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$LOG_DIR/$name.out" 2>&1 9>&- &
    LAUNCHED_PID=$!
}

# wait_for SECONDS DESCRIPTION PID COMMAND...: poll COMMAND every 0.2 s until it succeeds; give
# up at once if PID (unless "-") has exited.
wait_for() {
    local secs=$1 what=$2 pid=$3
    shift 3
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [[ $pid != - ]] && ! alive "$pid"; then
            die "the daemon (pid $pid) exited while waiting for $what"
        fi
        ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
        sleep 0.2
    done
}

# alive PID: the process exists and is not a zombie.  Daemons are re-parented to PID 1, which in
# containers may reap them late; a zombie has exited already.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# lock: one install/start/stop at a time (fd 9; the daemons are started with fd 9 closed, so
# they do not keep holding the lock).
lock() {
    exec 9>/run/local-cluster.lock
    flock -w "$TIMEOUT" 9 || die "another local-cluster.sh still runs after ${TIMEOUT}s"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

installed() {
    local c
    for c in sbatch sacct sacctmgr sinfo scontrol slurmctld slurmd slurmdbd munged munge mariadb; do
        command -v "$c" >/dev/null 2>&1 || return 1
    done
    command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1
}

cmd_install() {
    if installed; then
        say "packages already installed ($(slurmd -V 2>/dev/null || echo slurm))"
        return 0
    fi
    say "installing ${PACKAGES[*]} (apt-get)"
    # Subshell: its EXIT trap puts policy-rc.d back however apt-get ends.  A policy-rc.d that
    # exits 101 stops the packages' post-install scripts from starting services (no systemd here;
    # we start the daemons ourselves with our own configuration).
    (
        policy=/usr/sbin/policy-rc.d
        backup=""
        if [[ -e $policy ]]; then # e.g. Docker base images ship one: keep it, restore it after
            backup=$(mktemp /usr/sbin/policy-rc.d.local-cluster.XXXXXX)
            cp -p "$policy" "$backup"
        fi
        restore() {
            if [[ -n $backup ]]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
        }
        trap restore EXIT
        printf '#!/bin/sh\n# temporary, from slurm/local-cluster.sh install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        export DEBIAN_FRONTEND=noninteractive
        apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
        # One && chain: errexit does not apply inside a subshell that is followed by "||".
        apt-get "${apt_opts[@]}" update -qq &&
            apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${PACKAGES[@]}" </dev/null
    ) || die "apt-get install failed"
    installed || die "packages installed, but some commands are still missing"
    say "installed $(slurmd -V)"
}

# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
# write_if_changed PATH OWNER MODE: stdin -> PATH, only if the content differs; sets WROTE=1 when
# it wrote, WROTE=0 when the file was already up to date.
WROTE=0
write_if_changed() {
    local path=$1 owner=$2 mode=$3 tmp
    tmp=$(mktemp "$path.XXXXXX")
    cat >"$tmp"
    chown "$owner" "$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        chown "$owner" "$path"
        chmod "$mode" "$path"
        WROTE=0
    else
        mv -f "$tmp" "$path"
        WROTE=1
    fi
}

node_memory_mib() {
    # About 95% of MemTotal, but never more than slurmd itself detects: a RealMemory above that
    # drains the node ("Low RealMemory").
    local total_kib mem detected
    total_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
    mem=$((total_kib / 1024 * 95 / 100))
    detected=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1 || true)
    if [[ -n $detected ]] && ((detected < mem)); then mem=$detected; fi
    ((mem >= 1)) || mem=1
    echo "$mem"
}

db_password() {
    # Random on first use, then kept in slurmdbd.conf (mode 600), so re-runs don't change it.
    local pass=""
    [[ -r $SLURMDBD_CONF ]] && pass=$(sed -n 's/^StoragePass=//p' "$SLURMDBD_CONF" | head -n1)
    [[ -n $pass ]] || pass=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    echo "$pass"
}

SLURM_CONF_CHANGED=0

write_configs() {
    local cpus mem pass
    cpus=$(nproc)
    mem=$(node_memory_mib)
    pass=$(db_password)

    mkdir -p /etc/slurm "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
    chown slurm:slurm "$LOG_DIR" /var/spool/slurmctld # slurmctld and slurmdbd run as slurm
    chmod 755 "$LOG_DIR"

    write_if_changed "$SLURM_CONF" root:root 644 <<EOF
# Generated by slurm/local-cluster.sh -- edits are overwritten on the next start.
# Single-node test cluster on $HOST: slurmctld + slurmd on 127.0.0.1, accounting through slurmdbd.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
# Job credentials expire after 10 s instead of 120 s: a requeued job must wait for the old
# credential to expire before it can start again (requeue-to-resume: ~20 s instead of ~150 s).
AuthInfo=cred_expire=10
MpiDefault=none
MailProg=/bin/true

# No cgroups in CI containers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none

SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$PID_slurmctld
SlurmdPidFile=$PID_slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log

# A DOWN node (e.g. left from an earlier run) comes back as soon as slurmd registers with a
# valid configuration.
ReturnToService=2

# Low latency for tests: schedule right at submit, and re-run the schedulers often.
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# SIGTERM -> SIGKILL grace on cancel/timeout: 5 s instead of 30 s.  submitit's job process
# ignores SIGTERM, so a cancelled submitit job stays COMPLETING for the whole KillWait, and while a
# job is COMPLETING the scheduler starts nothing new (seen: next job waited 10 s).  submitit's
# checkpoint/requeue uses the earlier USR2 (--signal), not this grace.
KillWait=5

# Explicit, because the harness chunks job arrays below MaxArraySize (indices 0..1000).
MaxArraySize=1001
# Batch jobs may be requeued (preemption, node failure, scontrol requeue, submitit's
# checkpoint/requeue on timeout).
JobRequeue=1

# Accounting: sacct must work, or submitit never learns that a job was cancelled/timed out.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30

# CPUs from nproc, RealMemory = min(95% of MemTotal, what slurmd -C detects) in MiB.
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    if ((WROTE)); then
        SLURM_CONF_CHANGED=1
        say "wrote $SLURM_CONF (node $HOST: CPUs=$cpus RealMemory=${mem}MiB, MaxArraySize=1001)"
    fi

    # slurmdbd refuses a slurmdbd.conf that is not owned by SlurmUser with mode 600.
    write_if_changed "$SLURMDBD_CONF" slurm:slurm 600 <<EOF
# Generated by slurm/local-cluster.sh -- edits are overwritten on the next start.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$PID_slurmdbd
# MariaDB runs with --skip-networking; "localhost" makes the client use the unix socket.
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=$DB_NAME
StorageUser=$DB_USER
StoragePass=$pass
EOF
    if ((WROTE)); then
        say "wrote $SLURMDBD_CONF"
        if daemon_pid slurmdbd >/dev/null; then
            warn "slurmdbd.conf changed while slurmdbd runs: 'restart' to apply it"
        fi
    fi

    # The packages normally create the key; make one if it is missing.
    if [[ ! -s $MUNGE_KEY ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        say "created $MUNGE_KEY"
    fi
    chown munge:munge /etc/munge "$MUNGE_KEY"
    chmod 700 /etc/munge
    chmod 400 "$MUNGE_KEY"
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------
start_munged() {
    local pid
    if pid=$(daemon_pid munged); then say "munged already running (pid $pid)"; return; fi
    mkdir -p "$MUNGE_RUN" /var/log/munge /var/lib/munge
    chown munge:munge "$MUNGE_RUN" /var/log/munge /var/lib/munge
    chmod 755 "$MUNGE_RUN"
    rm -f "$PID_munged" "$MUNGE_RUN"/munge.socket.2 "$MUNGE_RUN"/munge.socket.2.lock
    # As the munge user: started as root, munged refuses its log file.
    runuser -u munge -- munged </dev/null 9>&- || die "munged failed to start"
    wait_for "$TIMEOUT" "munge to work" - bash -c 'munge -n | unmunge'
    say "munged started (pid $(daemon_pid munged || echo '?'))"
}

mysql_root() { mariadb --protocol=socket --socket="$MYSQL_SOCK" -u root "$@"; }

start_mariadb() {
    local pid mysqld
    if pid=$(daemon_pid mariadb); then
        say "MariaDB already running (pid $pid)"
    else
        mysqld=$(command -v mariadbd || command -v mysqld)
        mkdir -p "$MYSQL_RUN"
        chown mysql:mysql "$MYSQL_RUN"
        rm -f "$PID_mariadb" "$MYSQL_SOCK"
        # mariadbd runs as mysql and must be able to open its log in /var/log/slurm.
        touch "$MYSQL_LOG"
        chown mysql:mysql "$MYSQL_LOG"
        if [[ ! -d $MYSQL_DATADIR/mysql ]]; then
            say "initialising MariaDB data directory"
            mariadb-install-db --user=mysql --datadir="$MYSQL_DATADIR" --skip-test-db \
                >>"$MYSQL_LOG" 2>&1 || die "mariadb-install-db failed (see $MYSQL_LOG)"
        fi
        # Socket only: no TCP port.
        launch mariadb "$mysqld" --user=mysql --datadir="$MYSQL_DATADIR" --skip-networking \
            --socket="$MYSQL_SOCK" --pid-file="$PID_mariadb" --log-error="$MYSQL_LOG"
        wait_for "$TIMEOUT" "MariaDB to answer on $MYSQL_SOCK" "$LAUNCHED_PID" \
            mariadb-admin --protocol=socket --socket="$MYSQL_SOCK" -u root ping
        say "MariaDB started (pid $(daemon_pid mariadb || echo '?'))"
    fi
    # Idempotent: database, user (password from slurmdbd.conf), grants.
    local pass
    pass=$(sed -n 's/^StoragePass=//p' "$SLURMDBD_CONF" | head -n1)
    mysql_root <<SQL || die "could not set up the $DB_NAME database"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$pass';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';
SQL
}

start_slurmdbd() {
    local pid
    if pid=$(daemon_pid slurmdbd); then say "slurmdbd already running (pid $pid)"; return; fi
    rm -f "$PID_slurmdbd"
    launch slurmdbd slurmdbd -D
    wait_for "$TIMEOUT" "slurmdbd to listen on port 6819" "$LAUNCHED_PID" port_open 6819
    say "slurmdbd started (pid $(daemon_pid slurmdbd || echo '?'))"
}

register_cluster() {
    # slurmctld registers a missing cluster itself when it first connects to slurmdbd; adding it
    # here first makes that explicit and lets sacct/sacctmgr work before slurmctld is up.
    if sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
        return
    fi
    sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null || die "sacctmgr add cluster $CLUSTER_NAME failed"
    say "registered cluster '$CLUSTER_NAME' in accounting"
}

start_slurmctld() {
    local pid
    if pid=$(daemon_pid slurmctld); then
        say "slurmctld already running (pid $pid)"
        if ((SLURM_CONF_CHANGED)); then
            say "slurm.conf changed: scontrol reconfigure"
            scontrol reconfigure || die "scontrol reconfigure failed"
        fi
        return
    fi
    rm -f "$PID_slurmctld"
    # -i: ignore errors in state files left by an earlier run (keep going instead of exiting).
    launch slurmctld slurmctld -D -i
    wait_for "$TIMEOUT" "slurmctld to answer (scontrol ping)" "$LAUNCHED_PID" \
        bash -c 'timeout 3 scontrol ping | grep -q UP'
    say "slurmctld started (pid $(daemon_pid slurmctld || echo '?'))"
}

start_slurmd() {
    local pid
    if pid=$(daemon_pid slurmd); then say "slurmd already running (pid $pid)"; return; fi
    rm -f "$PID_slurmd"
    # Registration time to wait for: slurmctld may still show the node "idle" from its saved
    # state before this slurmd has registered.
    SLURMD_STARTED_AT=$(date +%Y-%m-%dT%H:%M:%S)
    # -N: the node name must match NodeName (hostname -s), or slurmd exits ("lookup failure").
    launch slurmd slurmd -D -N "$HOST"
    wait_for "$TIMEOUT" "slurmd to write $PID_slurmd" "$LAUNCHED_PID" daemon_pid slurmd
    say "slurmd started (pid $(daemon_pid slurmd))"
}

SLURMD_STARTED_AT=""

# True once the node has registered a slurmd started at/after SLURMD_STARTED_AT.
slurmd_registered() {
    [[ -n $SLURMD_STARTED_AT ]] || return 0
    local t
    t=$(timeout 10 scontrol show node "$HOST" 2>/dev/null | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')
    [[ -n $t && ! $t < $SLURMD_STARTED_AT ]]
}

node_state() { timeout 10 sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1; }

wait_node_ready() {
    local deadline=$((SECONDS + TIMEOUT)) state="" last_resume=-100
    while :; do
        state=$(node_state || true)
        case $state in
        idle | mixed | allocated | completing) # usable (busy when old jobs were recovered)
            slurmd_registered && break
            ;;
        down | drained | draining | drain | fail | failing | inval)
            # e.g. left down/drained by an earlier run; resume it (every few seconds at most).
            if ((SECONDS - last_resume >= 3)); then
                say "node $HOST is '$state': scontrol update state=resume"
                scontrol update nodename="$HOST" state=resume 2>/dev/null || true
                last_resume=$SECONDS
            fi
            ;;
        esac
        daemon_pid slurmd >/dev/null || die "slurmd exited (node state '$state')"
        ((SECONDS < deadline)) || die "node $HOST not idle after ${TIMEOUT}s (state '$state')"
        sleep 0.2
    done
    say "node $HOST is $state"
}

cmd_start() {
    say "starting single-node Slurm cluster '$CLUSTER_NAME' on $HOST"
    cmd_install
    write_configs
    start_munged
    start_mariadb
    start_slurmdbd
    register_cluster
    start_slurmctld
    start_slurmd
    wait_node_ready
    say "cluster ready: partition debug, $(scontrol show config | awk '$1 == "MaxArraySize" { print "MaxArraySize=" $3 }')"
}

# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------
stop_daemon() {
    local name=$1 pid pidf="PID_$1" deadline
    if ! pid=$(daemon_pid "$name"); then
        say "$name not running"
        rm -f "${!pidf}" 2>/dev/null || true
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + TIMEOUT))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            warn "$name (pid $pid) ignored SIGTERM for ${TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
    done
    rm -f "${!pidf}" 2>/dev/null || true
    say "$name stopped (pid $pid)"
}

cmd_stop() {
    say "stopping Slurm cluster on $HOST"
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop_daemon "${DAEMONS[i]}"
    done
    # Steps of jobs still running when slurmd stopped live on in their own slurmstepd; we do not
    # kill those (they are not ours to kill by name), but say so.
    local steps
    steps=$(ps -C slurmstepd -o pid= 2>/dev/null | xargs || true)
    [[ -z $steps ]] || warn "slurmstepd processes of running jobs remain (pids: $steps)"
    say "stopped"
}

# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------
cmd_status() {
    local ok=0 name pid state
    if ! installed; then
        echo "slurm packages: not installed"
        return 1
    fi
    for name in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$name"); then
            printf '%-10s running (pid %s)\n' "$name" "$pid"
        else
            printf '%-10s stopped\n' "$name"
            ok=1
        fi
    done
    if ((ok == 0)); then
        echo "----- sinfo -----"
        timeout 10 sinfo 2>&1 || ok=1
        state=$(node_state || true)
        case $state in
        idle | mixed | allocated | completing) ;;
        *) echo "node $HOST state: '${state:-unknown}' (not usable)"; ok=1 ;;
        esac
        timeout 10 sacct -n -X -S now-1minute >/dev/null 2>&1 || { echo "sacct: not working"; ok=1; }
    fi
    if ((ok == 0)); then echo "cluster: usable"; else echo "cluster: NOT usable"; fi
    return "$ok"
}

# ---------------------------------------------------------------------------------------------
case "${1:-}" in
install) lock; cmd_install ;;
start) lock; cmd_start ;;
stop) lock; cmd_stop ;;
restart)
    lock
    cmd_stop
    cmd_start
    ;;
status)
    rc=0
    cmd_status || rc=$? # "||": a non-zero status is an answer here, not an error for the ERR trap
    exit "$rc"
    ;;
*)
    echo "usage: $0 {install|start|stop|restart|status}" >&2
    exit 2
    ;;
esac
