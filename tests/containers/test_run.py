"""Tasks inside real containers: staging of the image, what the task sees, signals, endings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fluxlite, writing_into
from tests.containers.conftest import RuntimeEnv, container_job
from tests.httpserver import FaultServer

# what the task prints about itself; parsed by _inside()
PROBE = ("echo uid=$(id -u) gid=$(id -g); echo cwd=$(pwd); env > env.txt; "
         "cat /proc/self/mounts > mounts.txt; cat in.txt > out.txt; echo inside >> out.txt")


def _env(rt: RuntimeEnv, tmp: Path, **extra: str) -> dict[str, str]:
    return {**rt.env, "FLUXLITE_CACHE": str(tmp / "cache"), **extra}


def _record(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "record.json").read_text())


def _inside(wd: Path) -> dict[str, Any]:
    env = dict(line.split("=", 1) for line in (wd / "env.txt").read_text().splitlines()
               if "=" in line)
    mounts = {line.split()[1]: line.split()[3].split(",")
              for line in (wd / "mounts.txt").read_text().splitlines()}
    return {"env": env, "mounts": mounts}


@pytest.mark.parametrize("transport", ["file", "http"])
def test_task_runs_inside(runtime: RuntimeEnv, fl: Fluxlite, tmp_path: Path,
                          transport: str) -> None:
    (tmp_path / "in.txt").write_text("hello\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("shared data\n")
    mode = "rw" if runtime.type == "charliecloud" else "ro"
    with FaultServer() as srv:
        url = runtime.image.url
        if transport == "http":
            url = srv.add("/img.tar", runtime.image.path.read_bytes())
        job = container_job(
            runtime, tmp_path / "cache", PROBE + "; cat /shared/data.txt >> out.txt",
            container={"image": {"url": url, "sha256": runtime.image.sha256},
                       "mounts": [f"{shared}:/shared:{mode}"]},
            environment={"GREETING": "hi there", "PATH": "/bin:/usr/bin"},
            inputs=[{"lfn": "in.txt", "urls": [(tmp_path / "in.txt").as_uri()]}],
            outputs=[{"lfn": "out.txt", "urls": [(tmp_path / "out.txt").as_uri()]}],
            stdout="stdout.txt",
            workdir={"base": str(tmp_path), "keep": "always"})
        p = fl.run("run", str(fl.write_job(job)),
                   env=_env(runtime, tmp_path, FLUXLITE_TEST_HOST_ONLY="leak"))
        if transport == "http":
            assert srv.hits("/img.tar") == 1
    assert p.returncode == 0, p.stderr.decode()
    assert (tmp_path / "out.txt").read_text() == "hello\ninside\nshared data\n"
    rec = _record(tmp_path)
    c = rec["container"]
    assert c["runtime"] == runtime.type and c["version"]
    assert c["digest"] == f"sha256:{runtime.image.sha256}" and c["cache"] == "miss"
    # the worker directory kept: look at what the task saw
    wd = Path(rec["workdir"])
    stdout = (wd / "stdout.txt").read_text()
    assert f"uid={os.getuid()} gid={os.getgid()}" in stdout
    assert "cwd=/srv" in stdout
    seen = _inside(wd)
    assert seen["env"]["GREETING"] == "hi there"
    assert seen["env"]["FLUXLITE_WORKDIR"] == "/srv"
    assert seen["env"]["PATH"] == "/bin:/usr/bin"
    assert "FLUXLITE_TEST_HOST_ONLY" not in seen["env"]
    assert not any(k.startswith("PYTEST") for k in seen["env"])
    assert "/srv" in seen["mounts"] and "rw" in seen["mounts"]["/srv"]
    assert mode in seen["mounts"]["/shared"]
    assert not list(wd.glob(".fluxlite/container-*.env"))  # removed after the task
    assert runtime.containers() == []


def test_cache_hit_second_job(runtime: RuntimeEnv, fl: Fluxlite, tmp_path: Path) -> None:
    job = container_job(runtime, tmp_path / "cache", "true")
    for expect in ("miss", "hit"):
        p = fl.run("run", str(fl.write_job(job)), env=_env(runtime, tmp_path))
        assert p.returncode == 0, p.stderr.decode()
        assert _record(tmp_path)["container"]["cache"] == expect


def test_exit_code_as_bare(runtime: RuntimeEnv, fl: Fluxlite, tmp_path: Path) -> None:
    p = fl.run("run", str(fl.write_job(container_job(runtime, tmp_path / "cache", "exit 7"))),
               env=_env(runtime, tmp_path))
    assert p.returncode == 7, p.stderr.decode()
    assert b"PegasusLite: exitcode 7" in p.stderr


def test_symlinked_input_target_mounted(runtime: RuntimeEnv, fl: Fluxlite,
                                        tmp_path: Path) -> None:
    src = tmp_path / "elsewhere" / "big.dat"
    src.parent.mkdir()
    src.write_text("linked\n")
    job = container_job(runtime, tmp_path / "cache", "cat big.dat > copy.txt",
                        inputs=[{"lfn": "big.dat", "urls": [src.as_uri()], "symlink": True}],
                        outputs=[{"lfn": "copy.txt",
                                  "urls": [(tmp_path / "copy.txt").as_uri()]}])
    p = fl.run("run", str(fl.write_job(job)), env=_env(runtime, tmp_path))
    assert p.returncode == 0, p.stderr.decode()
    assert (tmp_path / "copy.txt").read_text() == "linked\n"
    mounts = _record(tmp_path)["container"]["mounts"]
    if runtime.type == "charliecloud":  # ch-run mounts directories only
        assert f"{src.parent}:{src.parent}:ro" in mounts
    else:
        assert f"{src}:{src}:ro" in mounts


def _start(fl: Fluxlite, rt: RuntimeEnv, tmp: Path, script: str,
           **extra: Any) -> subprocess.Popen[bytes]:
    job = container_job(rt, tmp / "cache", script, workdir={"base": str(tmp)}, **extra)
    return fl.popen("run", str(fl.write_job(job)), env=_env(rt, tmp))


def _wait_until(proc: subprocess.Popen[bytes], ready: Any, timeout: float = 60) -> None:
    """Wait for ``ready()`` while fluxlite runs."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "fluxlite did not get there in time"
        time.sleep(0.05)


