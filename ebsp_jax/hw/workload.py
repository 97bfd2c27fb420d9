"""Workload extraction: the conv/matmul layers of any JAX/Flax model, read from its jaxpr.

:func:`trace_layers` traces a function with ``jax.make_jaxpr`` on abstract inputs (no arrays
are allocated: ResNet-50's parameters are ``jax.ShapeDtypeStruct`` s from ``jax.eval_shape``)
and collects every ``conv_general_dilated`` and ``dot_general`` equation, recursing into
sub-jaxprs (``pjit``, ``custom_jvp_call``, ``custom_vjp_call``, ``remat``, ``scan`` bodies
(counted ``length`` times), ``cond`` branches (the most expensive branch), ``while`` bodies
(counted once, with a warning flag)). Each becomes a :class:`Layer` with the loop bounds of the
7-D convolution (N, M, C, P, Q, R, S, strides, groups): nothing is hand-written per model.

A dense layer (``dot_general``) is a 1x1 "convolution": N = product of the activation's free
(and batch) dims, C = contracted size, M = the weight's free size, P = Q = R = S = 1.

MACs count multiply-accumulates of convolutions and matmuls only (no BN, pooling, adds), the
convention of the published figures (ResNet-50 4.09 G at 224x224).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Layer:
  """One conv/matmul layer as a 7-D loop nest.

  Attributes:
    name: module path from the jaxpr's name stack (e.g. ``'stage1_block0/conv1'``), or
      ``'conv<i>'`` / ``'dense<i>'``.
    kind: ``'conv'`` or ``'dense'``.
    n: batch (N); for dense: all free/batch rows of the activation.
    m: output channels, total (M).
    c: input channels, total (C).
    p: output height (P).
    q: output width (Q).
    r: kernel height (R).
    s: kernel width (S).
    stride: (vertical, horizontal) window strides.
    dilation: (vertical, horizontal) kernel (rhs) dilation.
    padding: ((top, bottom), (left, right)).
    groups: feature groups (``C`` and ``M`` are split into ``groups`` independent groups;
      depthwise: groups == C == M).
    input_hw: (H, W) of the input activation.
    repeat: how many times the layer runs per forward pass (``scan`` bodies).
    weight_param: whether the rhs operand comes from the parameters (False for activation x
      activation products, e.g. attention).
    param_path: '/'-joined parameter path of the weight (e.g. ``'conv_init/kernel'``) when it
      could be traced back to a parameter leaf, else ``''``.
  """

  name: str
  kind: str
  n: int
  m: int
  c: int
  p: int = 1
  q: int = 1
  r: int = 1
  s: int = 1
  stride: tuple[int, int] = (1, 1)
  dilation: tuple[int, int] = (1, 1)
  padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
  groups: int = 1
  input_hw: tuple[int, int] = (1, 1)
  repeat: int = 1
  weight_param: bool = True
  param_path: str = ""

  @property
  def macs(self) -> int:
    """Multiply-accumulates of one execution: ``N*M*P*Q*(C/groups)*R*S``."""
    return self.n * self.m * self.p * self.q * (self.c // self.groups) * self.r * self.s

  @property
  def total_macs(self) -> int:
    """MACs of all ``repeat`` executions."""
    return self.macs * self.repeat

  @property
  def weight_count(self) -> int:
    """Weights: ``M * (C/groups) * R * S``."""
    return self.m * (self.c // self.groups) * self.r * self.s

  @property
  def uses_per_weight(self) -> int:
    """Products each weight takes part in per execution: ``N * P * Q``."""
    return self.n * self.p * self.q

  def loop_dims(self) -> dict[str, int]:
    """Loop bounds in ZigZag's names: B, G, K, C, OY, OX, FY, FX (K and C per group)."""
    return {"B": self.n, "G": self.groups, "K": self.m // self.groups,
            "C": self.c // self.groups, "OY": self.p, "OX": self.q, "FY": self.r, "FX": self.s}

  def signature(self) -> tuple:
    """Everything the cost model depends on (layers with equal signatures cost the same)."""
    return (self.kind, self.n, self.m, self.c, self.p, self.q, self.r, self.s, self.stride,
            self.dilation, self.padding, self.groups, self.input_hw)


@dataclasses.dataclass(frozen=True)
class Workload:
  """The layers of one network on one input shape.

  Attributes:
    name: model name.
    input_shape: NHWC input shape used for the trace.
    layers: layers in execution order.
    warnings: notes from tracing (e.g. while loops counted once).
  """

  name: str
  input_shape: tuple[int, ...]
  layers: tuple[Layer, ...]
  warnings: tuple[str, ...] = ()

  @property
  def macs(self) -> int:
    """Total MACs of one forward pass."""
    return sum(l.total_macs for l in self.layers)


# ----------------------------------------------------------------------------------------------
# Tracing.


def _sub_jaxprs(eqn) -> list[tuple[Any, int]]:
  """(sub-jaxpr, multiplicity) pairs inside ``eqn``'s params."""
  name = eqn.primitive.name
  out = []
  for key, val in eqn.params.items():
    vals = val if isinstance(val, (tuple, list)) else [val]
    for v in vals:
      jaxpr = getattr(v, "jaxpr", v)
      if hasattr(jaxpr, "eqns") and hasattr(jaxpr, "invars"):
        mult = 1
        if name == "scan" and key == "jaxpr":
          mult = int(eqn.params.get("length", 1))
        out.append((jaxpr, mult, key))
  if name == "cond":
    return [(j, m) for j, m, k in out if k == "branches"]  # caller picks the max branch
  return [(j, m) for j, m, _ in out]


def _name_of(eqn, fallback: str) -> str:
  try:
    stack = str(eqn.source_info.name_stack)
  except Exception:  # pylint: disable=broad-except
    stack = ""
  parts = [p for p in stack.split("/") if p and not p.startswith(("jvp(", "transpose("))]
  # Flax adds the module path; drop the call-method suffix and the top-level model name.
  parts = [p for p in parts if p not in ("__call__",)]
  if len(parts) > 1:
    parts = parts[1:]
  return "/".join(parts) or fallback


def _conv_layer(eqn, idx: int, param_path: str, is_param: bool) -> Layer:
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  out = eqn.outvars[0].aval
  dn = eqn.params["dimension_numbers"]
  lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
  if len(lhs_spec) not in (3, 4):
    raise NotImplementedError(f"only 1-D/2-D convolutions are supported; got {len(lhs_spec) - 2}-D")
  n = lhs.shape[lhs_spec[0]]
  c = lhs.shape[lhs_spec[1]]
  m = out.shape[out_spec[1]]
  sp_in = [lhs.shape[d] for d in lhs_spec[2:]]
  sp_out = [out.shape[d] for d in out_spec[2:]]
  sp_k = [rhs.shape[d] for d in rhs_spec[2:]]
  strides = list(eqn.params["window_strides"])
  rdil = list(eqn.params.get("rhs_dilation") or (1,) * len(sp_k))
  ldil = list(eqn.params.get("lhs_dilation") or (1,) * len(sp_k))
  pad = [tuple(int(x) for x in p) for p in eqn.params["padding"]]
  if len(sp_k) == 1:  # 1-D conv: put it on the width axis
    sp_in, sp_out, sp_k = [1] + sp_in, [1] + sp_out, [1] + sp_k
    strides, rdil, ldil, pad = [1] + strides, [1] + rdil, [1] + ldil, [(0, 0)] + pad
  if any(d != 1 for d in ldil):
    # A transposed conv: the effective input is dilated; MACs still N*M*P*Q*C/g*R*S.
    sp_in = [(h - 1) * d + 1 for h, d in zip(sp_in, ldil)]
  groups = int(eqn.params["feature_group_count"]) * int(eqn.params.get("batch_group_count", 1))
  return Layer(name=_name_of(eqn, f"conv{idx}"), kind="conv", n=int(n), m=int(m), c=int(c),
               p=int(sp_out[0]), q=int(sp_out[1]), r=int(sp_k[0]), s=int(sp_k[1]),
               stride=(int(strides[0]), int(strides[1])), dilation=(int(rdil[0]), int(rdil[1])),
               padding=(pad[0], pad[1]), groups=groups, input_hw=(int(sp_in[0]), int(sp_in[1])),
               weight_param=is_param, param_path=param_path)


def _dot_layer(eqn, idx: int, param_path: str, is_param: bool, weight_is_lhs: bool) -> Layer:
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  if weight_is_lhs:  # put the parameter on the "weight" side
    lhs, rhs, lc, rc, lb, rb = rhs, lhs, rc, lc, rb, lb
  contract = math.prod(lhs.shape[d] for d in lc)
  batch = math.prod(lhs.shape[d] for d in lb)
  lhs_free = math.prod(lhs.shape[d] for d in range(len(lhs.shape)) if d not in lc and d not in lb)
  rhs_free = math.prod(rhs.shape[d] for d in range(len(rhs.shape)) if d not in rc and d not in rb)
  # Batch dims of a dot_general make independent matmuls: they multiply the rows (activation
  # side) when the "weight" has no batch dims, else they are groups.
  if rb:
    return Layer(name=_name_of(eqn, f"matmul{idx}"), kind="dense", n=int(lhs_free),
                 m=int(rhs_free * batch), c=int(contract * batch), groups=int(batch),
                 weight_param=is_param, param_path=param_path)
  return Layer(name=_name_of(eqn, f"dense{idx}"), kind="dense", n=int(lhs_free * batch),
               m=int(rhs_free), c=int(contract), weight_param=is_param, param_path=param_path)


_PASS_THROUGH = {"convert_element_type", "reshape", "transpose", "broadcast_in_dim", "squeeze",
                 "expand_dims", "copy", "copy_p", "mul", "div", "add", "sub", "round", "clamp",
                 "max", "min", "select_n", "neg", "abs", "sign", "floor", "ceil", "stop_gradient",
                 "reduce_precision", "custom_jvp_call", "custom_vjp_call", "pjit", "integer_pow",
                 "pow", "exp2", "log", "bitcast_convert_type", "and", "or", "shift_left",
                 "shift_right_arithmetic", "shift_right_logical", "sqrt", "rsqrt",
                 "reduce_max", "reduce_min", "reduce_sum", "ge", "gt", "le", "lt", "eq", "ne",
                 "not", "is_finite", "exp", "sin", "cos", "cumsum"}


def trace_layers(fn: Callable[..., Any], *args: Any, param_argnum: int | None = 0,
                 name: str = "model") -> Workload:
  """Traces ``fn(*args)`` abstractly and returns its conv/matmul layers.

  Args:
    fn: any JAX-traceable function (e.g. ``lambda v, x: model.apply(v, x, train=False)``).
    *args: concrete arrays or ``jax.ShapeDtypeStruct`` pytrees (only shapes are used).
    param_argnum: index of the argument holding the parameters: the weight operand of a layer
      is traced back to a leaf of it (through casts, reshapes and fake-quant arithmetic) to set
      ``Layer.param_path``; ``None`` to skip.
    name: workload name.

  Returns:
    The :class:`Workload`.
  """
  closed = jax.make_jaxpr(fn)(*args)
  leaf_paths: dict[Any, str] = {}
  if param_argnum is not None:
    flat_args = []
    for i, a in enumerate(args):
      leaves = jax.tree_util.tree_flatten_with_path(a)[0]
      for path, _ in leaves:
        flat_args.append((i, _path_str(path)))
    for var, (i, p) in zip(closed.jaxpr.invars, flat_args):
      if i == param_argnum:
        leaf_paths[var] = p
  layers: list[Layer] = []
  warnings: list[str] = []
  _walk(closed.jaxpr, 1, leaf_paths, param_argnum is not None, layers, warnings)
  shape = tuple(getattr(args[-1], "shape", ())) if args else ()
  return Workload(name, shape, tuple(layers), tuple(dict.fromkeys(warnings)))


def _layer_name(param_path: str) -> str:
  """``'params/stage1/conv1/kernel'`` -> ``'stage1/conv1'``."""
  parts = param_path.split("/")
  if parts and parts[0] == "params":
    parts = parts[1:]
  if parts and parts[-1] in ("kernel", "w", "weight"):
    parts = parts[:-1]
  return "/".join(parts)


def _path_str(path) -> str:
  out = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        out.append(str(getattr(k, attr)))
        break
  return "/".join(out)


def _trace_back(var, producers: dict, leaf_paths: dict, depth: int = 0) -> str:
  """The parameter path a variable derives from (DFS through pass-through ops), or ''."""
  if depth > 64:
    return ""
  if var in leaf_paths:
    return leaf_paths[var]
  eqn = producers.get(var)
  if eqn is None or eqn.primitive.name not in _PASS_THROUGH:
    return ""
  for v in eqn.invars:
    if hasattr(v, "aval") and not hasattr(v, "val"):
      p = _trace_back(v, producers, leaf_paths, depth + 1)
      if p:
        return p
  return ""


def _walk(jaxpr, mult: int, leaf_paths: dict, tracking: bool, layers: list,
          warnings: list) -> None:
  """Appends the layers of ``jaxpr`` (run ``mult`` times) to ``layers``.

  ``tracking``: parameters are being traced, so a weight operand that does not lead back to a
  parameter marks an activation x activation product (``weight_param=False``).
  """
  producers = {}
  for eqn in jaxpr.eqns:
    for v in eqn.outvars:
      producers[v] = eqn
  for eqn in jaxpr.eqns:
    prim = eqn.primitive.name
    if prim == "conv_general_dilated":
      path = _trace_back(eqn.invars[1], producers, leaf_paths)
      lay = _conv_layer(eqn, len(layers), path, bool(path) or not tracking)
      layers.append(dataclasses.replace(lay, repeat=lay.repeat * mult,
                                        name=_layer_name(path) or lay.name))
    elif prim == "dot_general":
      p_rhs = _trace_back(eqn.invars[1], producers, leaf_paths)
      p_lhs = "" if p_rhs else _trace_back(eqn.invars[0], producers, leaf_paths)
      path = p_rhs or p_lhs
      lay = _dot_layer(eqn, len(layers), path, bool(path) or not tracking,
                       weight_is_lhs=bool(p_lhs))
      layers.append(dataclasses.replace(lay, repeat=lay.repeat * mult,
                                        name=_layer_name(path) or lay.name))
    else:
      subs = _sub_jaxprs(eqn)
      if not subs:
        continue
      if prim == "while":
        warnings.append("while loop bodies are counted once (trip count unknown)")
      # Map the sub-jaxpr's inputs to the caller's parameter paths where they line up.
      if prim == "cond":
        best, best_macs = None, -1
        for sub, m in subs:
          tmp: list[Layer] = []
          _walk(sub, mult * m, _inner_paths(eqn, sub, leaf_paths, producers, offset=1),
                tracking, tmp, warnings)
          macs = sum(l.total_macs for l in tmp)
          if macs > best_macs:
            best, best_macs = tmp, macs
        layers.extend(best or [])
        continue
      for sub, m in subs:
        _walk(sub, mult * m, _inner_paths(eqn, sub, leaf_paths, producers), tracking, layers,
              warnings)


def _inner_paths(eqn, sub, leaf_paths: dict, producers: dict, offset: int = 0) -> dict:
  """Parameter paths of a sub-jaxpr's invars, aligned with the equation's operands."""
  if not leaf_paths:
    return {}
  outer = list(eqn.invars[offset:])
  inner = list(sub.invars)
  out = {}
  if len(outer) >= len(inner):
    outer = outer[len(outer) - len(inner):]
    for o, i in zip(outer, inner):
      if hasattr(o, "aval") and not hasattr(o, "val"):
        p = _trace_back(o, producers, leaf_paths)
        if p:
          out[i] = p
  return out


def _check_batch_size(batch_size: Any) -> None:
  if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
      or batch_size < 1):
    raise ValueError(f"batch_size must be a positive int (images per inference); "
                     f"got {batch_size!r}")


