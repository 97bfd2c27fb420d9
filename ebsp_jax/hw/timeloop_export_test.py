"""Tests of the Timeloop/Accelergy export: files parse back and carry the model's numbers."""

import os

import pytest
import yaml

from ebsp_jax.hw import arch, timeloop_export
from ebsp_jax.hw.workload import Layer

LAYER = Layer("conv", "conv", n=1, m=64, c=32, p=28, q=14, r=3, s=5, stride=(1, 2),
              groups=2, input_hw=(30, 31))


def test_problem_convention():
  inst = timeloop_export.problem_yaml(LAYER)["problem"]["instance"]
  assert inst == {"C": 16, "M": 32, "R": 5, "S": 3, "N": 1, "P": 14, "Q": 28, "Wstride": 2,
                  "Hstride": 1, "Wdilation": 1, "Hdilation": 1}


@pytest.mark.parametrize("name,container", [("ebsp", "row"), ("wax", "tile"), ("eyeriss", "PE")])
def test_files_parse_and_match(tmp_path, name, container):
  acc = arch.build_accelerator(name)
  paths = timeloop_export.write_timeloop(str(tmp_path), [LAYER], acc)
  assert {os.path.basename(p) for p in paths} >= {"arch.yaml", "ERT.yaml", "ART.yaml",
                                                  "constraints.yaml", "problem_000.yaml"}
  a = yaml.safe_load(open(tmp_path / "arch.yaml"))["architecture"]
  chip = a["subtree"][0]["subtree"][0]
  assert chip["local"][0]["name"] == "glb"
  assert chip["subtree"][0]["name"].startswith(container)
  ert = yaml.safe_load(open(tmp_path / "ERT.yaml"))["ERT"]["tables"]
  for m in acc.levels:
    row = next(t for t in ert if t["name"].endswith("." + m.name))
    assert row["actions"][0]["energy"] == pytest.approx(m.read_pj)
    assert row["actions"][1]["energy"] == pytest.approx(m.write_pj)
  mac = next(t for t in ert if t["name"].endswith("mac"))
  assert mac["actions"][0]["energy"] == pytest.approx(acc.pe.energy_per_mac_pj())
  cons = yaml.safe_load(open(tmp_path / "constraints.yaml"))["architecture_constraints"]
  keep = {t["target"]: t["keep"] for t in cons["targets"]}
  assert keep["glb"] == ["Weights", "Inputs", "Outputs"]
  art = yaml.safe_load(open(tmp_path / "ART.yaml"))["ART"]["tables"]
  assert all(t["area"] >= 0 for t in art)
