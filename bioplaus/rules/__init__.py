"""Learning rules: each turns a block's input, output and the labels into
update directions (gradients) per parameter; optimizers apply them.

Families: :mod:`~bioplaus.rules.local` (Nøkland & Eidnes' local losses),
:mod:`~bioplaus.rules.frc` (Mostafa et al.'s fixed random classifiers),
:mod:`~bioplaus.rules.global_` (backprop, feedback alignment, glob+sim).
:mod:`~bioplaus.rules.step` runs one training step of any rule, block by block.
"""
from bioplaus.rules.registry import RULES, RuleError, RuleInfo, get_rule  # noqa: F401
