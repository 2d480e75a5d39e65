"""A real one-node Slurm cluster for tests, started from scratch in a temporary folder.

Why a real cluster: submitit's Slurm path (sbatch scripts, ``srun`` inside the job, job arrays,
dependencies, the USR2 preemption handler that calls ``scontrol requeue``) cannot be exercised
by mocks in a way that catches a wrong flag or a broken requeue; a private slurmctld + slurmd +
munged on this machine can, in a few seconds.

Everything the cluster writes lives under ``root``: the munge key, socket, pid, seed and log
(munged is pointed at them with ``--key-file``/``--socket``/``--pid-file``/``--log-file``/
``--seed-file``), ``slurm.conf``, an empty ``plugstack.conf`` (so the host's SPANK plugins are
not loaded), the controller's StateSaveLocation, slurmd's spool, pid and log files, and a
``bin/sacct`` stand-in. Nothing is written under /etc. The daemons listen on two free TCP
ports picked at start, so two clusters (or a stale one) do not clash.

Requirements: root (slurmd must be able to start job steps; ``SlurmUser``/``SlurmdUser`` are
root) and the ``munged``, ``slurmctld``, ``slurmd`` and client binaries on PATH (Debian:
``munge slurmctld slurmd slurm-client``). Anything missing raises :class:`SlurmUnavailable`
with the reason, which :func:`slurm_or_skip` turns into ``pytest.skip``. Written against
Slurm 22.05.8 and munge 0.5.15.

Clients find the cluster through ``SLURM_CONF`` alone: ``AuthInfo=socket=...`` in slurm.conf
tells both the auth and the credential munge plugins (daemons and clients alike) where the
private munge socket is, so no munge environment variable is needed. ``cluster.env`` holds
``SLURM_CONF`` and a ``PATH`` with ``<root>/bin`` first. Jobs inherit the submitting process's
environment (sbatch's default ``--export=ALL``), so ``srun`` inside a job finds the same cluster.

The sacct stand-in: without an accounting database ``sacct`` only prints "Slurm accounting
storage is disabled" and fails, so submitit's ``job.state`` stays ``UNKNOWN`` and
``job.wait()`` only ends once a result pickle appears (a job that dies without one would hang
the test). ``<root>/bin/sacct`` answers submitit's one query (``sacct -o JobID,State,NodeList
--parsable2 -j ID ...``) from ``squeue -t all -r``, which the controller can answer for
``MinJobAge`` seconds after a job ends.

Requeue with submitit (what test_slurm_cluster.py checks): submitit runs the function under
``srun`` in the batch script and installs a SIGUSR2 handler in that python process before
calling the function (``SUBMITIT_PREEMPT_SIGNAL`` changes the signal). ``scancel
--signal=USR2 JOBID`` sends it to the job's steps, i.e. the python under ``srun``; with
``use_srun=False`` the python is the batch step, which plain ``--signal`` skips: add ``--full``.
The handler calls the callable's ``checkpoint()`` (``submitit.helpers.Checkpointable`` returns
the callable itself with the same arguments), pickles that over the job's submitted pickle,
runs ``scontrol requeue $SLURM_JOB_ID`` from inside the job and exits. Slurm kills the job and
puts it back to PENDING with a BeginTime of now + ``cred_expire`` + 1 seconds: the default
cred_expire of 120 s would stall a test two minutes, so slurm.conf here sets
``AuthInfo=...,cred_expire=10``. The second attempt (``SLURM_RESTART_COUNT=1``) loads the
checkpointed callable and writes the result pickle that ``job.result()`` reads.

Two details. ``JobRequeue=1`` (also Slurm's default) gives every job ``Requeue=1``; a job
without it (``JobRequeue=0``, or ``sbatch --no-requeue``) makes ``scontrol requeue`` fail with
"Requested operation is presently disabled", and submitit passes no ``--requeue`` of its own.
And submitit calls the signal a time-out, not a preemption, once the job has run
min(80% of its time, time - 10 min): from the start for ``time`` under 10 minutes. A time-out
requeues only a Checkpointable and uses up one of ``max_num_timeout`` (3) requeues.

Pitfalls met on the way: munged refuses a socket whose folder is not searchable by everyone,
and a pytest tmp folder never is (/tmp/pytest-of-root is 0700); ``--force`` turns that into a
warning. SlurmctldHost and NodeName must be the short hostname (slurmctld compares them with
gethostname()); ``NodeAddr=127.0.0.1`` and ``SlurmctldHost=NAME(127.0.0.1)`` spare DNS. With
``proctrack/linuxproc`` and ``task/none`` Slurm 22.05 loads no cgroup plugin and needs no
cgroup.conf. The daemons get PR_SET_PDEATHSIG, so a SIGKILLed test run takes them along, but
the step daemons and processes of jobs still running then survive (slurmstepd outlives slurmd
by design); they carry ``FSARBENCH_TEST_SLURM_ROOT=<root>`` or ``SLURM_CONF=<root>/slurm.conf``
in their environment. ``stop()`` cancels jobs first and kills any such process that is left.

Session fixture, as conftest.py would register it::

    import pytest
    from slurm_cluster import slurm_or_skip

    @pytest.fixture(scope="session")
    def slurm_cluster(tmp_path_factory):
        cluster = slurm_or_skip(tmp_path_factory.mktemp("slurm"))
        yield cluster
        cluster.stop()

    @pytest.fixture
    def slurm_env(slurm_cluster, monkeypatch):
        slurm_cluster.patch_env(monkeypatch)  # SLURM_CONF, PATH; drops stray SLURM_* vars
        return slurm_cluster
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Daemons and clients the cluster needs; checked up front so a missing package is a clear skip.
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
# Job states after which a job no longer runs (REQUEUED/PENDING/RUNNING/COMPLETING are not).
FINISHED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
# Client-side inputs that would redirect or reshape what the tests submit (a test run inside a
# real Slurm job inherits SLURM_JOB_ID, SBATCH_PARTITION and so on).
_STRAY_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SINFO_", "SCONTROL_")
# Set in the daemons' environment only; slurmstepd inherits it from slurmd, which is how
# stop() finds step daemons that outlive a killed slurmd.
_MARKER = "FSARBENCH_TEST_SLURM_ROOT"
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL

_SACCT_SHIM = '''#!{python}
"""sacct stand-in for a test cluster without accounting: answers from squeue."""
import subprocess
import sys

FIELDS = {{"JobID": "%i", "State": "%T", "NodeList": "%N", "JobName": "%j", "Partition": "%P"}}
args = sys.argv[1:]
names, ids, parsable = ["JobID", "State"], [], False
i = 0
while i < len(args):
    arg = args[i]
    if arg in ("-o", "--format") and i + 1 < len(args):
        names = args[i + 1].split(",")
        i += 1
    elif arg.startswith("--format="):
        names = arg.split("=", 1)[1].split(",")
    elif arg in ("-j", "--jobs") and i + 1 < len(args):
        ids.extend(args[i + 1].split(","))
        i += 1
    elif arg.startswith("--jobs="):
        ids.extend(arg.split("=", 1)[1].split(","))
    elif arg in ("-P", "--parsable2"):
        parsable = True
    else:
        sys.exit(f"sacct stand-in: unsupported argument {{arg!r}}")
    i += 1
unknown = [name for name in names if name not in FIELDS]
if unknown or not parsable or not ids:
    sys.exit(f"sacct stand-in: needs --parsable2, -j and fields from {{sorted(FIELDS)}}")
out = subprocess.run(
    ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids),
     "-o", "|".join(FIELDS[name] for name in names)],
    capture_output=True, text=True, check=False,
)
print("|".join(names))
print(out.stdout, end="")
'''


class SlurmUnavailable(RuntimeError):
    """The cluster cannot start here; the message says why (a fixture skips with it)."""


class SlurmCommandError(subprocess.CalledProcessError):
    """A client command failed; unlike CalledProcessError the message carries its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def short_hostname() -> str:
    """The name slurmctld and slurmd compare SlurmctldHost and NodeName against."""
    return socket.gethostname().split(".")[0]


