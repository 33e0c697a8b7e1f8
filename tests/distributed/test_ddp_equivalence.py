"""Two processes with batch b train exactly as one process with batch 2b: the same
gradients at every step and, after steps over several reshuffled epochs, the same
weights (float tolerance: the all-reduce sums in another order), for DDP and for FSDP2;
a sharded FSDP checkpoint resumes in one process with the same weights and optimizer
state. Evaluation under torchrun equals a single-process evaluation exactly
(tests/test_engine.py::test_torchrun_two_processes_on_cpu)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.distributed.toys import BlockRegressor, compose_cfg, run_job
from zoo.engine import distributed as D

ROOT = Path(__file__).resolve().parents[2]
# toy_regression: 128 training samples; 2 x 16 = 32 per step, 4 steps an epoch, 10 steps
# reach the third epoch
COMMON = ["trainer.max_steps=10", "trainer.val_every_steps=5", "trainer.ckpt_every=5",
          "optim.lr=0.01"]
TOL = {"rtol": 1e-5, "atol": 1e-6}
JOBS = [
    {"name": "ddp", "overrides": [*COMMON, "data.batch_size=16"]},
    {"name": "fsdp", "overrides": [*COMMON, "data.batch_size=16", "trainer.strategy=fsdp"]},
    {"name": "fsdp_stop", "overrides": [*COMMON, "data.batch_size=16", "trainer.strategy=fsdp",
                                        "trainer.interrupt_at=3"]},
    {"name": "ddp_acc", "overrides": [*COMMON, "data.batch_size=8", "trainer.accumulate=2"]},
    {"name": "fsdp_acc", "overrides": [*COMMON, "data.batch_size=8", "trainer.accumulate=2",
                                       "trainer.strategy=fsdp"]},
    {"name": "syncbn", "norm": True,
     "overrides": [*COMMON, "data.batch_size=16", "trainer.sync_batchnorm=true"]},
]


def close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], **TOL) for k in a)


@pytest.fixture(scope="module")
def two_processes(config_dir, tmp_path_factory, worker_id):
    """One torchrun launch of 2 processes that runs every multi-process job in turn,
    shared by the pytest-xdist workers (the first one to get here launches it)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        base = base.parent
    out = base / "two_processes"
    with FileLock(str(base / "two_processes.lock")):
        if not (out / "done").is_file():
            out.mkdir(exist_ok=True)
            _launch(config_dir, out)
            (out / "done").write_text("")
    return out, {j["name"]: [torch.load(out / f"{j['name']}.rank{r}.pt", weights_only=False)
                             for r in (0, 1)] for j in JOBS}


def _launch(config_dir: Path, out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "distributed" / "toys.py"), str(config_dir), str(out), json.dumps(JOBS)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def one_process(config_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("single") / "run"
    return run_job(config_dir, run, [*COMMON, "data.batch_size=32"])


@pytest.fixture(scope="module")
def one_process_accumulating(config_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("single_acc") / "run"
    return run_job(config_dir, run, [*COMMON, "data.batch_size=16", "trainer.accumulate=2"])


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "ddp_acc", "fsdp_acc"])
def test_two_processes_equal_one_with_twice_the_batch(two_processes, one_process,
                                                      one_process_accumulating, strategy):
    """``*_acc``: 2 processes x 2 micro-batches of 8 (no gradient sync on the first)
    against 1 process x 2 micro-batches of 16."""
    _, res = two_processes
    r0, r1 = res[strategy]
    if strategy.endswith("_acc"):
        one_process = one_process_accumulating
    assert r0["steps"] == r1["steps"] == one_process["steps"] == 10
    if strategy.startswith("fsdp"):
        assert set(r0["sharded"]) == {"DTensor"}  # really sharded
    for r in (r0, r1):
        assert close(r["grads"], one_process["grads"])      # the 10th step's gradients
        assert close(r["weights"], one_process["weights"])  # after 10 steps
    # and not trivially: the weights moved
    init = dict(BlockRegressor(features=8).named_parameters())
    assert not close({k: v.detach() for k, v in init.items()}, one_process["weights"])


def test_ranks_split_the_same_reshuffled_epochs(two_processes, one_process):
    _, res = two_processes
    r0, r1 = res["ddp"]
    orders = []
    for e in range(3):
        a, b = r0["epochs"][e], r1["epochs"][e]
        assert not set(a) & set(b) and sorted(a + b) == list(range(128))
        # interleaved, the two shards are the single process's order
        assert [i for pair in zip(a, b) for i in pair] == one_process["epochs"][e]
        orders.append(one_process["epochs"][e])
    assert orders[0] != orders[1] != orders[2]  # a new permutation per epoch