def trace_model(model: Any, input_shape: Sequence[int], batch_size: int = 1,
                name: str = "model", dtype: Any = jnp.float32) -> Workload:
  """Layers of a Flax linen model for NHWC input ``(batch_size, *input_shape)``.

  The variables come from ``jax.eval_shape(model.init, ...)``: nothing is allocated.
  ``model.apply(variables, x, train=False)`` is traced (models without a ``train`` argument
  are traced as ``model.apply(variables, x)``).

  Raises:
    ValueError: ``batch_size`` is not a positive int (one line).
  """
  _check_batch_size(batch_size)
  x = jax.ShapeDtypeStruct((batch_size, *input_shape), dtype)
  rng = jax.random.PRNGKey(0)
  try:
    variables = jax.eval_shape(lambda x_: model.init(rng, x_, train=False), x)
    fn = lambda v, x_: model.apply(v, x_, train=False)  # noqa: E731
  except TypeError:
    variables = jax.eval_shape(lambda x_: model.init(rng, x_), x)
    fn = lambda v, x_: model.apply(v, x_)  # noqa: E731
  return trace_layers(fn, variables, x, param_argnum=0, name=name)


def model_workload(model_name: str, dataset: str = "imagenet", batch_size: int = 1,
                   **overrides: Any) -> Workload:
  """Layers of the registered model ``model_name`` at ``dataset``'s input shape.

  Uses :func:`ebsp_jax.models.get_model` and :func:`ebsp_jax.models.default_input_shape`;
  the number of classes is 1000 for ImageNet and 10 otherwise.

  Raises:
    ValueError: unknown model or dataset (one-line message from the registry), or a
      ``batch_size`` that is not a positive int.
  """
  from ebsp_jax import models  # deferred heavy import (flax): the rest of hw needs none
  _check_batch_size(batch_size)
  shape = models.default_input_shape(model_name, dataset)
  num_classes = 1000 if dataset == "imagenet" else 10
  model = models.get_model(model_name, num_classes=num_classes, **overrides)
  return trace_model(model, shape, batch_size, name=model_name)


