"""The lead's utilities: configuration, atomic IO and checkpoints, seeding, devices, run folders."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest
import torch

from composedft.config import (ConfigError, apply_overrides, cfg_from_dict, cfg_to_dict, describe_fields,
                               parse_config, parse_overrides)
from composedft.devices import autocast, resolve_device
from composedft.io import (CheckpointError, DataFileError, append_csv_rows, atomic_write_csv, atomic_write_json,
                           atomic_write_jsonl, load_checkpoint, read_csv, read_json, read_jsonl, save_checkpoint)
from composedft.runs import RunDir
from composedft.seeding import derive_seed, np_rng, seed_everything, torch_generator


@dataclass(frozen=True)
class Cfg:
    lr: float = 0.1                      # a number
    steps: int = 10                      # an integer
    name: str = "run"                    # a string
    flag: bool = False                   # a boolean
    mode: Literal["a", "b"] = "a"        # a choice
    widths: tuple[int, ...] = (4, 8)     # a list
    cap: int | None = None               # optional


PRESETS = {"small": Cfg(), "big": Cfg(steps=1000, widths=(64, 64, 64))}


def test_describe_fields_round_trips_through_the_parser():
    text = describe_fields(PRESETS["big"])
    assert text.splitlines()[1] == "  --steps=1000" and "  --widths=64,64,64" in text.splitlines()
    # every line but the None one is a valid override that rebuilds the same config
    args = [ln.strip() for ln in text.splitlines() if not ln.endswith("=None")]
    cfg, _ = parse_config(Cfg, PRESETS, ["--preset", "small", *args])
    assert cfg == PRESETS["big"]


def test_parse_config_presets_and_overrides():
    cfg, _ = parse_config(Cfg, PRESETS, ["--preset", "big", "--lr=0.5", "--flag", "true", "--mode=b",
                                         "--widths=1,2,3", "--cap=7", "--name", "x y"])
    assert cfg == Cfg(lr=0.5, steps=1000, name="x y", flag=True, mode="b", widths=(1, 2, 3), cap=7)
    assert parse_config(Cfg, PRESETS, [])[0] == Cfg()  # the first preset by default
    assert parse_config(Cfg, PRESETS, ["--cap=none", "--steps=1_000"])[0] == Cfg(steps=1000, cap=None)


@pytest.mark.parametrize("argv,match", [
    (["--lrr=0.1"], "unknown field 'lrr'"),
    (["--steps=1.5"], "field 'steps': expected an integer"),
    (["--lr=fast"], "field 'lr': expected a number"),
    (["--flag=maybe"], "field 'flag': expected a boolean"),
    (["--mode=c"], r"field 'mode': 'c' is not one of \['a', 'b'\]"),
    (["--widths=1,x"], "field 'widths': expected an integer"),
    (["--preset", "huge"], "unknown preset 'huge' \\(choose from small, big\\)"),
    (["stray"], "unexpected argument 'stray'"),
    (["--lr"], "missing value for '--lr'"),
])
def test_parse_config_refuses_bad_values(argv, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(Cfg, PRESETS, argv)


def test_config_json_file(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"lr": 0.01, "widths": [3, 3], "flag": True}))
    cfg, _ = parse_config(Cfg, PRESETS, ["--config", str(good), "--steps=3"])
    assert cfg == Cfg(lr=0.01, widths=(3, 3), flag=True, steps=3)
    bad = tmp_path / "bad.json"
    bad.write_text('{"lr": 0.01,')
    with pytest.raises(ConfigError, match=r"bad\.json: cannot read config JSON"):
        parse_config(Cfg, PRESETS, ["--config", str(bad)])
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"learning_rate": 0.01}')
    with pytest.raises(ConfigError, match=r"unknown\.json: unknown field 'learning_rate'"):
        parse_config(Cfg, PRESETS, ["--config", str(unknown)])
    typed = tmp_path / "typed.json"
    typed.write_text('{"flag": "sometimes"}')
    with pytest.raises(ConfigError, match=r"typed\.json: field 'flag'"):
        parse_config(Cfg, PRESETS, ["--config", str(typed)])
    with pytest.raises(ConfigError, match=r"missing\.json: cannot read config JSON"):
        parse_config(Cfg, PRESETS, ["--config", str(tmp_path / "missing.json")])


def test_cfg_dict_round_trip_and_overrides():
    cfg = Cfg(lr=0.3, widths=(1, 2), cap=5, mode="b")
    d = cfg_to_dict(cfg)
    assert d["widths"] == [1, 2] and json.loads(json.dumps(d)) == d
    assert cfg_from_dict(Cfg, d) == cfg
    assert apply_overrides(cfg, {"steps": 4}) == Cfg(lr=0.3, widths=(1, 2), cap=5, mode="b", steps=4)
    with pytest.raises(ConfigError, match="field 'steps': expected an integer, got True"):
        apply_overrides(cfg, {"steps": True})
    assert parse_overrides(["--a=1", "--b", "2"]) == {"a": "1", "b": "2"}


def test_json_csv_jsonl_round_trips_and_errors(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"x": np.float64(1.5), "t": torch.tensor([1, 2]), "p": tmp_path})
    assert read_json(tmp_path / "r.json") == {"x": 1.5, "t": [1, 2], "p": str(tmp_path)}
    (tmp_path / "bad.json").write_text('{\n  "a": 1,\n  oops\n}')
    with pytest.raises(DataFileError, match=r"bad\.json: line 3: invalid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(DataFileError, match=r"nope\.json: file not found"):
        read_json(tmp_path / "nope.json")
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y,z"}]
    atomic_write_csv(tmp_path / "r.csv", rows)
    assert read_csv(tmp_path / "r.csv") == [{"a": "1", "b": "x"}, {"a": "2", "b": "y,z"}]
    append_csv_rows(tmp_path / "r.csv", [{"a": 3, "b": "w", "c": 0.5}])
    assert read_csv(tmp_path / "r.csv")[-1] == {"a": "3", "b": "w", "c": "0.5"}
    assert read_csv(tmp_path / "r.csv")[0]["c"] == ""
    with pytest.raises(DataFileError, match=r"none\.csv: file not found"):
        read_csv(tmp_path / "none.csv")
    atomic_write_jsonl(tmp_path / "r.jsonl", [{"i": 1}, {"i": 2}])
    assert read_jsonl(tmp_path / "r.jsonl") == [{"i": 1}, {"i": 2}]
    (tmp_path / "bad.jsonl").write_text('{"i": 1}\n[2]\n')
    with pytest.raises(DataFileError, match=r"bad\.jsonl: line 2: expected a JSON object"):
        read_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text('{"i": 1}\n\n{"i": \n')
    with pytest.raises(DataFileError, match=r"bad2\.jsonl: line 3: invalid JSON"):
        read_jsonl(tmp_path / "bad2.jsonl")


class _Evil:
    pass


def test_checkpoint_round_trip_and_clear_errors(tmp_path):
    obj = {"w": torch.randn(3, 4, dtype=torch.float64), "step": 7, "nested": {"b": torch.arange(3)}, "name": "x"}
    save_checkpoint(tmp_path / "c.pt", obj)
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["w"], obj["w"]) and back["step"] == 7 and torch.equal(back["nested"]["b"], torch.arange(3))
    data = (tmp_path / "c.pt").read_bytes()
    for n in (0, 10, len(data) // 2, len(data) - 5):
        (tmp_path / "cut.pt").write_bytes(data[:n])
        with pytest.raises(CheckpointError, match=r"cut\.pt: cannot load checkpoint"):
            load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match=r"absent\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt: expected a dict checkpoint, got list"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")  # weights_only refuses arbitrary objects
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load_checkpoint(tmp_path / "evil.pt")


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c.pt", {"v": torch.tensor([1.0])})
    atomic_write_json(tmp_path / "r.json", {"v": 1})

    def boom(src, dst):
        raise OSError("interrupted")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="interrupted"):
        save_checkpoint(tmp_path / "c.pt", {"v": torch.tensor([2.0])})
    with pytest.raises(OSError, match="interrupted"):
        atomic_write_json(tmp_path / "r.json", {"v": 2})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["v"], torch.tensor([1.0]))
    assert read_json(tmp_path / "r.json") == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "r.json"]  # no temporary leftovers


def test_seeding_is_reproducible():
    seed_everything(3)
    a = (np.random.rand(), torch.rand(2))
    seed_everything(3)
    b = (np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert np_rng(1).random() == np_rng(1).random() != np_rng(2).random()
    assert torch.equal(torch.rand(3, generator=torch_generator(4)), torch.rand(3, generator=torch_generator(4)))
    s = derive_seed(0, "denoiser", 3)
    assert s == derive_seed(0, "denoiser", 3) and 0 <= s < 2 ** 32
    assert len({s, derive_seed(0, "denoiser", 4), derive_seed(1, "denoiser", 3), derive_seed(0, "denoiser3")}) == 4


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(RuntimeError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with autocast("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # no autocast on CPU


def test_run_dir_writes_config_and_manifest(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config(Cfg(lr=0.2))
    assert read_json(tmp_path / "run" / "config.json")["lr"] == 0.2
    run.write_manifest(seed=4, device="cpu", extra={"note": "x"})
    m = read_json(tmp_path / "run" / "manifest.json")
    assert m["seed"] == 4 and m["device"] == "cpu" and m["note"] == "x" and m["wall_time_s"] >= 0
    assert m["environment"]["torch"] == torch.__version__ and "commit" in m["environment"]
    # float results depend on the CPU kernels torch picks: the manifest names them
    assert m["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    run.write_manifest(seed=5)
    m2 = read_json(tmp_path / "run" / "manifest.json")
    assert m2["seed"] == 5 and m2["device"] == "cpu" and m2["note"] == "x"  # updated, not lost


def test_manifest_records_the_commit_the_run_started_from(tmp_path, monkeypatch):
    import shutil
    import subprocess
    if shutil.which("git") is None:
        pytest.skip("needs git")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=repo,  # noqa: E731
                                    check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (repo / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-qm", "first")
    first = git("rev-parse", "HEAD")
    from composedft import runs
    real = runs.git_commit
    monkeypatch.setattr(runs, "git_commit", lambda root=None: real(repo))  # as if the package lived in repo
    run = RunDir(tmp_path / "run")  # the run starts on `first` ...
    (repo / "a.txt").write_text("2")
    git("commit", "-qam", "second")  # ... and a commit lands while it runs
    run.write_manifest(seed=0)
    env = read_json(tmp_path / "run" / "manifest.json")["environment"]
    assert env["commit"] == first != git("rev-parse", "HEAD") and env["dirty"] is False


def test_binary_garbage_in_text_files_names_the_file(tmp_path):
    for name, reader in (("g.json", read_json), ("g.jsonl", read_jsonl), ("g.csv", read_csv)):
        (tmp_path / name).write_bytes(b"\xff\xfe\x00garbage\x80")
        with pytest.raises(DataFileError, match=name.replace(".", r"\.")):
            reader(tmp_path / name)
