"""A real two-node Ray cluster on loopback: ``ray start --head`` (its own temp dir and ports,
127.0.0.1 only) and a second ``ray start --address``; a search joins it with ``--ray-address``,
one node's raylet is killed mid-search, and the search still ends as a single-process one. Every
process the test started is gone afterwards, whatever happened."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import SEARCH_TRIALS, search_command, search_results

RAY = str(Path(sys.executable).with_name("ray"))
BOUND = 240.0
"""Seconds any condition is polled for before the test fails (a loaded 2-core machine is slow)."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now (held open together, so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def poll(condition, what: str, seconds: float = BOUND, every: float = 0.2):
    """``condition()``'s first truthy value, polled for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def processes_of(sessions: set[int], marker: str) -> list[int]:
    """Pids of the processes in ``sessions`` or whose command line holds ``marker`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        if int(fields[3]) in sessions or marker in command:
            found.append(int(entry.name))
    return found


@dataclass
class Cluster:
    """A running two-node cluster: its address, temp dir and the two ``ray start --block`` processes."""

    address: str
    temp_dir: Path
    head: subprocess.Popen
    node: subprocess.Popen
    sessions: set[int] = field(default_factory=set)


PORTS_PER_NODE = 10


def node_options(ports: list[int]) -> list[str]:
    """``ray start`` options of one node on 127.0.0.1 with one CPU, on ``ports`` (none of Ray's defaults)."""
    node_manager, object_manager, agent, agent_grpc, metrics, runtime_env, *workers = ports
    return ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--object-store-memory=100000000",
            f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
            f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
            f"--worker-port-list={','.join(map(str, workers))}", "--disable-usage-stats", "--block"]


def cluster_nodes(address: str, env: dict[str, str]) -> int:
    """How many nodes the cluster at ``address`` reports alive (0 while it cannot be reached)."""
    done = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        return 0
    active = done.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return sum(1 for line in active.splitlines() if "node_" in line)


def cluster_env(temp_dir: Path) -> dict[str, str]:
    """The environment of every process of the test cluster and of the driver that joins it: its
    own temp dir, no usage stats, and no token (loopback only: nothing else can reach it, and
    no token file is written to the user's home)."""
    return {**os.environ, "RAY_TMPDIR": str(temp_dir), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture
def two_node_cluster() -> Iterator[Cluster]:
    """Two Ray nodes on 127.0.0.1 with their own temp dir and ports; every process of both is
    killed (and waited for) at teardown, also when the test or the start failed."""
    temp_dir = Path(tempfile.mkdtemp(prefix="asr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = cluster_env(temp_dir)
    ports = free_ports(1 + 2 * PORTS_PER_NODE)
    gcs, head_ports, node_ports = ports[0], ports[1:1 + PORTS_PER_NODE], ports[1 + PORTS_PER_NODE:]
    address = f"127.0.0.1:{gcs}"
    started: list[subprocess.Popen] = []
    try:
        head = subprocess.Popen([RAY, "start", "--head", f"--port={gcs}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                                 *node_options(head_ports)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        started.append(head)
        poll(lambda: cluster_nodes(address, env) >= 1 or head.poll() is not None, "the head node", every=2.0)
        assert head.poll() is None, "ray start --head exited"
        node = subprocess.Popen([RAY, "start", f"--address={address}", *node_options(node_ports)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(node)
        poll(lambda: cluster_nodes(address, env) >= 2 or node.poll() is not None, "the second node", every=2.0)
        assert node.poll() is None, "ray start --address exited"
        yield Cluster(address, temp_dir, head, node, {p.pid for p in started})
    finally:
        sessions = {p.pid for p in started}  # start_new_session: each ray start leads its own session
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # ray start --block stops its node's processes
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

        def leftovers() -> list[int]:
            pids = processes_of(sessions, str(temp_dir))
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return pids

        poll(lambda: not leftovers(), "every process of the cluster to end", seconds=60)
        shutil.rmtree(temp_dir, ignore_errors=True)


def trials_of(out: Path):
    import optuna

    from autosel.optimise.study import open_storage, quiet_optuna

    quiet_optuna()
    study = optuna.load_study(study_name="tiny-correspondence", storage=open_storage(f"sqlite:///{out / 'autosel.db'}"))
    return study.get_trials()


@pytest.mark.slow
def test_a_search_on_a_two_node_cluster_survives_losing_a_node(two_node_cluster, tmp_path, small_space_file, reference_search):
    """The driver is ``autosel search --ray-address`` in its own process (``cluster_driver.py``:
    the console script's ``main`` with a hook that loses the second node right after a trial was
    handed to the replica there, so the loss always lands mid-trial)."""
    cluster = two_node_cluster
    out, cache, killed_file = tmp_path / "out", tmp_path / "cache", tmp_path / "killed"
    command = [*search_command([sys.executable, str(Path(__file__).with_name("cluster_driver.py"))], small_space_file, out,
                               cache), "--ray-address", cluster.address]
    command[command.index("--workers") + 1] = "2"  # one replica on each node (each has one CPU)
    env = {**cluster_env(cluster.temp_dir), "AUTOSEL_TEST_NODE_PID": str(cluster.node.pid),
           "AUTOSEL_TEST_KILLED_FILE": str(killed_file), "AUTOSEL_PROGRESS": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=BOUND)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = int(killed_file.read_text())
    trials = trials_of(out)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(complete) == SEARCH_TRIALS
    assert [t.number for t in failed] == [killed], "\n".join(str((t.number, t.state.name, t.user_attrs)) for t in trials)
    retry = [t for t in complete if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].params == failed[0].params  # failed once, ran again with the same parameters
    lines = done.stderr.splitlines()
    assert [line for line in lines if "node lost" in line] == [f"node lost; trial {killed} queued again"], done.stderr[-3000:]
    ray_lines = [line for line in lines if "raylet" in line.lower() or "Traceback" in line or line.startswith(("[", "("))]
    assert not ray_lines, ray_lines[:10]  # Ray's own logs stay in its log folder
    assert search_results(out)[1] == search_results(reference_search)[1]  # best.yaml as the single-process run's