def _free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def which(name: str) -> str | None:
    """``name`` on PATH, else in the sbin folders a non-root PATH often lacks (daemons)."""
    sbin = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))
    return shutil.which(name) or shutil.which(name, path=sbin)


def _memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the daemon when the test process dies, even by SIGKILL.

    Without it a crashed or killed pytest leaves slurmctld, slurmd and munged running.
    """
    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def clean_environ(base: dict[str, str] | os._Environ[str] | None = None) -> dict[str, str]:
    """``base`` (default os.environ) without Slurm client inputs from an enclosing job."""
    source = os.environ if base is None else base
    return {k: v for k, v in source.items() if not k.startswith(_STRAY_PREFIXES)}


class SlurmCluster:
    """One slurmctld, one slurmd (the only node: this machine) and a private munged.

    ``start()`` returns once ``sinfo`` shows the node idle; ``stop()`` cancels what is left in
    the queue and ends the three daemons (and any step daemon they left). Use as a context
    manager, or call ``stop()`` from a fixture finalizer; an atexit hook and PR_SET_PDEATHSIG
    are the safety nets.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        partition: str = "debug",
        cluster_name: str = "fsarbench",
        cred_expire_s: int = 10,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.partition = partition
        self.cluster_name = cluster_name
        self.cred_expire_s = cred_expire_s
        self.startup_timeout_s = startup_timeout_s
        self.hostname = short_hostname()
        self.cpus = os.cpu_count() or 1
        # A bit below the machine's memory: slurmd drains a node whose RealMemory exceeds
        # what it measures, and --mem requests must fit under it.
        self.real_memory_mb = max(256, int(_memory_mb() * 0.9))
        # With CR_CPU_Memory a job without --mem would otherwise take the whole node's memory
        # and keep a second job from starting.
        self.def_mem_per_cpu_mb = max(64, min(1024, self.real_memory_mb // (2 * self.cpus)))
        self.conf = self.root / "slurm.conf"
        self.munge_dir = self.root / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.log_dir = self.root / "log"
        self.bin_dir = self.root / "bin"
        self.ctld_port = 0
        self.slurmd_port = 0
        self.env: dict[str, str] = {}
        self.startup_s: float | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._started = False

    # ------------------------------------------------------------------ start / stop

    def start(self) -> SlurmCluster:
        """Write the configuration, start munged, slurmctld and slurmd, wait for an idle node.

        Raises SlurmUnavailable (after cleaning up) when a binary is missing, this is not
        root, or a daemon exits or the node is not idle within ``startup_timeout_s``.
        """
        if self._started:
            return self
        self._check_prerequisites()
        began = time.monotonic()
        self._started = True
        atexit.register(self.stop)
        try:
            self._layout()
            self._start_munged()
            self._write_conf()
            self._spawn("slurmctld", ["-D", "-f", str(self.conf)])
            self._spawn("slurmd", ["-D", "-f", str(self.conf), "-N", self.hostname])
            self._wait_idle(began + self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Cancel leftover jobs, then end slurmd, slurmctld and munged; safe to call twice."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._alive("slurmctld"):
            with contextlib.suppress(Exception):
                self._cancel_all_jobs()
        for name in ("slurmd", "slurmctld", "munged"):
            self._terminate(name)
        self._kill_marked_leftovers()

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients

    def client_environ(self) -> dict[str, str]:
        """os.environ without stray Slurm inputs, plus ``env``: what a client should run with."""
        return {**clean_environ(), **self.env}

    def patch_env(self, monkeypatch: Any) -> None:
        """Point this process's Slurm clients (and submitit) at the cluster via ``monkeypatch``."""
        for key in list(os.environ):
            if key.startswith(_STRAY_PREFIXES) and key not in self.env:
                monkeypatch.delenv(key, raising=False)
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)

    def run(
        self, *args: str | os.PathLike[str], check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run one Slurm client command against this cluster, text output captured."""
        cmd = [os.fspath(arg) for arg in args]
        out = subprocess.run(
            cmd,
            env=self.client_environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            raise SlurmCommandError(out.returncode, cmd, out.stdout, out.stderr)
        return out

    def sbatch(self, *args: str | os.PathLike[str]) -> str:
        """Submit a batch job (``sbatch --parsable ARGS``) and return its id."""
        return self.run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def job_state(self, job_id: str) -> str | None:
        """The job's state (first array element's for an array), None once Slurm forgot it."""
        out = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        match = re.search(r"\bJobState=(\S+)", out.stdout)
        return match.group(1) if match else None

    def wait_job(
        self, job_id: str, states: frozenset[str] = FINISHED_STATES, timeout_s: float = 30.0
    ) -> str:
        """Poll until the job is in one of ``states`` and return that state.

        Raises TimeoutError with the queue and the daemon logs when it does not get there.
        """
        deadline = time.monotonic() + timeout_s
        state = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in states:
                return state
            time.sleep(0.25)
        raise TimeoutError(
            f"job {job_id} still {state} after {timeout_s:.0f}s; wanted one of {sorted(states)}\n"
            + self.diagnostics()
        )

    def diagnostics(self) -> str:
        """Queue, node and log tails: what an assertion message needs to explain a failure."""
        parts = []
        for args in (("squeue", "-t", "all"), ("sinfo", "-N", "-l")):
            with contextlib.suppress(Exception):
                parts.append(self.run(*args, check=False, timeout=10).stdout)
        for name in ("slurmctld", "slurmd", "munged"):
            parts.append(f"--- {name}.log\n{_tail(self.log_dir / f'{name}.log')}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ internals

    def _check_prerequisites(self) -> None:
        if os.geteuid() != 0:
            raise SlurmUnavailable("a test Slurm cluster needs root (slurmd runs job steps)")
        missing = [name for name in (*DAEMONS, *CLIENTS) if which(name) is None]
        if missing:
            raise SlurmUnavailable(f"Slurm/munge binaries not on PATH: {', '.join(missing)}")
        if len(os.fsencode(self.root / "munge" / "munge.socket")) > _SOCKET_PATH_MAX:
            raise SlurmUnavailable(f"{self.root} is too deep for a unix socket path")

    def _layout(self) -> None:
        for sub in ("munge", "state", "spool", "run", "log", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / "plugstack.conf").write_text("")
        shim = self.bin_dir / "sacct"
        shim.write_text(_SACCT_SHIM.format(python=sys.executable))
        shim.chmod(0o755)
        self.ctld_port = _free_port()
        self.slurmd_port = _free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = _free_port()
        self.env = {
            "SLURM_CONF": str(self.conf),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        }

    def _start_munged(self) -> None:
        key = self.munge_dir / "munge.key"
        mungekey = which("mungekey")
        if mungekey:
            subprocess.run(
                [mungekey, "--create", "--keyfile", str(key)],
                check=True,
                capture_output=True,
            )
        else:  # munge < 0.5.14 has no mungekey; any 1 KiB of randomness is a valid key
            key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        # --force: munged refuses a socket whose directory is not world-searchable, and a
        # pytest tmp folder (/tmp/pytest-of-root is 0700) never is; --force makes that a
        # warning. Only root submits here, so nobody else needs the socket anyway.
        self._spawn(
            "munged",
            [
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self.munge_dir / 'munged.pid'}",
                f"--seed-file={self.munge_dir / 'munged.seed'}",
                f"--log-file={self.log_dir / 'munged.log'}",
            ],
        )
        deadline = time.monotonic() + 10
        while not self.munge_socket.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise SlurmUnavailable("munged did not create its socket\n" + self.diagnostics())
            time.sleep(0.05)

    def _write_conf(self) -> None:
        root = self.root
        lines = [
            "# Written by tests/slurm_cluster.py for one test session.",
            f"ClusterName={self.cluster_name}",
            # The address in parentheses spares a DNS lookup of the hostname.
            f"SlurmctldHost={self.hostname}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # socket: the private munged; cred_expire: how long a requeued job waits to start
            # again (cred_expire + 1 s; the default 120 s would stall a requeue test).
            f"AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire_s}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"PlugStackConfig={root / 'plugstack.conf'}",
            f"MailProg={shutil.which('true') or '/bin/true'}",
            # No cgroup plugin anywhere: with these two, Slurm 22.05 never reads cgroup.conf.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            # Per-CPU allocation whatever the core/thread layout, so two 1-CPU jobs share a
            # 2-CPU node; memory is a consumable so --mem requests are honoured.
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            f"DefMemPerCPU={self.def_mem_per_cpu_mb}",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            "ReturnToService=2",
            "JobRequeue=1",
            "KillWait=5",
            "MinJobAge=120",
            "InactiveLimit=0",
            "Waittime=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "MessageTimeout=10",
            f"NodeName={self.hostname} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.real_memory_mb} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.hostname} Default=YES "
            "MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, args: list[str]) -> None:
        """Start daemon ``name`` in the foreground (so the Popen is the daemon itself)."""
        cmd = [which(name) or name, *args]
        env = {**clean_environ(), "SLURM_CONF": str(self.conf), _MARKER: str(self.root)}
        with open(self.log_dir / f"{name}.out", "ab") as out:
            self._procs[name] = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                start_new_session=True,  # a terminal's Ctrl-C reaches pytest, not the daemons
                preexec_fn=_die_with_parent,
            )

    def _alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(
                    f"{name} exited with status {proc.returncode}:\n"
                    f"{_tail(self.log_dir / f'{name}.out')}\n{_tail(self.log_dir / f'{name}.log')}"
                )

    def _wait_idle(self, deadline: float) -> None:
        state = ""
        while time.monotonic() < deadline:
            self._check_alive()
            out = self.run("sinfo", "-h", "-N", "-n", self.hostname, "-o", "%T", check=False)
            state = out.stdout.strip()
            if out.returncode == 0 and state == "idle":
                return
            time.sleep(0.25)
        raise SlurmUnavailable(
            f"node {self.hostname} not idle after {self.startup_timeout_s:.0f}s "
            f"(sinfo says {state!r})\n" + self.diagnostics()
        )

    def _cancel_all_jobs(self) -> None:
        ids = self.run("squeue", "-h", "-o", "%A", check=False, timeout=10).stdout.split()
        if not ids:
            return
        self.run("scancel", *sorted(set(ids)), check=False, timeout=10)
        deadline = time.monotonic() + 15  # KillWait=5 plus slack for the epilog-free cleanup
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-o", "%A", check=False, timeout=10).stdout.strip():
                return
            time.sleep(0.25)

    def _terminate(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def _kill_marked_leftovers(self) -> None:
        """SIGKILL what this cluster left running: step daemons and job processes.

        slurmstepd double-forks away from slurmd, so it is nobody's child here; its
        environment, inherited from slurmd, carries the marker. Job processes carry
        ``SLURM_CONF=<root>/slurm.conf`` (the environment sbatch exported). Normally the
        scancel in stop() has ended them all; this is for a job that would not die.
        """
        markers = (
            b"\0" + f"{_MARKER}={self.root}".encode() + b"\0",
            b"\0" + f"SLURM_CONF={self.conf}".encode() + b"\0",
        )
        spare = {os.getpid(), *_ancestors()}
        for _ in range(3):
            found = False
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in spare:
                    continue
                try:
                    environ = b"\0" + (entry / "environ").read_bytes() + b"\0"
                except OSError:
                    continue
                if any(marker in environ for marker in markers):
                    found = True
                    with contextlib.suppress(OSError):
                        os.kill(int(entry.name), signal.SIGKILL)
            if not found:
                return
            time.sleep(0.2)


def _ancestors() -> list[int]:
    """This process's parents up to init (never to be killed, whatever their environment)."""
    pids, pid = [], os.getppid()
    while pid > 1:
        pids.append(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def start_slurm(root: str | os.PathLike[str], **options: Any) -> SlurmCluster:
    """Start a cluster whose every file lives under ``root``; see SlurmCluster for options."""
    return SlurmCluster(root, **options).start()


def slurm_or_skip(root: str | os.PathLike[str], **options: Any) -> SlurmCluster:
    """start_slurm, or ``pytest.skip`` with the reason when this machine cannot run one."""
    try:
        return start_slurm(root, **options)
    except SlurmUnavailable as error:
        import pytest

        pytest.skip(f"no test Slurm cluster: {error}")