def summarize(workload: Workload) -> dict[str, Any]:
  """``{'macs', 'layers', 'weights', 'conv_macs', 'dense_macs'}`` of a workload."""
  conv = sum(l.total_macs for l in workload.layers if l.kind == "conv")
  dense = sum(l.total_macs for l in workload.layers if l.kind == "dense")
  return {"macs": workload.macs, "layers": len(workload.layers),
          "weights": int(np.sum([l.weight_count for l in workload.layers if l.weight_param])),
          "conv_macs": conv, "dense_macs": dense}


# ----------------------------------------------------------------------------------------------
# The networks exactly as the baselines' papers measured them.
#
# The registry's models are traced above; a few papers measured other variants of the same
# network (the original grouped AlexNet at 227x227, VGG-16 with its 4096-wide classifier, Bit
# Fusion's own ResNet-18 and LeNet-5), so the validation of each baseline against its paper
# (``experiments/validate_baselines.py``) uses those layer shapes, transcribed from the cited
# sources below. Each keeps the registry name of the network it is a variant of.


def _conv(name: str, c: int, m: int, hw: int, k: int, stride: int = 1, pad: int = 0,
          groups: int = 1, batch: int = 1) -> Layer:
  p = (hw + 2 * pad - k) // stride + 1
  return Layer(name=name, kind="conv", n=batch, m=m, c=c, p=p, q=p, r=k, s=k,
               stride=(stride, stride), padding=((pad, pad), (pad, pad)), groups=groups,
               input_hw=(hw, hw), param_path=f"params/{name}/kernel")


