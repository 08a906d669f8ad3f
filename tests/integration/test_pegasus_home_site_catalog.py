"""`fluxlite pegasus-home DIR --site-catalog`: the package, and the site's entry on stdout."""

from __future__ import annotations

import yaml

from tests.conftest import Fluxlite


def test_prints_the_entry_and_the_status_on_stderr(fl: Fluxlite) -> None:
    p = fl.run("pegasus-home", "home", "--pegasus-version", "5.1.2", "--site-catalog",
               "--site", "hpc", "--data-configuration", "sharedfs",
               "--shared-scratch", "/scratch/me")
    assert p.returncode == 0, p.stderr.decode()
    assert b"worker package for Pegasus 5.1.2 written" in p.stderr
    (site,) = yaml.safe_load(p.stdout)["sites"]
    assert site["name"] == "hpc"
    assert site["profiles"]["env"]["PEGASUS_HOME"] == str(fl.tmp / "home")
    assert site["directories"][0]["path"] == "/scratch/me"
    assert (fl.tmp / "home" / "bin" / "pegasus-kickstart").exists()


def test_a_refused_option_writes_no_package(fl: Fluxlite) -> None:
    p = fl.run("pegasus-home", "home", "--pegasus-version", "5.1.2", "--site-catalog",
               "--data-configuration", "sharedfs")
    assert p.returncode == 2
    assert p.stderr.decode().splitlines() == [
        "fluxlite: error: --shared-scratch: needed for a sharedfs site (the directory the "
        "jobs run in, seen by the submit host and every node)"]
    assert p.stdout == b""
    assert not (fl.tmp / "home").exists()
