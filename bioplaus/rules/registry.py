"""The registry: every ``--rule`` name, its family, heads and one-line equation.

The CLI (`bioplaus rules`), the docs pages in ``rules/`` and the training
loop are all driven from :data:`RULES`. A row names the module that
implements the rule (:attr:`RuleInfo.module`; by default its family's);
what that module provides is listed in :mod:`bioplaus.rules`. A new rule is
one module and one row here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import NamedTuple

# family -> the module that implements its rules, unless a row names another
FAMILY_MODULES = {
    "local": "bioplaus.rules.local",
    "global": "bioplaus.rules.global_",
    "frc": "bioplaus.rules.frc",
}


class LossWeights(NamedTuple):
    """Weights of a rule's losses: the local prediction loss, the local
    similarity loss and the output layer's cross-entropy."""

    pred: float
    sim: float
    out: float


@dataclass(frozen=True)
class RuleInfo:
    """What a rule is.

    ``family``: 'local' (Nøkland & Eidnes' detached local losses), 'global'
    (one error sent down the whole net) or 'frc' (Mostafa et al.'s fixed
    random classifiers). ``pred``/``sim``/``bio`` say which local losses a
    local rule uses; ``feedback`` names the matrix that carries errors
    backwards (``W``, ``B``, ``K``; the sign-concordant rules' ``sign-uniform``,
    ``sign-batch``, ``sign-fixed``; the direct rules' ``direct-error``, ``direct-target``). ``zero_out_init``: the output layer's
    weight starts at zero (the reference does so for every non-backprop run).
    ``uses_beta``: the losses are weighted by ``--beta`` (:meth:`weights`).
    ``functions`` are the functions the rule's page cites. ``module``: the
    module implementing the rule ('' for its family's, :data:`FAMILY_MODULES`).
    """

    name: str
    family: str
    summary: str
    source: str
    pred: bool = False
    sim: bool = False
    bio: bool = False
    frc: str = ""
    feedback: str = "W"
    zero_out_init: bool = True
    uses_beta: bool = False
    functions: tuple = ()
    module: str = ""

    @property
    def impl(self):
        """The module that implements the rule (see :mod:`bioplaus.rules`)."""
        return importlib.import_module(self.module or FAMILY_MODULES[self.family])

    def weights(self, beta: float) -> LossWeights:
        r"""The loss weights under ``--beta``: :math:`L = (1-\beta) L_{pred} + \beta L_{sim}`
        and the output layer's loss scaled by :math:`1-\beta` (as the reference does) for
        the rules that use beta; 1 for every loss of every other rule."""
        if self.uses_beta:
            return LossWeights(1.0 - beta, beta, 1.0 - beta)
        return LossWeights(1.0, 1.0, 1.0)


_LOCAL_FNS = ("bioplaus.rules.local.local_block_update",
              "bioplaus.rules.step.step_updates")
_PRED_FNS = ("bioplaus.rules.local.pred_loss",)
_SIM_FNS = ("bioplaus.rules.local.sim_loss_learned",)
_PREDBIO_FNS = ("bioplaus.rules.local.pred_bio_loss",)
_SIMBIO_FNS = ("bioplaus.rules.local.sim_bio_loss",)
_COMMON = ("bioplaus.similarity.similarity_matrix_forward", "bioplaus.losses.sim_loss")

_SIGN_FNS = ("bioplaus.rules.signsym.sign_updates", "bioplaus.rules.signsym.magnitude",
             "bioplaus.feedback.sign_concordant", "bioplaus.rules.global_.global_updates")
_DIRECT_FNS = ("bioplaus.rules.direct.global_updates", "bioplaus.feedback.direct_matrix",
               "bioplaus.net.block.block_backward_from_h")