def _dense(name: str, c: int, m: int, batch: int = 1) -> Layer:
  return Layer(name=name, kind="dense", n=batch, m=m, c=c, param_path=f"params/{name}/kernel")


def _alexnet_krizhevsky2012(b: int) -> list[Layer]:
  # Krizhevsky et al. 2012 (two-GPU grouping), 227x227 input: the AlexNet Eyeriss measured
  # (JSSC 2017 Sec. VI-A: 666 M MACs in CONV1-5) and Bit Fusion's artifact simulated
  # (benchmarks.py get_alex_net: the halves _a/_b of each grouped layer).
  return [_conv("conv1", 3, 96, 227, 11, 4, batch=b),
          _conv("conv2", 96, 256, 27, 5, 1, 2, groups=2, batch=b),
          _conv("conv3", 256, 384, 13, 3, 1, 1, batch=b),
          _conv("conv4", 384, 384, 13, 3, 1, 1, groups=2, batch=b),
          _conv("conv5", 384, 256, 13, 3, 1, 1, groups=2, batch=b),
          _dense("fc1", 9216, 4096, b), _dense("fc2", 4096, 4096, b), _dense("fc3", 4096, 1000, b)]


def _vgg16_simonyan2015(b: int) -> list[Layer]:
  # Simonyan & Zisserman 2015, configuration D, 224x224: 13 3x3 convs (15.3 G MACs, JSSC
  # 2017) and the 25088-4096-4096-1000 classifier.
  cfg = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56),
         (256, 256, 56), (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28),
         (512, 512, 14), (512, 512, 14), (512, 512, 14)]
  return ([_conv(f"conv{i + 1}", c, m, hw, 3, 1, 1, batch=b) for i, (c, m, hw) in enumerate(cfg)]
          + [_dense("fc1", 25088, 4096, b), _dense("fc2", 4096, 4096, b),
             _dense("fc3", 4096, 1000, b)])


