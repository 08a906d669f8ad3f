"""The site-catalog entry of a Flux site using a fluxlite worker package."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fluxlite.errors import UsageError
from fluxlite.pegasus.sitecatalog import site_catalog_yaml, site_entry


def _profiles(entry: dict[str, object]) -> dict[str, dict[str, object]]:
    return entry["profiles"]  # type: ignore[return-value]


@pytest.mark.parametrize("config", ["nonsharedfs", "sharedfs", "condorio"])
def test_every_configuration_goes_to_flux_through_blahp(config: str, tmp_path: Path) -> None:
    entry = site_entry(tmp_path / "home", config, shared_scratch=tmp_path / "scratch")
    doc = yaml.safe_load(site_catalog_yaml(entry))
    assert doc["pegasus"] == "5.0"
    (site,) = doc["sites"]
    prof = site["profiles"]
    assert prof["pegasus"]["style"] == "glite"
    assert prof["pegasus"]["data.configuration"] == config
    assert prof["condor"] == {"grid_resource": "batch flux"}
    assert prof["env"] == {"PEGASUS_HOME": str(tmp_path / "home")}
    # the planner's schema takes strings or numbers as profile values, never a YAML boolean
    assert all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
               for p in prof.values() for v in p.values())
    local = prof["pegasus"].get("auxillary.local")
    assert local == (None if config == "condorio" else "true")
    (d,) = site["directories"]
    assert d["type"] == "sharedScratch" and d["fileServers"][0]["url"].startswith("file:///")


def test_without_a_scratch_directory_only_sharedfs_is_refused(tmp_path: Path) -> None:
    assert "directories" not in site_entry(tmp_path, "nonsharedfs")
    with pytest.raises(UsageError, match="--shared-scratch: needed for a sharedfs site"):
        site_entry(tmp_path, "sharedfs")
    with pytest.raises(UsageError, match="--shared-scratch rel: must be an absolute path"):
        site_entry(tmp_path, "sharedfs", shared_scratch="rel")


@pytest.mark.parametrize(("kw", "msg"), [
    ({"data_configuration": "shared"}, "--data-configuration 'shared': must be one of"),
    ({"site": "a site"}, "--site 'a site': not a site name"),
    ({"site": "flux\n"}, "--site 'flux\\\\n': not a site name"),
])
def test_bad_options_are_named(kw: dict[str, str], msg: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=msg):
        site_entry(tmp_path, **kw)  # type: ignore[arg-type]
