#!/usr/bin/env bash
# A single-node Slurm cluster from Debian's packages (bookworm), as root, without systemd or cgroups: munge, MariaDB +
# slurmdbd (so sacct works), slurmctld, slurmd, and FAKE_GPUS fake GPU GRES (device nodes aliasing /dev/null) so the
# --gpus path is exercised without a GPU. Idempotent: a daemon that already answers is left alone. Each daemon this
# script starts is listed in $STATE/started, and slurm-down.sh stops only those, by their pidfiles.
# A no-op when a cluster already answers (sinfo reports an idle or mixed node) and SLURM_UP_FORCE is unset.
set -euo pipefail
FAKE_GPUS="${FAKE_GPUS:-2}"
STATE=/run/lem-slurm
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s.%N)
ts() { printf '[slurm-up %5.1fs] %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$*"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
started() { echo "$1" >> "$STATE/started"; }

if [ "$(id -u)" != 0 ]; then echo "slurm-up: needs root (it installs packages and starts daemons)" >&2; exit 1; fi
if command -v sinfo >/dev/null && [ -z "${SLURM_UP_FORCE:-}" ] && timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
  echo "slurm-up: a cluster already answers ($(sinfo -h -o '%P %D %T' | head -1)); nothing started"; exit 0
fi

pkgs="slurmctld slurmd slurm-client munge slurmdbd mariadb-server bc"
if ! dpkg -s $pkgs >/dev/null 2>&1; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $pkgs >/dev/null
fi
ts "packages installed"
mkdir -p "$STATE"; touch "$STATE/started"

HOST=$(hostname -s)
NCPU=$(nproc)
MEM=$(free -m | awk '/^Mem:/{print int($2*0.98)}')   # a 2% margin so slurmd never reports less than configured
GRES_NODE=""; GRES_TYPES=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  : > /etc/slurm/gres.conf
  for i in $(seq 0 $((FAKE_GPUS - 1))); do [ -e /dev/fakegpu$i ] || mknod /dev/fakegpu$i c 1 3; done
  echo "NodeName=${HOST} Name=gpu Type=fake File=/dev/fakegpu[0-$((FAKE_GPUS - 1))]" > /etc/slurm/gres.conf
  GRES_NODE="Gres=gpu:fake:${FAKE_GPUS} "; GRES_TYPES="GresTypes=gpu"
fi

cat > /etc/slurm/slurm.conf <<CONF
# written by llenergymeasure's slurm/slurm-up.sh: a single-node CI cluster
ClusterName=ci
SlurmctldHost=${HOST}
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
${GRES_TYPES}
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=${HOST} ${GRES_NODE}CPUs=${NCPU} RealMemory=${MEM} State=UNKNOWN
# FORCE:4: up to 4 jobs share a core, so a CI machine with 2 cores still runs several test jobs at once
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF

mkdir -p /run/munge /run/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/mysqld
chown munge:munge /run/munge; chmod 755 /run/munge
chown slurm:slurm /run/slurm /var/lib/slurm/slurmctld /var/log/slurm
chown mysql:mysql /run/mysqld

if ! alive /run/munge/munged.pid; then runuser -u munge -- /usr/sbin/munged; started /run/munge/munged.pid; fi
munge -n | unmunge >/dev/null
ts "munged up"

if ! alive /run/mysqld/mysqld.pid; then
  setsid /usr/sbin/mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock \
    --pid-file=/run/mysqld/mysqld.pid >/var/log/slurm/mariadb.log 2>&1 </dev/null &
  started /run/mysqld/mysqld.pid
fi
for _ in $(seq 1 60); do mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1 && break; sleep 0.5; done
mariadb --socket=/run/mysqld/mysqld.sock -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmci';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
ts "mariadb up"
cat > /etc/slurm/slurmdbd.conf <<'CONF'
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurmci
CONF
chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 600 /etc/slurm/slurmdbd.conf
if ! alive /run/slurm/slurmdbd.pid; then /usr/sbin/slurmdbd; started /run/slurm/slurmdbd.pid; fi
for _ in $(seq 1 60); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -n show cluster format=cluster | grep -qw ci || sacctmgr -i add cluster ci >/dev/null
ts "slurmdbd up"

if ! alive /run/slurm/slurmctld.pid; then /usr/sbin/slurmctld; started /run/slurm/slurmctld.pid; fi
if ! alive /run/slurm/slurmd.pid; then /usr/sbin/slurmd; started /run/slurm/slurmd.pid; fi
for _ in $(seq 1 60); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.5; done
sinfo -h -o %T | grep -qx idle || { echo "slurm-up: node not idle:"; sinfo -N -l; tail -20 /var/log/slurm/slurm*.log; exit 1; }
ts "slurmctld and slurmd up, node idle ($(sinfo -h -o '%c CPUs, gres %G'))"
