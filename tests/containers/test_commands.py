"""The container section of the spec, and each runtime's command line checked against the
flags the runtime documents (its --help where it is installed, its sources otherwise)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from fluxlite.container import ContainerError, symlink_mounts
from fluxlite.container.base import Invocation
from fluxlite.container.runtimes import RUNTIMES
from fluxlite.spec.container import Mount
from fluxlite.errors import SpecError
from fluxlite.spec import JobSpec
from tests.conftest import Fluxlite

DATA = Path(__file__).parent / "data"
DIGEST = "ab" * 32


def _job(**container: object) -> dict:
    c = {"type": "podman", "image": {"url": "file:///img.tar", "sha256": DIGEST}}
    c.update(container)
    return {"fluxlite": 1, "executable": "/bin/true", "container": c}


def _problems(doc: dict) -> list[str]:
    with pytest.raises(SpecError) as err:
        JobSpec.from_dict(doc)
    return err.value.problems


def test_valid_container_section() -> None:
    spec = JobSpec.from_dict(_job(mounts=["/data:/data:ro", "/scratch:/scratch"],
                                  workdir="/work", options=["--cpus=2"]))
    c = spec.container
    assert c is not None and c.type == "podman" and c.workdir == "/work"
    assert c.image is not None and c.image.sha256 == DIGEST
    assert c.mounts == (Mount("/data", "/data", True), Mount("/scratch", "/scratch", False))
    assert c.options == ("--cpus=2",)
    hub = JobSpec.from_dict(_job(image="docker://busybox:1.36")).container
    assert hub is not None and hub.hub == "docker://busybox:1.36" and hub.image is None
    assert JobSpec.from_dict(_job()).container.workdir == "/srv"  # type: ignore[union-attr]


def test_schema_accepts_a_container_job() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((files("fluxlite") / "schema" / "job.schema.json").read_text())
    for doc in (_job(mounts=["/d:/d:ro"], options=["--cpus=2"]),
                _job(image="library://alpine:3"),
                _job(image={"urls": ["file:///a.sif", {"url": "https://h/a.sif"}],
                            "sha256": DIGEST}, type="apptainer")):
        jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_job(type="lxc"), schema)


def test_every_problem_at_once_with_its_path() -> None:
    probs = _problems(_job(type="lxc", image={"url": "ftp://h/x.tar"}, workdir="srv",
                           mounts=["/data/../etc:/etc2", "/:/host", "/d:/srv/sub",
                                   "/d:/proc/x", "rel:/x", "/d:/x:rx", "/a:/m", "/b:/m"],
                           options=["--privileged", ""], extra=1))
    text = "\n".join(probs)
    for expected in (
        "container.type: must be one of apptainer, singularity, podman, docker, charliecloud,"
        " not 'lxc'",
        "container.image.url: unsupported scheme 'ftp' for stage-in",
        "container.image.sha256: is required",
        "container.workdir: 'srv' must be an absolute path",
        "container.mounts[0]: host path '/data/../etc' must not contain '..'",
        "container.mounts[1]: host path '/' would hand the whole host to the task",
        "container.mounts[3]: container path '/proc/x' lies in /proc",
        "container.mounts[4]: host path 'rel' must be an absolute path",
        "container.mounts[5]: mode must be ro or rw, not 'rx'",
        "container.mounts[7]: '/m' is already mounted by container.mounts[6]",
        "container.options[1]: must be a non-empty string",
        "container.extra: unknown field",
    ):
        assert expected in text, text
    # mounts[2] overlaps the default mount point only when the workdir is valid
    assert "overlaps the worker directory" in "\n".join(
        _problems(_job(mounts=["/d:/srv/sub"])))
    assert "'--privileged' is set by fluxlite" in "\n".join(
        _problems(_job(options=["--privileged"])))


@pytest.mark.parametrize("image, why", [
    ("busybox", "is not a hub reference"),
    ("docker://", "is not a hub reference"),
    ("docker://a b", "must not contain spaces"),
    ({"url": "file:///x", "urls": ["file:///y"], "sha256": DIGEST}, "not both"),
    ({"sha256": DIGEST}, "container.image.url: is required"),
    ({"url": "file:///x", "sha256": "xyz"}, "64 hexadecimal digits"),
    (None, "container.image: is required"),
])
def test_bad_images(image: object, why: str) -> None:
    doc = _job()
    if image is None:
        del doc["container"]["image"]
    else:
        doc["container"]["image"] = image
    assert why in "\n".join(_problems(doc))


def test_charliecloud_refuses_read_only_mounts() -> None:
    assert "charliecloud cannot mount read-only" in "\n".join(
        _problems(_job(type="charliecloud", mounts=["/d:/d:ro"])))


def test_unknown_type_on_the_command_line(fl: Fluxlite) -> None:
    p = fl.run("run", str(fl.write_job({k: v for k, v in _job(type="lxc").items()
                                        if k != "fluxlite"})))
    assert p.returncode == 2
    err = p.stderr.decode()
    assert "container.type: must be one of" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_runtime_missing_on_path_exits_71_before_anything(fl: Fluxlite, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    job = _job(type="docker")
    job["container"]["image"] = {"url": (tmp_path / "img.tar").as_uri(), "sha256": DIGEST}
    job.update(executable="/bin/sh", arguments=["-c", f"touch {tmp_path}/ran"],
               records={"kickstart": None, "json": str(tmp_path / "rec.json")})
    del job["fluxlite"]
    p = fl.run("run", str(fl.write_job(job)), env={"PATH": str(empty)})
    err = p.stderr.decode()
    assert p.returncode == 71, err
    assert "container runtime 'docker' not found on PATH" in err and "Traceback" not in err
    assert not (tmp_path / "ran").exists()
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert rec["task"] is None and rec["failed_phase"] == "container"
    assert fl.leftover_workdirs() == []


# -- the command lines -------------------------------------------------------------------

def _stub_path(tmp: Path, names: tuple[str, ...]) -> str:
    """A PATH on which each runtime program exists (a script never run here: the command
    line is only built)."""
    d = tmp / "bin"
    d.mkdir(exist_ok=True)
    for n in names:
        p = d / n
        p.write_text("#!/bin/sh\nexit 99\n")
        p.chmod(0o755)
    return str(d)


def _invocation(tmp: Path, **kw: object) -> Invocation:
    base = dict(image="IMAGE", argv=["/bin/sh", "-c", "echo hi"],
                env={"A": "1", "MULTI": "x\ny"}, env_file=str(tmp / "env"),
                mounts=[Mount("/wd", "/srv"), Mount("/data", "/data", True)], workdir="/srv",
                name="fluxlite-t-1-abc", owner="h:1:2:3", gpus=["nvidia", "amd"],
                options=("--opt",), uid=1000, gid=100, timeout=70)
    base.update(kw)
    return Invocation(**base)  # type: ignore[arg-type]


def _runtime(kind: str, tmp: Path):  # noqa: ANN202
    spec = JobSpec.from_dict(_job(type=kind)).container
    cls = RUNTIMES[kind]
    return cls(spec, {"PATH": _stub_path(tmp, cls.programs), "USER": "u"})


def _documented(kind: str) -> set[str]:
    """The flags the runtime documents: live --help where installed, else its sources."""
    live = {"podman": ["podman", "run", "--help"], "charliecloud": ["ch-run", "--help"]}
    if kind in live and shutil.which(live[kind][0]):
        out = subprocess.run(live[kind], capture_output=True, text=True,
                             env={**os.environ, "USER": os.environ.get("USER") or "u"},
                             timeout=60)
        return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", out.stdout + out.stderr))
    name = {"docker": "docker-run-flags.txt", "apptainer": "apptainer-exec-flags.txt",
            "singularity": "apptainer-exec-flags.txt"}.get(kind)
    if name is None:
        pytest.skip(f"{kind} is not installed: its --help cannot be read")
    lines = (DATA / name).read_text().splitlines()
    return {x.strip() for x in lines if x.strip() and not x.startswith("#")}


def _flags(argv: list[str], image: str, skip: int) -> list[str]:
    """The flags fluxlite put before the image (``skip``: program and subcommand words)."""
    end = argv.index(image)
    return [a.split("=", 1)[0] for a in argv[skip:end] if a.startswith("-")]


@pytest.mark.parametrize("kind", list(RUNTIMES))
def test_command_line_uses_documented_flags(kind: str, tmp_path: Path) -> None:
    rt = _runtime(kind, tmp_path)
    # ch-run's environment file carries no line breaks (validate refuses them)
    env = {"A": "1"} if kind == "charliecloud" else {"A": "1", "MULTI": "x\ny"}
    inv = _invocation(tmp_path, options=(), env=env)
    argv = rt.command(inv)
    skip = 1 if kind == "charliecloud" else 2
    unknown = [f for f in _flags(argv, "IMAGE", skip) if f not in _documented(kind)]
    assert unknown == [], f"{kind}: flags not in its documentation: {unknown}"
    assert argv[argv.index("IMAGE") + 1:] == (
        ["--", *inv.argv] if kind == "charliecloud" else inv.argv)
    assert os.stat(inv.env_file).st_mode & 0o077 == 0  # the environment is private


def test_podman_command_line(tmp_path: Path) -> None:
    rt = _runtime("podman", tmp_path)
    inv = _invocation(tmp_path)
    argv = rt.command(inv)
    assert argv[1:] == [
        "run", "--rm", "--init", "--pull=never", "--network=host",
        "--label", "io.fluxlite.owner=h:1:2:3", "--name", "fluxlite-t-1-abc",
        "--userns=keep-id", "--http-proxy=false", "--timeout=70",
        "--env-file", inv.env_file, "--env", "MULTI=x\ny",
        "--volume", "/wd:/srv:rw", "--volume", "/data:/data:ro", "--workdir", "/srv",
        "--device", "nvidia.com/gpu=all", "--device", "/dev/kfd", "--device", "/dev/dri",
        "--opt", "IMAGE", "/bin/sh", "-c", "echo hi"]
    assert Path(inv.env_file).read_text() == "A=1\n"
    assert "--user" in rt.command(_invocation(tmp_path, uid=0, gid=0))  # root: 0:0 explicit


def test_docker_command_line(tmp_path: Path) -> None:
    argv = _runtime("docker", tmp_path).command(_invocation(tmp_path))
    assert argv[argv.index("--user") + 1] == "1000:100"  # never root inside
    assert "--gpus" in argv and "--http-proxy=false" not in argv and "--timeout=70" not in argv


def test_apptainer_command_line(tmp_path: Path) -> None:
    inv = _invocation(tmp_path, env={"A": "it's $HOME", "B": "x\ny"})
    argv = _runtime("apptainer", tmp_path).command(inv)
    assert argv[1:] == [
        "exec", "--cleanenv", "--no-home", "--no-mount", "cwd", "--env-file", inv.env_file,
        "--pwd", "/srv", "--bind", "/wd:/srv:rw", "--bind", "/data:/data:ro", "--nv",
        "--rocm", "--opt", "IMAGE", "/bin/sh", "-c", "echo hi"]
    # the env file is read by a shell-like parser: values are quoted, never expanded
    out = subprocess.run(["/bin/sh", "-c", f". {inv.env_file}; printf '%s|%s' \"$A\" \"$B\""],
                         capture_output=True, text=True, env={"HOME": "/nowhere"})
    assert out.stdout == "it's $HOME|x\ny"


def test_charliecloud_command_line(tmp_path: Path) -> None:
    inv = _invocation(tmp_path, env={"A": "1", "Q": "'x'"})
    rt = _runtime("charliecloud", tmp_path)
    argv = rt.command(inv)
    assert argv[1:] == [
        "--unset-env=*", f"--set-env={inv.env_file}", "--env-no-expand", "--private-tmp",
        "--bind", "/wd:/srv", "--bind", "/data:/data", "--cd", "/srv", "--opt", "IMAGE",
        "--", "/bin/sh", "-c", "echo hi"]
    # every value quoted: ch-run strips one pair of quotes, and the value is left as it was
    assert Path(inv.env_file).read_text() == "A='1'\nQ=''x''\n"
    with pytest.raises(ContainerError, match="cannot be passed through"):
        rt.command(_invocation(tmp_path, env={"MULTI": "x\ny"}))


def test_symlinked_inputs_get_their_targets_mounted(tmp_path: Path) -> None:
    target = tmp_path / "store" / "f.dat"
    target.parent.mkdir()
    target.write_text("x")
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "f.dat").symlink_to(target)
    (wd / "covered.dat").symlink_to("/data/c.dat")
    (wd / "rel.dat").symlink_to("f.dat")
    spec = JobSpec.from_dict({**_job(mounts=["/data:/data:ro"]), "inputs": [
        {"lfn": n, "urls": [target.as_uri()], "symlink": True}
        for n in ("f.dat", "covered.dat", "rel.dat")]})
    assert spec.container is not None
    assert symlink_mounts(spec, str(wd), spec.container) == [
        Mount(str(target), str(target), True)]
    assert symlink_mounts(spec, str(wd), spec.container, files=False) == [
        Mount(str(target.parent), str(target.parent), True)]


@pytest.mark.parametrize("target, why", [("/", "the container's root directory"),
                                         ("/proc/cpuinfo", "lies in /proc"),
                                         ("/a:b", "must not contain ':'")])
def test_symlinked_input_that_cannot_be_mounted(tmp_path: Path, target: str, why: str) -> None:
    from fluxlite.container import ContainerError

    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "x").symlink_to(target)
    spec = JobSpec.from_dict({**_job(), "inputs": [
        {"lfn": "x", "urls": ["file:///etc/hostname"], "symlink": True}]})
    assert spec.container is not None
    with pytest.raises(ContainerError) as err:
        symlink_mounts(spec, str(wd), spec.container)
    assert why in str(err.value) and "'x' links to" in str(err.value)


def test_dry_run_shows_the_container(fl: Fluxlite) -> None:
    doc = _job(mounts=["/d:/d:ro"])
    del doc["fluxlite"]
    p = fl.run("run", "--dry-run", str(fl.write_job(doc)))
    assert p.returncode == 0, p.stderr.decode()
    assert (f"container podman file:///img.tar (sha256 {DIGEST[:12]}…); worker directory at "
            "/srv, /d:/d:ro") in p.stdout.decode()


@pytest.mark.parametrize(("listed", "warned"), [("", False), ("fluxlite-t-1-abc h:1:2:3\n", True)])
def test_docker_remove_warns_only_of_a_container_still_there(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, listed: str, warned: bool) -> None:
    """docker rm --force fails for a container docker run --rm took already: that one is
    gone, as wanted; one still listed is worth a warning."""
    rt = _runtime("docker", tmp_path)
    (tmp_path / "ps.out").write_text(listed)
    Path(rt.program).write_text(
        "#!/bin/sh\n"
        f'[ "$1" = ps ] && exec /bin/cat {tmp_path / "ps.out"}\n'
        'echo "Error response from daemon: cannot remove container $3" >&2\nexit 1\n')
    with caplog.at_level("WARNING", logger="fluxlite.container.runtimes"):
        rt.remove("fluxlite-t-1-abc")
    assert any("docker rm failed" in r.getMessage() for r in caplog.records) == warned
