"""scripts/gpu_reproduce.sh, rehearsed on the CPU: the chooser's branches, the archive it packs,
`scripts/results.py keep-archive` on what comes back, and the whole command end to end on
tiny sizes under JAX (torch is not installed on these machines; the script says so and skips it).
"""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu = load("gpu_reproduce_under_test", "scripts/gpu_reproduce.py")
results_script = load("results_for_gpu_test", "scripts/results.py")

MEDIUM = {"startup_seconds": 20.0, "epoch_seconds": 10.0, "finish_seconds": 40.0}
LARGE = {"startup_seconds": 30.0, "epoch_seconds": 14.0, "finish_seconds": 60.0}


def chosen(seconds_left, large=LARGE, **kwargs):
    choice = gpu.choose(seconds_left, MEDIUM, large, margin=0.1, pack_seconds=10,
                        side_by_side_slowdown=1.5, **kwargs)
    return choice["branch"], [(r["config"], r["epochs"], r["truncated"]) for r in choice["runs"]]


def test_choose_takes_each_branch_in_the_order_of_preference():
    # sparselarge_iss: 30 + 55 x 14 + 60 = 860 s; x 1.1 + 10 = 956 s.
    assert chosen(957) == ("sparselarge_iss", [("sparselarge_iss", 55, False)])
    # side by side: 20 + (39 x 10 + 40) x 1.5 = 665 s -> 741.5 s.
    both = ("medium+medium_iss", [("medium", 39, False), ("medium_iss", 39, False)])
    assert chosen(955) == both and chosen(742) == both
    assert chosen(2000, large=None) == both  # the large model not probed: it cannot fit
    # medium_iss alone: 20 + 390 + 40 = 450 s -> 505 s.
    assert chosen(741) == ("medium_iss", [("medium_iss", 39, False)])
    assert chosen(506) == ("medium_iss", [("medium_iss", 39, False)])
    # truncated: (504 - 10) / 1.1 = 449.1 s; - 20 - 40 = 389.1 s; / 10 = 38 epochs.
    assert chosen(504) == ("medium_iss_truncated", [("medium_iss", 38, True)])
    # (300 - 10) / 1.1 = 263.6 s; - 60 = 203.6 s: 20 epochs.
    assert chosen(300) == ("medium_iss_truncated", [("medium_iss", 20, True)])
    # not one epoch: nothing starts.
    assert chosen(80) == ("none", [])


def test_choose_respects_memory_and_candidates():
    assert chosen(900, side_by_side_memory=False)[0] == "medium_iss"
    assert chosen(2000, candidates=("medium_iss",)) == ("medium_iss", [("medium_iss", 39, False)])
    assert chosen(2000, candidates=("medium", "medium_iss"))[0] == "medium+medium_iss"
    assert chosen(2000, candidates=("medium",)) == ("none", [])
    choice = gpu.choose(300, MEDIUM, None, margin=0.1, pack_seconds=10)
    text = "\n".join(choice["arithmetic"])
    assert "20 of 39 epochs" in text and "does not fit" in text and "not probed" in text


def test_configs_epochs_and_the_rehearsal_overrides():
    assert gpu.effective_flags("sparselarge_iss")["epochs"] == "55"
    assert gpu.effective_flags("medium")["epochs"] == "39"
    tiny = gpu.effective_flags("medium_iss", "ptb/configs/tiny_gpu_rehearsal.flags")
    assert tiny["epochs"] == "2" and tiny["hidden_sizes"] == "16,12"
    assert tiny["iss_strength"] == "0.002"  # each config keeps its own recipe