def _resnet18_bitfusion(b: int, wide: int = 1) -> list[Layer]:
  # Bit Fusion's artifact (github hsharma35/bitfusion, bitfusion/src/benchmarks/benchmarks.py
  # get_resnet_18_twn; "not ResNet-18B"): a 7x7/2 stem, a 2x2 pool, then per stage two
  # (1x1, 3x3) pairs, the first 1x1 of stages 3-5 with stride 2; no classifier. ``wide=2``:
  # get_resnet_18_wrpn, every width doubled.
  layers = [_conv("conv1", 3, 64 * wide, 224, 7, 2, 3, batch=b)]
  cin, hw = 64 * wide, 56
  for stage, width in ((2, 64), (3, 128), (4, 256), (5, 512)):
    width *= wide
    for i in (1, 2):
      stride = 2 if (stage > 2 and i == 1) else 1
      layers.append(_conv(f"conv{stage}_{i}_a", cin, width, hw, 1, stride, 0, batch=b))
      hw = (hw - 1) // stride + 1
      layers.append(_conv(f"conv{stage}_{i}_b", width, width, hw, 3, 1, 1, batch=b))
      cin = width
  return layers


def _lenet5_bitfusion(b: int) -> list[Layer]:
  # Bit Fusion's artifact (benchmarks.py get_lenet_5_twn): 32x32x1, 5x5 convs of 32 and 64
  # filters ('SAME'), 2x2 pools, 4096-512-10 classifier.
  return [_conv("conv0", 1, 32, 32, 5, 1, 2, batch=b), _conv("conv1", 32, 64, 16, 5, 1, 2, batch=b),
          _dense("fc1", 4096, 512, b), _dense("fc2", 512, 10, b)]