def _wait_started(tmp: Path, proc: subprocess.Popen[bytes]) -> None:
    _wait_until(proc, lambda: bool(list(tmp.glob("fluxlite.*/started"))))


def _signal(tmp: Path, proc: subprocess.Popen[bytes], sigs: list[int]) -> tuple[float, bytes]:
    """Send fluxlite the signals once its task runs (half a second apart; the task must
    outlive all but the last); how long fluxlite took after the last, and its stderr."""
    try:
        _wait_started(tmp, proc)
        for i, sig in enumerate(sigs):
            if i:
                time.sleep(0.5)
                assert proc.poll() is None  # the task ignored the signal: the grace runs
            t0 = time.monotonic()
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        return time.monotonic() - t0, err
    finally:
        proc.kill()


def test_term_reaches_task_inside(runtime: RuntimeEnv, fl: Fluxlite, tmp_path: Path) -> None:
    proc = _start(fl, runtime, tmp_path, "touch started; exec sleep 60")
    took, err = _signal(tmp_path, proc, [signal.SIGTERM])
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert took < 4.0, f"TERM took {took:.1f} s to end the task"
    assert runtime.containers() == []


def test_second_term_kills_task_that_ignores_term(runtime: RuntimeEnv, fl: Fluxlite,
                                                  tmp_path: Path) -> None:
    proc = _start(fl, runtime, tmp_path,
                  "trap '' TERM; touch started; while true; do sleep 1; done",
                  limits={"kill_grace": 30})
    took, err = _signal(tmp_path, proc, [signal.SIGTERM, signal.SIGTERM])
    assert proc.returncode == 128 + signal.SIGKILL, err.decode()  # as for a bare task
    assert took < 5.0, f"the second TERM took {took:.1f} s"
    assert runtime.containers() == []


