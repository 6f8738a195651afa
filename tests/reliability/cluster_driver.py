"""``autosel ARGS…`` as a fresh process that loses a node at a known point (see test_cluster.py).

Right after the first trial handed to the replica below ``AUTOSEL_TEST_NODE_PID`` (the second
node's ``ray start --block``), that replica is stopped (SIGSTOP: the trial is sent to it but
cannot finish), then the node's raylet and the replica are killed, as a power loss would; the
trial's number is written to ``AUTOSEL_TEST_KILLED_FILE``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def descendants_of(root: int) -> list[int]:
    """Every pid below ``root``."""
    return descendants_named(root, None)


def descendants_named(root: int, name: str | None) -> list[int]:
    """Pids below ``root`` whose executable name is ``name``."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pid, parent = int(entry.name), int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(pid)
        names[pid] = stat[stat.index("(") + 1 : stat.rindex(")")]
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if name is None or names.get(child) == name:
                found.append(child)
    return found


def submit_then_lose_the_node(pool, tag: int, items, entries) -> None:
    """RayPool.submit, then the loss of the second node when the trial went to its replica."""
    import ray

    node, killed = int(os.environ["AUTOSEL_TEST_NODE_PID"]), Path(os.environ["AUTOSEL_TEST_KILLED_FILE"])
    if not doomed:  # asked once, while the replicas are idle (an actor answers after the trial it runs)
        below = set(descendants_of(node))
        replica = next((actor, pid) for actor in pool.actors if (pid := ray.get(actor.pid.remote())) in below)
        doomed.update(actor=replica[0], replica=replica[1], raylet=descendants_named(node, "raylet")[0])
    taken = {id(actor) for _, actor in pool.busy.values()}
    chosen = next(actor for actor in pool.actors if id(actor) not in taken)  # as RayPool.submit chooses
    if killed.exists() or chosen is not doomed["actor"]:
        return submit(pool, tag, items, entries)
    os.kill(doomed["replica"], signal.SIGSTOP)
    submit(pool, tag, items, entries)
    killed.write_text(str(tag))
    for pid in (doomed["raylet"], doomed["replica"]):
        os.kill(pid, signal.SIGKILL)


doomed: dict[str, object] = {}
submit = None

if __name__ == "__main__":
    from autosel.cli.app import main
    from autosel.runtime.pools import RayPool

    submit, RayPool.submit = RayPool.submit, submit_then_lose_the_node
    sys.argv[0] = "autosel"
    main()
