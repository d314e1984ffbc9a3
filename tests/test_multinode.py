"""Two "nodes" × one process on localhost, joined by Lightning's own cluster environment over gloo.

Each node is started by hand with the variables Lightning's LightningEnvironment reads (MASTER_ADDR,
MASTER_PORT, NODE_RANK, WORLD_SIZE), as docs/CLUSTER.md tells a cluster without a scheduler to do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.hydra_helpers import REPO

# two pre-training steps of bert_tiny on a few documents of the embedded pydoc corpus
TINY_RUN = [
    "model=bert_tiny",
    "logger=none",
    "trainer.max_steps=2",
    "trainer.enable_model_summary=false",
    "data.max_train_examples=30",
    "data.val_docs=5",
    "data.vocab_size=1000",
    "data.max_seq_length=64",
    "data.batch_size=8",
    "hardware.precision=32-true",
    "export=false",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_one_process_each(tmp_path: Path) -> None:
    env = os.environ | {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": "2",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    multinode = ["hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=1", "hardware.num_nodes=2"]
    nodes = []
    for rank in (0, 1):
        # two machines: each its own run folder and data cache (one shared cache, built by both at once, races)
        run, cache = tmp_path / f"node{rank}", tmp_path / f"cache{rank}"
        args = [*multinode, *TINY_RUN, f"hydra.run.dir={run}", f"paths.cache_dir={cache}"]
        cmd = [sys.executable, "train.py", *args]
        node_env = env | {"NODE_RANK": str(rank)}
        nodes.append(
            subprocess.Popen(
                cmd, cwd=REPO, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    try:
        outputs = [node.communicate(timeout=300)[0] for node in nodes]
    finally:
        for node in nodes:  # one node failing leaves the other waiting for it
            if node.poll() is None:
                node.kill()
                node.wait()
    for rank, (node, out) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"node {rank}:\n{out[-3000:]}"
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in out, out[-3000:]
    assert "All distributed processes registered. Starting with 2 processes" in outputs[0]
    assert "distributed_backend=gloo" in outputs[0]
    # global rank 0 alone writes the metrics and the checkpoint
    assert json.loads((tmp_path / "node0" / "metrics.json").read_text())["train/mlm_loss"] > 0
    assert (tmp_path / "node0" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "node1" / "metrics.json").exists()
