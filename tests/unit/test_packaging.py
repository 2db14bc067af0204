"""The shape the repository promises: top-level folders installed under the package's namespace,
live deployments from the folder the operator chooses, one registration of the IOC plugin."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_every_code_folder_is_a_listed_package_under_the_namespace() -> None:
    setup = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapped = {folder: package for package, folder in setup["package-dir"].items()}
    found = set()
    tracked = subprocess.run(["git", "ls-files", "*__init__.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for init in tracked:
        top, *rest = Path(init).parent.parts
        if top in ("tests", "bench", "deploy", "dags", ".venv") or top.startswith("."):
            continue
        found.add(".".join([mapped.get(top, top), *rest]))
    assert found <= set(setup["packages"]), f"not listed in pyproject.toml: {sorted(found - set(setup['packages']))}"
    assert all(package.startswith("paht_bridge") for package in setup["packages"])


def test_connectors_and_plugins_import_only_under_the_namespace() -> None:
    import paht_bridge.connectors.base
    import paht_bridge.plugins.ioc_page

    assert Path(paht_bridge.connectors.base.__file__).parent == REPO / "connectors"
    assert Path(paht_bridge.plugins.ioc_page.__file__).parent == REPO / "plugins"
    code = "import importlib.util as u; print(u.find_spec('connectors'), u.find_spec('plugins'))"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None None"


def test_live_deployments_come_from_the_folder_the_operator_chose(tmp_path: Path) -> None:
    (tmp_path / "only_one.yaml").write_text((REPO / "mappings" / "dien_bien.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    code = "from paht_bridge.config.deployment import deployment_names; print(deployment_names())"
    chosen = subprocess.run([sys.executable, "-c", code], env={"AIRFLOW__PAHT__DEPLOYMENTS_FOLDER": str(tmp_path), "PATH": "/usr/bin",
                                                               "AIRFLOW_HOME": str(tmp_path)}, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    default = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin", "AIRFLOW_HOME": str(tmp_path)}, cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
    assert chosen.strip() == "['only_one']"
    assert default.strip() == "['dien_bien', 'quang_ninh', 'quang_tri']"  # the checkout's mappings/


@pytest.mark.parametrize("folder", [True, False], ids=["plugins_folder", "entry_point_only"])
def test_the_ioc_plugin_registers_once_and_its_app_is_not_imported_by_loading_plugins(folder: bool, tmp_path: Path) -> None:
    code = """
import sys
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
print(sorted(p.name for p in plugins if p.name == 'paht_ioc'), errors)
print('paht_bridge.plugins.ioc_app' in sys.modules, 'ioc_app' in sys.modules)
"""
    env = {"PATH": "/usr/bin", "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins" if folder else tmp_path / "no-plugins")}
    # Not from the checkout: its paht_bridge.egg-info on sys.path would list the entry point twice.
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[-2] == "['paht_ioc'] {}"
    assert out[-1] == "False False"


def test_an_installed_package_without_a_deployments_folder_says_how_to_set_one(monkeypatch, capsys) -> None:  # noqa: ANN001
    from paht_bridge.cli import main
    from paht_bridge.config import folders

    monkeypatch.setattr(folders, "CHECKOUT", None)  # as installed from the wheel
    monkeypatch.delenv("AIRFLOW__PAHT__DEPLOYMENTS_FOLDER", raising=False)
    folders.deployments_folder.cache_clear()
    try:
        assert main(["validate"]) == 2
    finally:
        folders.deployments_folder.cache_clear()
    assert "set deployments_folder in the [paht] section" in capsys.readouterr().err


def test_the_built_wheel_works_without_the_checkout(tmp_path: Path) -> None:
    """Built as pip builds it (isolated, from pyproject.toml), installed apart, imported with no
    checkout in sight: it validates a deployment folder and builds a preset's SOAP client from
    the WSDL it carries."""
    wheels, target, deployments = tmp_path / "dist", tmp_path / "site", tmp_path / "deployments"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(REPO)],
                   check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = wheels.glob("paht_bridge-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
                   check=True, cwd=tmp_path, capture_output=True)
    deployments.mkdir()
    (deployments / "quang_tri.yaml").write_text((REPO / "mappings" / "quang_tri.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    code = """
import paht_bridge
from paht_bridge.cli import main
from paht_bridge.config.deployment import deployment
from paht_bridge.connectors.hooks import AirflowConnectors
print(paht_bridge.__file__)
assert main(["validate"]) == 0
client = AirflowConnectors(deployment("quang_tri")).target("qoffice_quangtri")
print(client.wire.wsdl)
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__PAHT__DEPLOYMENTS_FOLDER": str(deployments),
           "AIRFLOW_CONN_PAHT_QOFFICE_QUANGTRI": '{"conn_type": "paht_soap", "host": "http://127.0.0.1:9"}'}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    module, _, wsdl = out.stdout.strip().splitlines()[-3:]
    assert module.startswith(str(target)) and wsdl.startswith(str(target / "paht_bridge" / "mappings" / "wsdl"))