def fake_run(tmp_path, device_root, finished=True, data_name="ptb"):
    """A run folder as a trainer leaves it on another machine, and the state that started it."""
    workdir = tmp_path / "state" / "medium_iss"
    (workdir / "plots").mkdir(parents=True)
    data = f"{device_root}/.gpu_data/{data_name}"
    there = f"{device_root}/runs/gpu/medium_iss"
    (workdir / "flags.txt").write_text(f"--data_dir={data}\n--workdir={there}\n--epochs=39\n")
    (workdir / "metrics.csv").write_text("epoch,valid_perplexity\n1,200.0\n")
    (workdir / "history.json").write_text(json.dumps([{"epoch": 1}]))
    (workdir / "plan.json").write_text(json.dumps({"layers": []}))
    (workdir / "plots" / "progress.png").write_bytes(b"png")
    (workdir / "checkpoint.npz").write_bytes(b"big")  # never travels
    if finished:
        (workdir / "results.json").write_text(json.dumps(
            {"run": {"commit": "abc", "config": {"workdir": there, "data_dir": data}},
             "epochs": 39}))
    (workdir / "exit_code").write_text("0\n" if finished else "1\n")
    (workdir / "train.log").write_text("epoch 1 ...\n")
    job = {"config": "medium_iss", "name": "medium_iss", "epochs": 39, "truncated": False,
           "workdir": str(workdir), "backend": "torch", "command": ["python", "ptb/train.py"]}
    state = {"recipe_epochs": {"medium_iss": 39}, "choice": {"branch": "medium_iss"},
             "data": data, "probes": {"medium_iss": {"step_seconds": 0.01}}}
    return job, state


def test_archive_layout_and_keep_archive_makes_paths_relative(tmp_path, monkeypatch):
    device_root = "/device/repo"
    job, state = fake_run(tmp_path, device_root)
    monkeypatch.setattr(gpu, "ROOT", device_root)  # packed as on the lent machine
    path, manifest = gpu.pack(job, state, str(tmp_path / "out"))
    with tarfile.open(path) as tar:
        names = sorted(tar.getnames())
    assert names == sorted(f"medium_iss/{n}" for n in (
        "results.json", "metrics.csv", "flags.txt", "history.json", "plan.json",
        "plots/progress.png", "train.log", "device.json"))
    assert manifest["finished"] and manifest["root"] == device_root
    assert manifest["workdir"] == job["workdir"] and manifest["probe"] == {"step_seconds": 0.01}

    # Paths under the repository there (not the recorded workdir) stay under it here.
    monkeypatch.setattr(results_script, "RESULTS", str(tmp_path / "results"))
    results_script.keep_archive(path)
    kept = tmp_path / "results" / "ptb" / "medium_iss"
    assert (kept / "flags.txt").read_text() == (
        "--data_dir=../shared/data/ptb\n--workdir=runs/gpu/medium_iss\n--epochs=39\n")
    assert sorted(os.listdir(kept)) == ["flags.txt", "history.json", "metrics.csv", "plan.json",
                                        "plots", "results.json"]


def test_keep_archive_maps_the_recorded_workdir_and_refuses_what_it_cannot(tmp_path, monkeypatch):
    device_root = "/device/repo"
    job, state = fake_run(tmp_path, device_root)
    # The trainer ran in the recorded workdir: its flags and results name that folder.
    for name in ("flags.txt", "results.json"):
        f = os.path.join(job["workdir"], name)
        text = open(f).read().replace(f"{device_root}/runs/gpu/medium_iss", job["workdir"])
        open(f, "w").write(text)
    monkeypatch.setattr(gpu, "ROOT", device_root)
    path, _ = gpu.pack(job, state, str(tmp_path / "out"))
    monkeypatch.setattr(results_script, "RESULTS", str(tmp_path / "results"))
    results_script.keep_archive(path, config="medium_iss_gpu")
    kept = tmp_path / "results" / "ptb" / "medium_iss_gpu"
    assert "--workdir=runs/ptb/medium_iss_gpu\n" in (kept / "flags.txt").read_text()
    got = json.loads((kept / "results.json").read_text())
    assert got["run"]["config"] == {"workdir": "runs/ptb/medium_iss_gpu",
                                    "data_dir": "../shared/data/ptb"}

    # A path of that machine outside the repository is refused, and nothing is written.
    with open(os.path.join(job["workdir"], "flags.txt"), "a") as f:
        f.write("--restore_from=/opt/elsewhere/ckpt.npz\n")
    path, _ = gpu.pack(job, state, str(tmp_path / "out"))
    with pytest.raises(SystemExit, match="/opt/elsewhere/ckpt.npz"):
        results_script.keep_archive(path, config="other")
    assert not (tmp_path / "results" / "ptb" / "other" / "flags.txt").exists()

    # An unfinished run is not kept.
    job, state = fake_run(tmp_path / "b", device_root, finished=False)
    path, manifest = gpu.pack(job, state, str(tmp_path / "out2"))
    assert not manifest["finished"] and manifest["exit_code"] == 1
    with pytest.raises(SystemExit, match="unfinished"):
        results_script.keep_archive(path, config="unfinished")