def _alexnet_wrpn_bitfusion(b: int) -> list[Layer]:
  # The AlexNet Bit Fusion's artifact actually simulated for its Eyeriss comparison: the sweep
  # (src/sweep/sweep.py) builds every benchmark with WRPN=True, i.e. get_alex_net_wrpn, twice
  # as wide (96/256/384/384/256 filters per half, 8192-wide FCs); results/
  # bitfusion-eyeriss-sim-sweep.csv holds these layers. Halves are listed as the artifact runs
  # them (two layers each).
  out = []
  for half in ("a", "b"):
    out.append(_conv(f"conv1_{half}", 3, 96, 227, 11, 4, batch=b))
  for half in ("a", "b"):
    out.append(_conv(f"conv2_{half}", 96, 256, 27, 5, 1, 2, batch=b))
  for half in ("a", "b"):
    out.append(_conv(f"conv3_{half}", 512, 384, 13, 3, 1, 1, batch=b))
  for half in ("a", "b"):
    out.append(_conv(f"conv4_{half}", 384, 384, 13, 3, 1, 1, batch=b))
  for half in ("a", "b"):
    out.append(_conv(f"conv5_{half}", 384, 256, 13, 3, 1, 1, batch=b))
  return out + [_dense("fc1", 18432, 8192, b), _dense("fc2", 8192, 8192, b),
                _dense("fc3", 8192, 1000, b)]