def test_schedule_term_then_kill(runtime: RuntimeEnv, fl: Fluxlite, tmp_path: Path) -> None:
    """The checkpoint TERM at 1 s reaches the task, which only notes it; the KILL follows
    on the schedule."""
    job = container_job(runtime, tmp_path / "cache",
                        "trap 'echo term >> got-term' TERM; while true; do sleep 1; done",
                        limits={"checkpoint_time": 1, "maxwalltime": 11, "kill_grace": 1},
                        workdir={"base": str(tmp_path), "keep": "always"})
    t0 = time.monotonic()
    p = fl.run("run", str(fl.write_job(job)), env=_env(runtime, tmp_path), timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 128 + signal.SIGKILL, p.stderr.decode()
    rec = _record(tmp_path)
    assert rec["task"]["timed_out"] == "kill"
    assert (Path(rec["workdir"]) / "got-term").read_text() == "term\n"
    assert took < 12.0
    assert runtime.containers() == []


def test_kill_of_fluxlite_leaves_no_container(podman: RuntimeEnv, fl: Fluxlite,
                                              tmp_path: Path) -> None:
    """A fluxlite killed outright cannot remove its container; the next one does."""
    first = tmp_path / "first"
    first.mkdir()
    proc = _start(fl, podman, first, "touch started; exec sleep 120")
    try:
        _wait_started(first, proc)
        proc.kill()
        proc.wait()
        assert podman.containers() != []  # still running: nobody could remove it yet
        second = tmp_path / "second"
        second.mkdir()
        p = fl.run("run", str(fl.write_job(container_job(podman, second / "cache", "true"))),
                   env=_env(podman, second))
        assert p.returncode == 0, p.stderr.decode()
        assert b"left by an earlier fluxlite" in p.stderr
        assert podman.containers() == []
    finally:
        proc.kill()


def test_concurrent_jobs_fetch_image_once(runtime: RuntimeEnv, fl: Fluxlite,
                                          tmp_path: Path) -> None:
    with FaultServer() as srv:
        url = srv.add("/img.tar", runtime.image.path.read_bytes(), faults=["slow:0.5"])
        procs = []
        for i in range(3):
            d = tmp_path / f"job{i}"
            d.mkdir()
            job = container_job(runtime, d / "cache", f"echo {i} > mine.txt",
                                container={"image": {"url": url,
                                                     "sha256": runtime.image.sha256}})
            procs.append(fl.popen("run", str(fl.write_job(job, f"job{i}.json")),
                                  env=_env(runtime, tmp_path)))
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], [o[1].decode() for o in outs]
        assert srv.hits("/img.tar") == 1
    caches = sorted(json.loads((tmp_path / f"job{i}" / "record.json").read_text())
                    ["container"]["cache"] for i in range(3))
    assert caches == ["hit", "hit", "miss"]


def test_digest_mismatch_exits_71_before_anything_runs(runtime: RuntimeEnv, fl: Fluxlite,
                                                       tmp_path: Path) -> None:
    wrong = "0" * 64
    job = container_job(runtime, tmp_path / "cache", "touch /srv/ran",
                        container={"image": {"url": runtime.image.url, "sha256": wrong}},
                        workdir={"base": str(tmp_path), "keep": "always"})
    p = fl.run("run", str(fl.write_job(job)), env=_env(runtime, tmp_path))
    assert p.returncode == 71
    err = p.stderr.decode()
    assert "checksum mismatch" in err and "Traceback" not in err
    assert not list(tmp_path.glob("fluxlite.*/ran"))
    assert not (tmp_path / "cache" / "images" / "sha256" / wrong).exists()
    assert _record(tmp_path)["task"] is None


def test_cluster_json_job_list_task_in_container(runtime: RuntimeEnv, fl: Fluxlite,
                                                 tmp_path: Path) -> None:
    jobs = []
    for i in range(2):
        j = container_job(runtime, tmp_path / "cache", f"echo task{i} > o{i}.txt",
                          outputs=[{"lfn": f"o{i}.txt",
                                    "urls": [(tmp_path / f"o{i}.txt").as_uri()]}])
        j.pop("records")
        jobs.append({"fluxlite": 1, "id": f"t{i}", **j})
    lst = tmp_path / "jobs.json"
    lst.write_text(json.dumps(jobs))
    p = fl.run("cluster", str(lst), "--json", str(tmp_path / "cluster.json"),
               env=_env(runtime, tmp_path))
    assert p.returncode == 0, p.stderr.decode()
    assert [(tmp_path / f"o{i}.txt").read_text() for i in range(2)] == ["task0\n", "task1\n"]