@pytest.mark.slow
def test_the_command_end_to_end_on_tiny_sizes_under_jax(tmp_path, ptb_dir, monkeypatch):
    pytest.importorskip("jax")
    out, state = tmp_path / "out", tmp_path / "state"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": ROOT}
    env.pop("KERAS_BACKEND", None)
    command = [os.path.join(ROOT, "scripts", "gpu_reproduce.sh"), "run", "--data", ptb_dir,
               "--state_dir", str(state), "--out", str(out), "--extra_flagfile",
               os.path.join(ROOT, "ptb", "configs", "tiny_gpu_rehearsal.flags"),
               "--probe_steps", "5", "--candidates", "medium_iss", "--budget_s", "400",
               "--command_s", "120", "--backends", "torch,jax"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    assert "Keras 3.15.1 already imports: nothing installed." in text
    if importlib.util.find_spec("torch") is None:
        assert "[probe] torch: not installed here, skipped." in text
    assert "[probe] medium_iss under jax:" in text and "LSTM path: the generic RNN loop" in text
    assert "[choose] medium_iss alone:" in text and "-> medium_iss: ['medium_iss']" in text
    assert sorted(os.listdir(out)) == ["gpu_reproduce.json", "medium_iss.tar.gz"]
    summary = json.loads((out / "gpu_reproduce.json").read_text())
    assert summary["backend"] == "jax" and summary["choice"]["branch"] == "medium_iss"
    assert summary["packed"] == [{"archive": "medium_iss.tar.gz", "finished": True,
                                  "epochs_done": 2, "exit_code": 0}]
    probe = summary["probes"]["medium_iss"]
    assert probe["steps_per_epoch"] == 14 and probe["step_seconds"] > 0  # 6000 tokens, 20 x 20
    with tarfile.open(out / "medium_iss.tar.gz") as tar:
        names = set(tar.getnames())
        flags = tar.extractfile("medium_iss/flags.txt").read().decode()
    assert {"medium_iss/results.json", "medium_iss/metrics.csv", "medium_iss/flags.txt",
            "medium_iss/history.json", "medium_iss/plan.json", "medium_iss/device.json"} <= names
    assert "--noexport" in flags and "--iss_strength=0.002" in flags

    # `collect` (the next device call) finds them finished and packs again at once.
    again = subprocess.run([os.path.join(ROOT, "scripts", "gpu_reproduce.sh"), "collect",
                            "--state_dir", str(state), "--out", str(out), "--wait_s", "5"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "medium_iss: exit 0" in again.stdout, again.stderr[-2000:]

    monkeypatch.setattr(results_script, "RESULTS", str(tmp_path / "results"))
    results_script.keep_archive(str(out / "medium_iss.tar.gz"))
    kept = tmp_path / "results" / "ptb" / "medium_iss"
    flags = (kept / "flags.txt").read_text()
    assert "--workdir=runs/ptb/medium_iss\n" in flags and "--data_dir=../shared/data/ptb\n" in flags
    results = json.loads((kept / "results.json").read_text())
    assert results["epochs"] == 2 and results["run"]["backend"] == "jax"
    assert not [s for s in results_script.ABSOLUTE_PATH.findall((kept / "results.json").read_text())]