#: key -> (registry model name, description with source, layer builder(batch)).
PAPER_NETWORKS: dict[str, tuple[str, str, Callable[[int], list[Layer]]]] = {
    "alexnet_krizhevsky2012": (
        "alexnet", "AlexNet as in Krizhevsky et al. 2012 (grouped conv2/4/5, 227x227)",
        _alexnet_krizhevsky2012),
    "vgg16_simonyan2015": (
        "vgg16", "VGG-16 configuration D (Simonyan & Zisserman 2015), 224x224, 4096-wide FCs",
        _vgg16_simonyan2015),
    "resnet18_bitfusion": (
        "resnet18", "ResNet-18 of Bit Fusion's artifact (benchmarks.py get_resnet_18_twn)",
        _resnet18_bitfusion),
    "alexnet_wrpn_bitfusion": (
        "alexnet", "AlexNet-WRPN (2x wide) that Bit Fusion's artifact simulated "
        "(sweep.py: get_bench_nn(..., WRPN=True))", _alexnet_wrpn_bitfusion),
    "resnet18_wrpn_bitfusion": (
        "resnet18", "ResNet-18-WRPN (2x wide) that Bit Fusion's artifact simulated",
        lambda b: _resnet18_bitfusion(b, wide=2)),
    "lenet5_bitfusion": (
        "lenet5", "LeNet-5 of Bit Fusion's artifact (benchmarks.py get_lenet_5_twn), 32x32",
        _lenet5_bitfusion),
}


def paper_workload(key: str, batch_size: int = 1, conv_only: bool = False) -> Workload:
  """The network ``key`` of :data:`PAPER_NETWORKS` at ``batch_size`` images.

  Args:
    key: e.g. ``'alexnet_krizhevsky2012'``.
    batch_size: images per inference.
    conv_only: keep the convolutions only (Eyeriss's measurements cover CONV layers only).

  Raises:
    ValueError: unknown key or a batch size that is not a positive int.
  """
  _check_batch_size(batch_size)
  if key not in PAPER_NETWORKS:
    raise ValueError(f"unknown paper network {key!r}; known: {', '.join(PAPER_NETWORKS)}")
  name, _, build = PAPER_NETWORKS[key]
  layers = [l for l in build(batch_size) if l.kind == "conv" or not conv_only]
  return Workload(name, (batch_size,), tuple(layers))
