"""Learning rules: each turns a block's input, output and the labels into
update directions (gradients) per parameter; optimizers apply them.

Families: :mod:`~bioplaus.rules.local` (Nøkland & Eidnes' local losses),
:mod:`~bioplaus.rules.frc` (Mostafa et al.'s fixed random classifiers),
:mod:`~bioplaus.rules.global_` (backprop, feedback alignment, glob+sim).
:mod:`~bioplaus.rules.step` runs one training step of any rule, block by block.

A rule is a row of :data:`~bioplaus.rules.registry.RULES` and the module
that row names (``RuleInfo.impl``). The module provides:

* ``init_heads(rule, block, geom, init) -> (params, fixed)``: the block's
  head arrays (``init``: :class:`bioplaus.net.model.HeadInit`); optionally
  ``init_output(rule, spec, init) -> fixed`` for the output layer;
* ``BLOCKWISE``: True for a rule that updates each block as soon as its own
  forward is done, with ``READS_OUTPUT`` (its loss reads the block's pooled
  output, so an error comes back through the max-pool) and
  ``block_update(model, i, out, h, cache, y, Y) -> (grads, dh, stats, y_hat)``;
  False for one error sent down the whole net after the forward, with
  ``global_updates(model, x, y, Y, masks, training) -> (grads, logits, stats)``;
* optionally the early exits: ``exit_scores(model, i, h, out)`` (None: no
  exit), ``exit_prediction(model, i, scores)`` and ``head_macs(model, i)``.

The loss weights (beta) come from the row (``RuleInfo.weights``, kept as
``model.weights``); every op goes through ``model.k``.
"""
from bioplaus.rules.registry import RULES, RuleError, RuleInfo, get_rule  # noqa: F401
