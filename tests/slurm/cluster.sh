# A single-node SLURM on localhost for tests, from the Debian packages (slurmctld, slurmd,
# slurm-client, munge): munged, slurmctld and slurmd started by hand with a generated slurm.conf,
# every file (key, sockets, state, spool, logs) in one directory. Source this file, then:
#   slurm_up DIR     start the daemons (needs root); exports SLURM_CONF; returns 1 with a message
#                    when they do not come up (their logs are in DIR)
#   slurm_down       stop exactly the daemons slurm_up started, in reverse order (idempotent)
# No cgroups (proctrack/linuxproc, task/none), no accounting, MpiDefault=pmix, requeue allowed.
# shellcheck shell=bash

_slurm_pids=()

# A free TCP port on 127.0.0.1 (the kernel's choice; released before the daemon binds it).
_slurm_free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_slurm_wait_for() {  # _slurm_wait_for SECONDS COMMAND...: poll until COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" > /dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

slurm_up() {
  local dir="$1"
  mkdir -p "$dir"/{munge,state,spool}
  chmod 700 "$dir" "$dir/munge"
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  local sock="$dir/munge/munge.socket"
  munged --foreground --force --key-file="$dir/munge/munge.key" --socket="$sock" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" > /dev/null 2>&1 &
  _slurm_pids+=($!)
  if ! _slurm_wait_for 10 munge --socket="$sock" --string=ping; then
    echo "slurm_up: munged did not start (log: $dir/munge/munged.log)"; return 1
  fi

  # More CPUs than the machine has (config_overrides keeps slurmd from draining the node for
  # it), so that the tests' jobs run side by side: they are small and mostly wait.
  local cpus=8
  cat > "$dir/slurm.conf" << EOF
ClusterName=astridtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(_slurm_free_port)
SlurmdPort=$(_slurm_free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
SwitchType=switch/none
JobRequeue=1
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerParameters=sched_interval=2
MinJobAge=300
KillWait=10
SlurmdParameters=config_overrides
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -D -i > "$dir/slurmctld.stdout" 2>&1 &
  _slurm_pids+=($!)
  if ! _slurm_wait_for 20 scontrol ping; then
    echo "slurm_up: slurmctld did not answer (log: $dir/slurmctld.log)"; tail -5 "$dir/slurmctld.log" 2> /dev/null; return 1
  fi
  slurmd -D -N localhost > "$dir/slurmd.stdout" 2>&1 &
  _slurm_pids+=($!)
  _slurm_node_idle() { sinfo -h -n localhost -o %t | grep -qE '^(idle|mix|alloc)'; }
  if ! _slurm_wait_for 30 _slurm_node_idle; then
    echo "slurm_up: the node did not become idle (logs: $dir/slurmd.log, $dir/slurmctld.log)"
    sinfo -N -l 2>&1 | tail -3; tail -5 "$dir/slurmd.log" 2> /dev/null; return 1
  fi
}

slurm_down() {
  local i pid
  if [ ${#_slurm_pids[@]} -gt 0 ] && [ -n "${SLURM_CONF:-}" ]; then
    # Jobs first (their slurmstepd are not our children), while slurmctld and slurmd still run.
    scancel --full --user="$(id -un)" > /dev/null 2>&1 || true
    for _ in $(seq 100); do [ -z "$(squeue -h 2> /dev/null)" ] && break; sleep 0.2; done
  fi
  for ((i = ${#_slurm_pids[@]} - 1; i >= 0; --i)); do
    pid="${_slurm_pids[$i]}"
    kill -TERM "$pid" 2> /dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
  done
  _slurm_pids=()
}