_LIST = [
    RuleInfo("backprop", "global",
             r"dW_l = dL/dW_l, L = CE(Y, W_out h_L): one global error, sent down through W^T",
             "standard backpropagation (baseline of both papers)",
             zero_out_init=False,
             functions=("bioplaus.rules.global_.global_updates", "bioplaus.net.block.block_backward_from_h")),
    RuleInfo("fa", "global",
             r"delta_l = (B_{l+1} delta_{l+1}) * f'(a_l): the error crosses fixed random B, not W^T",
             "feedback alignment (Lillicrap et al. 2016), baseline of Mostafa et al. 2018, Sec. 4",
             feedback="B", zero_out_init=False,
             functions=("bioplaus.rules.global_.global_updates", "bioplaus.feedback.fa_matrix")),
    RuleInfo("pred", "local", r"L_pred = CE(Y, W^T pool(H)) per block, detached",
             "Nøkland & Eidnes 2019, Sec. 3 (prediction loss)", pred=True,
             functions=_LOCAL_FNS + _PRED_FNS + ("bioplaus.losses.softmax_cross_entropy",)),
    RuleInfo("sim", "local", r"L_sim = ||S(NN(H)) - S(Y)||_F^2 / n^2 per block, detached",
             "Nøkland & Eidnes 2019, Sec. 3 (similarity matching loss)", sim=True,
             functions=_LOCAL_FNS + _SIM_FNS + _COMMON),
    RuleInfo("predsim", "local", r"L = (1-beta) L_pred + beta L_sim, beta = 0.99",
             "Nøkland & Eidnes 2019, Sec. 3 (predsim)", pred=True, sim=True, uses_beta=True,
             functions=_LOCAL_FNS + _PRED_FNS + _SIM_FNS + _COMMON),
    RuleInfo("pred-bio", "local",
             r"L = BCE(1[P y > 0], W^T pool(H)); the error reaches H through fixed B, not W",
             "Nøkland & Eidnes 2019, Sec. 3.3 (biologically plausible pred)",
             pred=True, bio=True, feedback="B",
             functions=_LOCAL_FNS + _PREDBIO_FNS + ("bioplaus.losses.bce_with_logits",
                                                   "bioplaus.feedback.label_projection",
                                                   "bioplaus.feedback.bio_decoder_feedback")),
    RuleInfo("sim-bio", "local", r"L = ||S(pool(H)) - S(P Y)||_F^2 / n^2, no learned NN",
             "Nøkland & Eidnes 2019, Sec. 3.3 (biologically plausible sim)", sim=True, bio=True,
             functions=_LOCAL_FNS + _SIMBIO_FNS + _COMMON + ("bioplaus.feedback.label_projection",)),
    RuleInfo("predsim-bio", "local", r"L = (1-beta) pred-bio + beta sim-bio (recipes: beta = 0.01)",
             "Nøkland & Eidnes 2019, Sec. 3.3", pred=True, sim=True, bio=True, feedback="B",
             uses_beta=True,
             functions=_LOCAL_FNS + _PREDBIO_FNS + _SIMBIO_FNS + _COMMON),
    RuleInfo("glob+sim", "global",
             r"L = CE(Y, W_out h_L) + sum_l L_sim,l; nothing detached",
             "Nøkland & Eidnes 2019, Table 9 (reference: sim with --no-detach)", sim=True,
             functions=("bioplaus.rules.global_.global_updates",) + _SIM_FNS + _COMMON),
    RuleInfo("frc-sym", "frc", r"y_l = M_l h_l; delta_l = (M_l^T e_l) * f'(a_l)",
             "Mostafa, Ramesh & Cauwenberghs 2018, Sec. 3 (symmetric feedback)", frc="sym",
             feedback="K",
             functions=("bioplaus.rules.frc.frc_block_update", "bioplaus.feedback.frc_classifier",
                        "bioplaus.feedback.frc_feedback")),
    RuleInfo("frc-sign", "frc", r"delta_l = (K_l e_l) * f'(a_l), sign(K_l) = sign(M_l^T), random |K_l|",
             "Mostafa, Ramesh & Cauwenberghs 2018, Sec. 3 (sign-concordant feedback)", frc="sign",
             feedback="K",
             functions=("bioplaus.rules.frc.frc_block_update", "bioplaus.feedback.frc_feedback")),
    RuleInfo("frc-random", "frc", r"delta_l = (K_l e_l) * f'(a_l), K_l independent of M_l",
             "Mostafa, Ramesh & Cauwenberghs 2018, Sec. 3 (random feedback: fails to learn)",
             frc="random", feedback="K",
             functions=("bioplaus.rules.frc.frc_block_update", "bioplaus.feedback.frc_feedback")),
    RuleInfo("frc-trainable", "frc", r"y_l = M_l h_l with M_l learned too; delta_l = (M_l^T e_l) * f'(a_l)",
             "Mostafa, Ramesh & Cauwenberghs 2018, Sec. 4 (trainable local classifiers)",
             frc="trainable",
             functions=("bioplaus.rules.frc.frc_block_update", "bioplaus.feedback.frc_classifier")),
    RuleInfo("usf", "global",
             r"delta_l = (B_{l+1} delta_{l+1}) * f'(a_l), B = s sign(W), s the init's std",
             "uniform sign-concordant feedback (Liao, Leibo & Poggio 2016; Xiao et al. 2018)",
             feedback="sign-uniform", zero_out_init=False, module="bioplaus.rules.signsym",
             functions=_SIGN_FNS + ("bioplaus.feedback.usf_scale",)),
    RuleInfo("brsf", "global",
             r"B_t = |R_t| * sign(W), R_t redrawn every batch from (seed, layer, step)",
             "batchwise random magnitude sign-concordant feedback (Xiao et al. 2018)",
             feedback="sign-batch", zero_out_init=False, module="bioplaus.rules.signsym",
             functions=_SIGN_FNS + ("bioplaus.feedback.brsf_magnitude",)),
    RuleInfo("frsf", "global", r"B = |B_0| * sign(W), |B_0| fixed random",
             "fixed random magnitude sign-concordant feedback (Xiao et al. 2018)",
             feedback="sign-fixed", zero_out_init=False, module="bioplaus.rules.signsym",
             functions=_SIGN_FNS + ("bioplaus.feedback.frsf_magnitude",)),
    RuleInfo("dfa", "global", r"delta_l = (e B_l) * f'(a_l): the output error sent to every layer directly",
             "direct feedback alignment (Nøkland 2016)",
             feedback="direct-error", zero_out_init=False, module="bioplaus.rules.direct",
             functions=_DIRECT_FNS),
    RuleInfo("drtp", "global", r"delta_l = (y* B_l) * f'(a_l): the one-hot target projected to every layer",
             "direct random target projection (Frenkel, Lefebvre & Bol 2021)",
             feedback="direct-target", zero_out_init=False, module="bioplaus.rules.direct",
             functions=_DIRECT_FNS),
]

RULES = {r.name: r for r in _LIST}


class RuleError(ValueError):
    """Unknown rule or an option that does not apply to the rule."""


def get_rule(name: str) -> RuleInfo:
    try:
        return RULES[name]
    except KeyError:
        raise RuleError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}") from None