def test_sharded_checkpoint_resumes_in_one_process(two_processes, config_dir, monkeypatch):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    from zoo.engine import checkpoint as C
    from zoo.engine import trainer as T

    out, res = two_processes
    stopped = res["fsdp_stop"][0]
    run = out / "fsdp_stop"
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == 3 and last["model"] is None and last["world_size"] == 2
    shards = sorted(p.name for p in (run / "checkpoints" / last["sharded"]).glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]  # each process wrote its own

    monkeypatch.setattr(T, "build_model", lambda c: BlockRegressor(features=8))
    cfg = compose_cfg(config_dir, [*COMMON, "data.batch_size=16", "trainer.strategy=fsdp"])
    trainer = T.Trainer(cfg, run, torch.device("cpu"), resume=True)
    trainer.setup()  # one process, no process group: DCP reshards 2 -> 1
    assert trainer.step == 3
    got = dict(trainer.model.named_parameters())
    assert all(torch.equal(got[k], stopped["weights"][k]) for k in stopped["weights"])
    optim = get_optimizer_state_dict(trainer.model, trainer.optimizers["main"],
                                     options=StateDictOptions(full_state_dict=True))
    want = stopped["optim"]["main"]["state"]
    assert want.keys() == optim["state"].keys()
    for k in want:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(optim["state"][k][name]), torch.as_tensor(want[k][name]))
    # evaluate.py and init_from read the whole weights from the shards
    whole = C.load(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(whole[k], stopped["weights"][k]) for k in stopped["weights"])

    # and the run goes on in one process, writing one shard from then on
    summary = T.Trainer(cfg, run, torch.device("cpu"), resume=True).fit()
    assert summary["steps"] == 10
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    folders = sorted(p.name for p in (run / "checkpoints").glob("last.dcp.*"))
    assert folders == [last["sharded"]] and last["world_size"] == 1
    assert [p.name for p in (run / "checkpoints" / last["sharded"]).glob("*.distcp")] == ["__0_0.distcp"]


def test_sync_batchnorm_on_cpu_is_one_line(two_processes):
    _, res = two_processes
    for r in res["syncbn"]:
        assert "trainer.sync_batchnorm=true needs CUDA" in r["error"]


def test_sync_batchnorm_conversion_keeps_parameters_and_keys():
    m = BlockRegressor(features=8, norm=True)
    keys, params = list(m.state_dict()), list(m.parameters())
    assert D.convert_sync_batchnorm(m) == 3
    assert sum(isinstance(x, torch.nn.SyncBatchNorm) for x in m.modules()) == 3
    assert list(m.state_dict()) == keys  # checkpoints do not change
    assert all(a is b for a, b in zip(m.parameters(), params))  # optimizers stay valid
    assert D.convert_sync_batchnorm(BlockRegressor(features=8)) == 0


def test_default_fsdp_units_are_the_outermost_module_list_members():
    from zoo.models.transformer.gpt import GPT

    m = BlockRegressor(features=8)
    assert m.fsdp_units() == list(m.blocks)
    gpt = GPT(vocab_size=40, n_layer=3, n_embd=16, n_head=2)
    assert gpt.fsdp_units() == list(gpt.blocks)


def test_fsdp_run_in_one_process_through_the_cli(train, tmp_path, capsys):
    """strategy=fsdp without torchrun: nothing is sharded, the checkpoint format is the
    sharded one; it resumes exactly, evaluate.py reads it, and a lost shard folder is one
    line."""
    import shutil

    from tests.helpers import one_line_error
    from zoo.cli import evaluate_main

    base = ["model=two_group", "trainer.progress=false", "logger=none", "trainer.strategy=fsdp",
            "model.dropout=0.0", "trainer.max_steps=8", "trainer.val_every_steps=4"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert train(*base, f"hydra.run.dir={full}") == 0
    assert train(*base, "trainer.interrupt_at=3", f"hydra.run.dir={part}") == 0
    assert train(f"resume={part}") == 0
    a = whole_weights(full)
    b = whole_weights(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert evaluate_main([f"run={part}", "split=val", f"output={tmp_path / 'm.json'}",
                          f"ckpt={part / 'checkpoints' / 'last.pt'}"]) == 0
    capsys.readouterr()
    last = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
    shutil.rmtree(part / "checkpoints" / last["sharded"])
    assert train(f"resume={part}", "trainer.max_steps=10") == 2
    assert "sharded checkpoint" in one_line_error(capsys)


def whole_weights(run: Path) -> dict:
    from zoo.engine import checkpoint as C

    return C.load(run / "checkpoints" / "last.pt")["model"]
