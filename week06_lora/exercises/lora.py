"""Week 06 exercises, LoRA: the adapter forward pass (core ``forward``) and folding an adapter
into the base weight and back out (core ``merge`` and ``unmerge``).

Fill in the three functions below, then run ``make week06-exercises``. Each replaces the
method of the same name on ``week06_lora.LoRALinear`` while its tests run (``QLoRALinear``
inherits ``forward``, so your forward also runs over the NF4 base there). The tests compare
with explicit weight formulas, autograd, and Hugging Face PEFT: the same adapter saved from
ours loads into PEFT (and back) with the same logits, merged or not, plain, rsLoRA and DoRA.

What a ``LoRALinear`` (``self``) holds that you need:

- ``self.weight`` (out, in) and ``self.bias`` (out,) or None: the base ``nn.Linear``'s own
  Parameters; ``self.base_forward(x)`` is ``x W^T + b`` (QLoRA: dequantised NF4, bf16);
- ``self.lora``: ``{name: LoRAAdapter}``; an adapter ``ad`` has ``ad.A`` (r, in), ``ad.B``
  (out, r), ``ad.scaling`` (alpha / r, or alpha / sqrt(r) for rsLoRA), ``ad.drop`` (a
  dropout module, or identity), ``ad.magnitude`` ((out,) for DoRA, else None) and
  ``ad.delta_weight()`` = ``scaling * B @ A``, shaped (out, in);
- ``self.active``: names of the active adapters (their outputs add up: "stacking");
- ``self.merged``: names already folded into ``self.weight``, in merge order;
- ``self._check(name)``: the adapter, or a KeyError listing the valid names.
"""

import torch


def forward(self, x: torch.Tensor, adapter_names: list | None = None) -> torch.Tensor:
    """x (..., in) -> (..., out): the base layer plus every active, unmerged adapter.

        y = x W^T + b + sum over adapters of  scaling * (drop(x) A^T) B^T

    1. ``adapter_names = self.batch_adapters`` when it is None (``mixed_batch`` sets it).
    2. ``result = self.base_forward(x)`` (..., out): the base, with merged adapters inside.
    3. A mixed batch (``adapter_names`` not None: one adapter name per row of x) is the
       package's job: ``return self._mixed_forward(x, result, adapter_names)``.
    4. Else, for each name in ``self.active`` that is not in ``self.merged``:

       - plain LoRA (``ad.magnitude is None``): ``h = ad.drop(x)`` cast to ``ad.A.dtype``,
         two thin matmuls ``F.linear(F.linear(h, A), B)`` ((..., r), then (..., out); never
         build the (out, in) product B A here), times ``ad.scaling``, cast back to
         ``result.dtype``. (``F`` is ``torch.nn.functional``.)
       - DoRA (``ad.magnitude`` set): add ``self.adapter_delta(name, x, result)``, which
         needs the pure base output ``result``, not your running sum.

       Add each one to a running ``out = out + delta``, not in place: under QLoRA the base
       output comes out of a custom autograd Function.

    No active adapter: return ``result`` as it is. A fresh adapter has B = 0, so it changes
    nothing; the tests check that the output is exactly the base's.
    """
    raise NotImplementedError("not implemented yet: LoRALinear.forward (base output plus "
                              "scaling * (x A^T) B^T for each active, unmerged adapter)")


def merge(self, name: str) -> None:
    """Fold adapter ``name`` into ``self.weight`` in place, so it costs nothing at inference.

    Under ``torch.no_grad()`` (the weight may be a Parameter that requires grad, and this is
    not part of training). ``ad = self._check(name)``; already in ``self.merged``: a
    RuntimeError. With ``delta = ad.delta_weight()`` cast to ``W.dtype``:

    - plain LoRA: ``W += delta`` (in place, ``W.add_``: the Parameter object must stay the
      same, other code holds it);
    - DoRA: ``V = W + delta`` in float32, ``scale = ad.magnitude / ||V||_row`` (out,) (the
      L2 norm of each row, ``V.norm(dim=1)``), then ``W <- V * scale[:, None]`` (``W.copy_``,
      cast to W's dtype). Keep ``self._dora_merge_scale[name] = scale`` (a clone): unmerge
      needs it, because the new W no longer tells what ||V|| was.

    Last, append ``name`` to ``self.merged``. Afterwards the forward skips this adapter
    (it is inside ``base_forward`` now) and the outputs are the same as before, up to
    float32 rounding; the tests check that against PEFT's own merge.
    """
    raise NotImplementedError("not implemented yet: LoRALinear.merge (W += scaling * B A; "
                              "DoRA: W = m * V / ||V||_row and remember the scale)")


def unmerge(self, name: str) -> None:
    """Take adapter ``name`` back out of ``self.weight`` (the inverse of ``merge``).

    Under ``torch.no_grad()``. ``ad = self._check(name)``; not in ``self.merged``: a
    RuntimeError that lists ``self.merged``. With ``delta = ad.delta_weight()`` in W's dtype:

    - plain LoRA: ``W -= delta`` in place (plain adapters commute, so any order works);
    - DoRA: it rescaled the whole weight, so it must come out last-in first-out: if
      ``self.merged[-1] != name``, a RuntimeError. Else pop the scale merge kept,
      ``scale = self._dora_merge_scale.pop(name)`` (out,), and undo both steps in float32:
      ``W <- W / scale[:, None] - delta`` (``W.copy_``, in W's dtype).

    Last, remove ``name`` from ``self.merged``. The tests want the original weight back to
    1e-6 and the unmerged outputs equal to the merged ones.
    """
    raise NotImplementedError("not implemented yet: LoRALinear.unmerge (W -= scaling * B A; "
                              "DoRA: W = W / scale - delta, last merged first)")
