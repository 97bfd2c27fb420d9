"""Format names, candidate sets and per-layer format maps."""

import jax
import jax.numpy as jnp
import pytest

from ebsp_jax import models
from ebsp_jax.numerics import BitPattern, layer_patterns, power_of_two, uniform
from ebsp_jax.search import formats


@pytest.mark.parametrize("name,want", [
    ("6b(L3)", BitPattern(6, 3)), ("4b(L1)", power_of_two(4)), ("8b(L7)", uniform(8)),
    (" 5b(L2) ", BitPattern(5, 2)), ("u4b(L2)", BitPattern(4, 2, signed=False)),
    ("16b(L15)", uniform(16))])
def test_parse_format_round_trips(name, want):
  f = formats.parse_format(name)
  assert f == want and formats.parse_format(str(f)) == f


@pytest.mark.parametrize("name,needle", [
    ("6b3", "is not of the form <bits>b(L<length>)"), ("6b(L)", "is not of the form"),
    ("6b(L6)", "format '6b(L6)': length=6 is out of range: with bits=6 length must be in [1, 5]"),
    ("1b(L1)", "bits=1 is out of range"), ("17b(L3)", "bits=17 is out of range")])
def test_bad_format_names_are_one_line_errors(name, needle):
  with pytest.raises(ValueError) as e:
    formats.parse_format(name)
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_parse_formats_expands_sets_in_order():
  got = formats.parse_formats("uniform,5b(L3)")
  assert [str(f) for f in got] == ["3b(L2)", "4b(L3)", "5b(L4)", "6b(L5)", "8b(L7)", "5b(L3)"]
  assert all(f.is_uniform for f in formats.parse_formats("uniform"))
  assert all(f.is_power_of_two for f in formats.parse_formats("power_of_two"))
  ebsp = formats.parse_formats("ebsp")
  assert not any(f.is_uniform or f.is_power_of_two for f in ebsp)
  assert formats.parse_formats("default") == formats.parse_formats(
      ["ebsp", "uniform", "power_of_two"])


@pytest.mark.parametrize("text,needle", [
    ("6b(L3),6b(L3)", "format 6b(L3) is listed twice"),
    ("uniform,8b(L7)", "format 8b(L7) is listed twice"),
    ("", "no formats given"),
    ("uniformm", "or a set: default, ebsp, uniform, power_of_two"),
])
def test_parse_formats_errors(text, needle):
  with pytest.raises(ValueError, match=None) as e:
    formats.parse_formats(text)
  assert needle in str(e.value)


def test_layer_formats_rule_drives_make_rule_for_every_kernel():
  model = models.get_model("resnet20", num_classes=10)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)),
                                             train=False))["params"]
  names = list(layer_patterns(shapes, lambda p, l: None))
  fmts = formats.parse_formats("default")
  chosen = {n: fmts[i % len(fmts)] for i, n in enumerate(names)}
  rule = formats.layer_formats_rule(chosen)
  assert layer_patterns(shapes, rule) == chosen
  # Biases and batch norm stay float; a layer left out stays float too.
  assert rule("conv_init/bias", jnp.zeros((16,))) is None
  partial = formats.layer_formats_rule({n: f for n, f in chosen.items() if n != "head"})
  assert layer_patterns(shapes, partial)["head"] is None
  formats.check_layer_names(chosen, names, "x")


def test_layer_formats_rule_does_not_match_by_prefix():
  rule = formats.layer_formats_rule({"fc1": uniform(8), "stage1_block0/conv1": uniform(4)})
  assert rule("fc1/kernel", jnp.zeros((2, 2))) == uniform(8)
  assert rule("fc10/kernel", jnp.zeros((2, 2))) is None
  assert rule("stage1_block0/conv1/kernel", jnp.zeros((3, 3, 1, 2))) == uniform(4)
  assert rule("xstage1_block0/conv1/kernel", jnp.zeros((3, 3, 1, 2))) is None


def test_check_layer_names():
  with pytest.raises(ValueError, match=r"^f.json: unknown layer\(s\) fc9; no format for "
                     r"layer\(s\) head; the model's layers are: conv_init, head$"):
    formats.check_layer_names(["conv_init", "fc9"], ["conv_init", "head"], "f.json")


def test_layer_formats_from_json():
  search_output = {"layers": {"conv_init": "8b(L7)", "head": "5b(L3)"}, "cost": {}}
  assert formats.layer_formats_from_json(search_output) == {"conv_init": uniform(8),
                                                            "head": BitPattern(5, 3)}
  assert formats.layer_formats_from_json({"fc1": "4b(L2)"}) == {"fc1": BitPattern(4, 2)}
  with pytest.raises(ValueError, match=r"^f: layer 'fc1': format '4b\(L9\)'"):
    formats.layer_formats_from_json({"fc1": "4b(L9)"}, "f")
  with pytest.raises(ValueError, match="expected a non-empty"):
    formats.layer_formats_from_json([1, 2], "f")
