"""The decision table of ``accumulation="auto"`` (platform facts and oneDNN status faked)."""

from __future__ import annotations

import pytest

from ebsp_jax.arith import dispatch, fast, onednn, platform
from ebsp_jax.arith.config import Config
from ebsp_jax.numerics import BitPattern


@pytest.fixture
def host(monkeypatch):
  """Sets the faked facts: ``host(onednn=bool, bf16=bool)``."""

  def set_facts(*, onednn_ok: bool, bf16: bool):
    monkeypatch.setattr(onednn, "status", lambda: None if onednn_ok else "faked: no kernel")
    monkeypatch.setattr(platform, "cpu_has_bf16_dot", lambda: bf16)

  return set_facts


def test_convolutions_per_backend_and_size(host):
  host(onednn_ok=True, bf16=False)
  r = dispatch.resolve_accumulation
  assert r("auto", "conv", 16, 144, target="gpu") == "float32"
  assert r("auto", "conv", 15, 135, target="gpu") == "bfloat16"
  assert r("auto", "conv", 64, 576, target="cpu") == "onednn"
  assert r("auto", "conv", 1, 9, target="cpu") == "float32"        # depthwise: XLA, few channels
  assert r("auto", "conv", 64, 576, target="tpu") == "int32"
  host(onednn_ok=False, bf16=False)
  assert r("auto", "conv", 64, 576, target="cpu") == "int32"
  assert r("auto", "conv", 31, 279, target="cpu") == "float32"


def test_dot_on_cpu_waits_for_the_contraction_length(host):
  host(onednn_ok=False, bf16=True)
  r = dispatch.resolve_accumulation
  assert r("auto", "dot", target="cpu") == "auto"
  assert r("auto", "dot", target="gpu") == "int32"
  assert r("auto", "dot", target="cpu", native_ops=lambda acc: 1) == "bfloat16"
  assert r("auto", "dot", target="cpu", native_ops=lambda acc: 2) == "int32"
  host(onednn_ok=False, bf16=False)
  assert r("auto", "dot", target="cpu", native_ops=lambda acc: 1) == "int32"
  host(onednn_ok=True, bf16=True)
  assert r("auto", "dot", target="cpu", native_ops=lambda acc: 1) == "onednn"


def test_explicit_choices_pass_and_onednn_is_checked(host):
  host(onednn_ok=False, bf16=False)
  for acc in ("int32", "float32", "bfloat16"):
    assert dispatch.resolve_accumulation(acc, "conv", 1, 9, target="gpu") == acc
  with pytest.raises(ValueError, match="CPU backend only"):
    dispatch.resolve_accumulation("onednn", "dot", target="gpu")
  with pytest.raises(ValueError, match="unavailable here: faked: no kernel"):
    dispatch.resolve_accumulation("onednn", "dot", target="cpu")


@pytest.mark.parametrize("units,bf16_ops,want", [(64, 1, "bfloat16"), (5000, 2, "int32")])
def test_the_planner_resolves_auto_through_dispatch(host, units, bf16_ops, want):
  """``fast.plan`` with ``"auto"``: bf16 only when the bf16 plan is one native op."""
  host(onednn_ok=False, bf16=True)
  cfg = Config(pattern=BitPattern(6, 3), act_bits=8, act_signed=False, accumulation="auto")
  assert fast.plan(cfg, units, accumulation="bfloat16").native_ops == bf16_ops
  assert fast.plan(cfg, units).accumulation == want
  host(onednn_ok=True, bf16=True)
  assert fast.plan(cfg, units).accumulation == "onednn"
