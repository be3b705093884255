"""The simulated server end to end: process tree and titles, libraries
mapped, plugins in every process, ground truth against the workload, clean
stops, and option checks."""
import csv
import json
import os
import signal
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import start_serve, wait_for

from simvllm.model import EAGER, FULL, MAX_CAPTURE_SIZE, PIECEWISE, expected_launches
from simvllm.scheduler import PROMPT_LEN, Scheduler


def read_truth(truth_dir: Path) -> dict:
    """{pid: [rows]} of every truth_<pid>.csv in `truth_dir`."""
    return {int(p.stem.split("_")[1]): list(csv.DictReader(p.open()))
            for p in truth_dir.glob("truth_*.csv")}


def run_to_end(tmp_path, *args, timeout=60):
    """Run serve to completion; returns (server.json, truth by pid)."""
    proc = start_serve(*args, "--truth-dir", tmp_path)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads((tmp_path / "server.json").read_text()), read_truth(tmp_path)


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode()


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def check_against_workload(rows, seed=0, eager=False):
    """Each row is the step the scheduler planned, with the launches the
    model makes in the mode that step's shape and size call for; returns
    those modes."""
    sched = Scheduler(seed)
    modes = []
    for i, row in enumerate(rows, 1):
        _, plan = sched.schedule(0.0)
        assert int(row["step"]) == i
        got = (row["phase"], int(row["batch_size"]), int(row["num_tokens"]),
               int(row["num_prefill_reqs"]), int(row["num_prefill_tokens"]))
        assert got == (plan.phase, plan.batch_size, plan.num_tokens,
                       plan.num_prefill_reqs, plan.num_prefill_tokens), f"step {i}"
        mode = (EAGER if eager or plan.num_tokens > MAX_CAPTURE_SIZE
                else FULL if plan.phase == "decode" else PIECEWISE)
        modes.append(mode)
        want = expected_launches(mode)
        assert (int(row["launches"]), int(row["graph_launches"])) == (want.kernels, want.graphs)
        assert int(row["output_ready_ns"]) > int(row["begin_ns"])
    return modes


def overlapping_steps(rows) -> int:
    """Steps that began before the previous step's output was ready."""
    return sum(int(b["begin_ns"]) < int(a["output_ready_ns"]) for a, b in zip(rows, rows[1:]))


def test_two_workers_mixed_runners_truth(tmp_path):
    server, truth = run_to_end(tmp_path, "--workers", 2, "--runner", "mixed", "--duration", 3)
    workers = server["workers"]
    assert [(w["title"], w["runner"]) for w in workers] == [
        ("VLLM::Worker_TP0", "v1"), ("VLLM::Worker_TP1", "v2")]
    assert set(truth) == {w["pid"] for w in workers}
    for w in workers:
        rows = truth[w["pid"]]
        assert len(rows) > 300, "a 3 s run should have hundreds of steps"
        assert {(r["pid"], r["runner"], r["title"]) for r in rows} == {
            (str(w["pid"]), w["runner"], w["title"])}
        assert set(Counter(r["phase"] for r in rows)) == {"prefill", "decode", "mixed"}
        # Steps beyond the largest graph run eagerly, the others replay
        # graphs, as a real server's under load.
        assert set(check_against_workload(rows)) == {EAGER, FULL, PIECEWISE}
        assert overlapping_steps(rows) > len(rows) / 2, "async scheduling overlaps steps"