def test_concurrent_conversion_threads_share_lock(tmp_path: Path) -> None:
    """Two holders of the cache lock for one digest never overlap."""
    from fluxlite.container.cache import ImageCache

    cache = ImageCache(str(tmp_path / "c"))
    inside: list[int] = []
    overlap = []

    def hold(n: int) -> None:
        with cache.locked("k"):
            inside.append(n)
            overlap.append(len(inside))
            time.sleep(0.1)
            inside.remove(n)

    # flock locks belong to open files: threads with their own descriptors exclude
    # each other as processes do
    ts = [threading.Thread(target=hold, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert overlap == [1, 1, 1]


NOBODY = 65534


@pytest.fixture
def nobody_home() -> Any:
    """A directory of an ordinary user's own (nobody), outside the test's tree (0700,
    root's), removed afterwards; skipped unless this runs as root with setpriv."""
    import shutil
    import tempfile

    if os.getuid() != 0 or shutil.which("setpriv") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, setpriv and unshare to run fluxlite as an ordinary user")
    seen = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", sys.executable, "-c", "import fluxlite, psutil"],
                          env={"PYTHONPATH": os.pathsep.join(sys.path)}, cwd="/",
                          capture_output=True, timeout=60)
    if seen.returncode != 0:
        pytest.skip("an ordinary user cannot read this checkout or its virtualenv (a 0700 "
                    "directory above them, such as mktemp -d's): run the suite from a "
                    "checkout others can read to run these")
    home = Path(tempfile.mkdtemp(prefix="fluxlite-ctr-user-"))
    home.chmod(0o755)
    try:
        yield home
    finally:
        # rootless podman leaves its pause process (holding the user's namespace) behind
        pidfile = home / "run" / "libpod" / "tmp" / "pause.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        shutil.rmtree(home)  # made above, by this fixture


def _run_as_nobody(home: Path, rt: RuntimeEnv, script: str, subids: bool = False,
                   **extra: Any) -> subprocess.CompletedProcess[bytes]:
    """fluxlite run as nobody, in a private mount namespace where /etc/subuid and
    /etc/subgid give nobody subordinate ids when ``subids`` (the real files are untouched)."""
    import shutil
    import sys

    image = home / "image.tar"
    shutil.copyfile(rt.image.path, image)
    job = container_job(rt, home / "cache", script,
                        container={"image": {"url": image.as_uri(), "sha256": rt.image.sha256}},
                        outputs=[{"lfn": "who.txt", "urls": [(home / "who.txt").as_uri()]}],
                        workdir={"base": str(home)}, **extra)
    (home / "job.json").write_text(json.dumps({"fluxlite": 1, **job}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "USER": "nobody",
           "XDG_RUNTIME_DIR": str(home / "run"), "FLUXLITE_CACHE": str(home / "cache"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    if "CONTAINERS_CONF" in rt.env:  # the test's own is in root's tree: a copy nobody reads
        shutil.copyfile(rt.env["CONTAINERS_CONF"], home / "containers.conf")
        env["CONTAINERS_CONF"] = str(home / "containers.conf")
    (home / "run").mkdir(mode=0o700)
    for f in ("subuid", "subgid"):
        (home / f).write_text("nobody:200000:65536\n" if subids else "")
    for p in (home, image, home / "job.json", home / "run"):
        os.chown(p, NOBODY, NOBODY)
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            sys.executable, "-m", "fluxlite", "run", str(home / "job.json")]
    if subids:
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" /etc/subuid && mount --bind "$2" /etc/subgid && shift 2 '
                '&& exec "$@"', "sh", str(home / "subuid"), str(home / "subgid"), *argv]
    return subprocess.run(argv, env=env, capture_output=True, timeout=120, cwd=home)


WHO = 'echo "uid=$(id -u) gid=$(id -g) cwd=$(pwd)" > who.txt'


def test_non_root_user_keeps_its_uid(charliecloud: RuntimeEnv, nobody_home: Path) -> None:
    """Run as an ordinary user, the task inside is that user, not root."""
    p = _run_as_nobody(nobody_home, charliecloud, WHO)
    assert p.returncode == 0, p.stderr.decode()
    assert (nobody_home / "who.txt").read_text() == f"uid={NOBODY} gid={NOBODY} cwd=/srv\n"


def test_rootless_podman_keeps_the_uid(podman: RuntimeEnv, nobody_home: Path) -> None:
    p = _run_as_nobody(nobody_home, podman, WHO, subids=True)
    assert p.returncode == 0, p.stderr.decode()
    assert (nobody_home / "who.txt").read_text() == f"uid={NOBODY} gid={NOBODY} cwd=/srv\n"


def test_rootless_podman_without_subids_refuses(podman: RuntimeEnv, nobody_home: Path) -> None:
    """Without subordinate ids podman would make the user root inside: refused, exit 71,
    before the task runs."""
    p = _run_as_nobody(nobody_home, podman, "touch /srv/ran; " + WHO)
    err = p.stderr.decode()
    assert p.returncode == 71, err
    assert "cannot keep the user's uid inside" in err and "Traceback" not in err
    assert not list(nobody_home.glob("fluxlite.*/ran"))


def test_rootless_podman_checkpoint_in_the_grace_is_staged(podman: RuntimeEnv,
                                                          nobody_home: Path) -> None:
    """Rootless podman: at the checkpoint TERM ``podman run`` may return before its
    container has ended; the container's own end is awaited within kill_grace, so the
    state the task saves in the grace is staged."""
    saved = nobody_home / "saved.ckpt"
    t0 = time.monotonic()
    p = _run_as_nobody(nobody_home, podman,
                       "trap 'sleep 2; echo state > state.ckpt; " + WHO + "; exit 0' TERM; "
                       "while true; do sleep 0.2; done", subids=True,
                       limits={"checkpoint_time": 1, "maxwalltime": 30, "kill_grace": 10},
                       checkpoints=[{"lfn": "state.ckpt", "url": saved.as_uri()}])
    assert saved.read_text() == "state\n", p.stderr.decode()
    assert time.monotonic() - t0 < 60


def _term_when(proc: subprocess.Popen[bytes], ready: Any) -> float:
    """TERM fluxlite once ``ready()``; how long it took to end after that."""
    _wait_until(proc, ready)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    return time.monotonic() - t0


def test_term_while_waiting_for_the_cache_lock(charliecloud: RuntimeEnv, fl: Fluxlite,
                                               tmp_path: Path) -> None:
    from fluxlite.container.cache import ImageCache

    job = container_job(charliecloud, tmp_path / "cache", "touch /srv/ran",
                        workdir={"base": str(tmp_path), "keep": "always"})
    cache = ImageCache(str(tmp_path / "cache" / "images"))
    with cache.locked(charliecloud.image.sha256):  # another job is fetching the image
        proc = fl.popen("run", str(fl.write_job(job)), env=_env(charliecloud, tmp_path))
        try:
            # the worker directory comes just before the container phase, which then waits
            _wait_until(proc, lambda: bool(list(tmp_path.glob("fluxlite.*"))))
            time.sleep(0.5)
            took = _term_when(proc, lambda: True)
        finally:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert took < 3.0
    rec = _record(tmp_path)
    assert rec["failed_phase"] == "container" and rec["task"] is None
    assert not list(tmp_path.glob("fluxlite.*/ran"))


def test_term_during_the_image_fetch_leaves_no_partial_file(charliecloud: RuntimeEnv,
                                                            fl: Fluxlite,
                                                            tmp_path: Path) -> None:
    with FaultServer() as srv:
        url = srv.add("/img.tar", charliecloud.image.path.read_bytes(),
                      faults=["stall:65536:20"])
        job = container_job(charliecloud, tmp_path / "cache", "true",
                            container={"image": {"url": url,
                                                 "sha256": charliecloud.image.sha256}})
        proc = fl.popen("run", str(fl.write_job(job)), env=_env(charliecloud, tmp_path))
        blobs = tmp_path / "cache" / "images" / "sha256"
        try:
            # the image is being written: a named temporary, or an unnamed file open there
            took = _term_when(proc, lambda: bool(list(blobs.glob(".*.tmp-*")))
                              or writing_into(proc.pid, str(blobs)))
        finally:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert took < 3.0
    assert list(blobs.iterdir()) == []  # neither the partial image nor anything else


def _checkpointing_job(rt: RuntimeEnv, tmp: Path, first: str,
                       **limits: float) -> tuple[dict, Path]:
    """A task that, at the TERM, runs ``first`` then takes two seconds to save its state
    and exits 0; the checkpoint's destination."""
    saved = tmp / "saved.ckpt"
    job = container_job(
        rt, tmp / "cache",
        f"trap '{first}sleep 2; echo state > state.ckpt; exit 0' TERM; touch started; "
        "while true; do sleep 0.2; done",
        limits=limits, checkpoints=[{"lfn": "state.ckpt", "url": saved.as_uri()}],
        workdir={"base": str(tmp), "keep": "always"})
    return job, saved


def test_checkpoint_written_in_the_grace_is_staged(runtime: RuntimeEnv, fl: Fluxlite,
                                                   tmp_path: Path) -> None:
    """At the checkpoint TERM the task takes two seconds to save its state and exits; the
    container's own end is awaited (within kill_grace), and the checkpoint is staged."""
    job, saved = _checkpointing_job(runtime, tmp_path, "", checkpoint_time=1, maxwalltime=30,
                                    kill_grace=10)
    t0 = time.monotonic()
    p = fl.run("run", str(fl.write_job(job)), env=_env(runtime, tmp_path), timeout=90)
    took = time.monotonic() - t0
    assert saved.read_text() == "state\n", p.stderr.decode()
    rec = _record(tmp_path)
    assert rec["task"]["duration"] >= 2.5, rec["task"]  # the container's own end
    assert took < 25.0
    assert runtime.containers() == []


def test_checkpoint_saved_after_the_podman_client_is_gone(podman: RuntimeEnv, fl: Fluxlite,
                                                          tmp_path: Path) -> None:
    """``podman run`` may return before its container ends (a client that returns at the
    TERM, or is killed): the container still gets the rest of kill_grace to save its state
    and end, as a bare task would, and only then is it removed."""
    import psutil

    job, saved = _checkpointing_job(podman, tmp_path, "touch got-term; ", checkpoint_time=2,
                                    maxwalltime=40, kill_grace=15)
    proc = fl.popen("run", str(fl.write_job(job)), env=_env(podman, tmp_path))
    try:
        _wait_until(proc, lambda: bool(list(tmp_path.glob("fluxlite.*/got-term"))))
        clients = [c for c in psutil.Process(proc.pid).children(recursive=True)
                   if c.name() == "podman" and "run" in c.cmdline()]
        assert clients, "no podman run below fluxlite"
        for c in clients:  # below the fluxlite this test started
            c.kill()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert saved.exists() and saved.read_text() == "state\n", err.decode()
    assert podman.containers() == []


def test_environment_values_read_back_exactly(runtime: RuntimeEnv, fl: Fluxlite,
                                              tmp_path: Path) -> None:
    """Values that an environment file could read otherwise (quotes stripped, a comment
    sign, spaces, '=' inside) reach the task as they were written."""
    values = {"SQ": "'quoted'", "DQ": '"double"', "HASH": "#not a comment",
              "SPACES": "  both  ", "EQ": "a=b=c", "EMPTY": "", "MIXED": "it's \"x\""}
    script = "; ".join(f'printf "%s|" "${k}" >> seen.txt' for k in values)
    job = container_job(runtime, tmp_path / "cache", script,
                        environment={**values, "PATH": "/bin"},
                        outputs=[{"lfn": "seen.txt", "urls": [(tmp_path / "seen.txt").as_uri()]}])
    p = fl.run("run", str(fl.write_job(job)), env=_env(runtime, tmp_path))
    assert p.returncode == 0, p.stderr.decode()
    assert (tmp_path / "seen.txt").read_text() == "".join(f"{v}|" for v in values.values())


def test_a_failed_conversion_says_why_and_leaves_nothing(charliecloud: RuntimeEnv,
                                                         fl: Fluxlite, tmp_path: Path) -> None:
    """An image tar cannot unpack (a hard link to nothing): ch-convert's
    complaint (tar's first, not only its last line) in one line, exit 71, and neither its
    work directory nor a partial image left behind."""
    import tarfile

    from tests.conftest import sha256_of

    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        ti = tarfile.TarInfo("bin")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
        ti = tarfile.TarInfo("bin/sh")
        ti.type, ti.linkname = tarfile.LNKTYPE, "nothere"
        tf.addfile(ti)
    work_tmp = tmp_path / "tmp"
    work_tmp.mkdir()
    job = container_job(charliecloud, tmp_path / "cache", "true",
                        container={"image": {"url": bad.as_uri(), "sha256": sha256_of(bad)}})
    p = fl.run("run", str(fl.write_job(job)), env=_env(charliecloud, tmp_path,
                                                          TMPDIR=str(work_tmp)))
    err = p.stderr.decode()
    assert p.returncode == 71, err
    assert "cannot convert the image" in err and "Cannot hard link" in err, err
    assert "Traceback" not in err
    assert list(work_tmp.iterdir()) == []  # ch-convert's own work files
    blobs = tmp_path / "cache" / "images" / "sha256"
    assert [p.name for p in blobs.iterdir() if ".dir" in p.name or "convert" in p.name] == []