def test_data_parallel_engines(tmp_path):
    """--data-parallel 2: two engines under the API server, titled and with
    workers titled as vLLM's, each serving its own request mix (seed + its
    rank) and writing its own server_dp<d>.json."""
    proc = start_serve("--workers", 2, "--data-parallel", 2, "--duration", 2,
                       "--truth-dir", tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not (tmp_path / "server.json").exists()
    truth = read_truth(tmp_path)
    for dp in (0, 1):
        server = json.loads((tmp_path / f"server_dp{dp}.json").read_text())
        assert server["engine_core"]["title"] == f"VLLM::EngineCore_DP{dp}"
        assert server["engine_core"]["dp_rank"] == dp
        assert [w["title"] for w in server["workers"]] == [
            f"VLLM::Worker_DP{dp}_TP0", f"VLLM::Worker_DP{dp}_TP1"]
        for w in server["workers"]:
            rows = truth[w["pid"]]
            assert len(rows) > 100
            check_against_workload(rows, seed=dp)
    assert len(truth) == 4


def test_uni_executor_eager_sync_spawn(tmp_path):
    server, truth = run_to_end(tmp_path, "--workers", 1, "--runner", "v2", "--eager", "--sync",
                               "--start-method", "spawn", "--duration", 1.5)
    engine = server["engine_core"]
    assert server["workers"] == []
    assert server["runners"] == [{"pid": engine["pid"], "title": "VLLM::EngineCore",
                                  "rank": 0, "runner": "v2"}]
    rows = truth[engine["pid"]]
    check_against_workload(rows, eager=True)
    assert overlapping_steps(rows) == 0, "--sync: each output comes before the next step"


def test_warm_up_launches_but_records_no_step(tmp_path, monkeypatch):
    """profile_run and capture_model (V1: _dummy_run; V2: execute_model with
    dummy_run=True) launch kernels, yet write no truth row and count no step."""
    import multiprocessing

    from simvllm import cuda
    from simvllm.cli import parse
    from simvllm.worker import Worker
    for rank in (0, 1):  # mixed: V1 then V2
        opts = parse(["--runner", "mixed", "--truth-dir", str(tmp_path / str(rank))])
        before = cuda.libs().launch_counts()[0]
        replies, reply = multiprocessing.Pipe(duplex=False)
        worker = Worker(opts, rank, "test", reply)
        worker.close()
        assert cuda.libs().launch_counts()[0] - before > 100
        assert worker.runner.num_steps == 0
        lines = (tmp_path / str(rank) / f"truth_{os.getpid()}.csv").read_text().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pid,step,begin_ns,")


def test_process_tree_titles_libraries_and_clean_stop(tmp_path, serve):
    api = serve("--workers", 2, "--truth-dir", tmp_path)
    wait_for(tmp_path / "server.json", api)
    server = json.loads((tmp_path / "server.json").read_text())
    engine = server["engine_core"]["pid"]
    assert server["api_server"]["pid"] == api.pid
    assert ppid(engine) == api.pid and cmdline(engine) == "VLLM::EngineCore"
    for rank, w in enumerate(server["workers"]):
        assert ppid(w["pid"]) == engine
        assert cmdline(w["pid"]) == f"VLLM::Worker_TP{rank}"
        assert len(os.listdir(f"/proc/{w['pid']}/task")) >= 2, "main and output threads"
        maps = Path(f"/proc/{w['pid']}/maps").read_text()
        for name in ("nvidia/cu13/lib/libcudart.so.13",
                     "torchvision.libs/libcudart.faf08d9a.so.13",
                     "driver/libcuda.so.580.159.04", "nvidia/cublas/lib/libcublas.so.13"):
            assert name in maps
    time.sleep(0.5)
    api.send_signal(signal.SIGTERM)
    assert api.wait(timeout=20) == 0
    pids = [engine] + [w["pid"] for w in server["workers"]]
    assert not [p for p in pids if alive(p)]
    truth = read_truth(tmp_path)
    for w in server["workers"]:
        assert len(truth[w["pid"]]) > 0


def test_workers_die_with_a_killed_server(tmp_path, serve):
    api = serve("--workers", 2, "--truth-dir", tmp_path)
    wait_for(tmp_path / "server.json", api)
    server = json.loads((tmp_path / "server.json").read_text())
    pids = [server["engine_core"]["pid"]] + [w["pid"] for w in server["workers"]]
    api.kill()
    deadline = time.monotonic() + 5
    while [p for p in pids if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)]


def test_start_delay_lets_a_tracer_attach_first(tmp_path, serve):
    api = serve("--workers", 2, "--start-delay", 1.5, "--truth-dir", tmp_path)
    time.sleep(0.8)
    assert api.poll() is None
    children = Path(f"/proc/{api.pid}/task/{api.pid}/children").read_text().split()
    assert children == []
    wait_for(tmp_path / "server.json", api)


def test_general_plugins_run_in_every_process(tmp_path):
    """An entry point of group vllm.general_plugins, allowed by VLLM_PLUGINS,
    runs once per process image: in every process under spawn; under fork
    only in the API server, whose already-loaded state the children inherit
    (vLLM's once-per-process guard is inherited too)."""
    site = tmp_path / "site"
    dist = site / "recorder_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[vllm.general_plugins]\nrecorder = recorder_plugin:register\n")
    (site / "recorder_plugin.py").write_text(textwrap.dedent(f"""
        import os
        def register():
            with open({str(tmp_path / 'calls')!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
    """))
    truth_dir = tmp_path / "truth"
    env = {"PYTHONPATH": str(site), "VLLM_PLUGINS": "recorder"}
    for method in ("fork", "spawn"):
        (tmp_path / "calls").unlink(missing_ok=True)
        proc = start_serve("--workers", 2, "--duration", 0.3, "--start-method", method,
                           "--truth-dir", truth_dir, env=env)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        server = json.loads((truth_dir / "server.json").read_text())
        expected = [server["api_server"]["pid"]]
        if method == "spawn":
            expected += [server["engine_core"]["pid"]] + [w["pid"] for w in server["workers"]]
        assert sorted(map(int, (tmp_path / "calls").read_text().split())) == sorted(expected)

    (tmp_path / "calls").unlink()
    proc = start_serve("--duration", 0.2, env=dict(env, VLLM_PLUGINS="other"))
    assert proc.wait(timeout=60) == 0
    assert not (tmp_path / "calls").exists(), "VLLM_PLUGINS filters plugins out"


@pytest.mark.parametrize("args,message", [
    (["--workers", "0"], "--workers must be 1 to 8"),
    (["--workers", "two"], "--workers must be an integer"),
    (["--data-parallel", "5"], "--data-parallel must be 1 to 4"),
    (["--duration", "-1"], "--duration must be finite and >= 0"),
    (["--rate", "fast"], "--rate must be a number"),
    (["--start-delay", "nan"], "--start-delay must be finite and >= 0"),
    (["--runner", "v3"], "invalid choice: 'v3'"),
    (["--start-method", "forkserver"], "invalid choice: 'forkserver'"),
    (["--truth-dir", "/proc/no/such"], "--truth-dir /proc/no/such"),
])
def test_bad_options_are_refused(args, message):
    proc = start_serve(*args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert message in err


def test_rate_paces_requests(tmp_path):
    """--rate 5 for 2 s admits about 10 requests: their prompts (at most
    PROMPT_LEN[1] tokens each, plus recomputation after preemption) bound the
    prefill work, far below what back-to-back waves prefill in 2 s."""
    _, truth = run_to_end(tmp_path, "--rate", 5, "--duration", 2)
    (rows,) = truth.values()
    prefill_tokens = sum(int(r["num_prefill_tokens"]) for r in rows)
    assert 0 < prefill_tokens <= 11 * PROMPT_LEN[1] * 1.5
