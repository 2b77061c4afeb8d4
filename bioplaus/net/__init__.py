"""The network: what it is, its arrays, and its forward pass.

* :mod:`~bioplaus.net.spec` -- the nets' specifications (mlp, the VGG
  family, Mostafa's nets): shapes, names and counts, no math.
* :mod:`~bioplaus.net.block` -- one hidden block's parameters and its
  forward/backward through the ops.
* :mod:`~bioplaus.net.model` -- a net's arrays for one rule
  (:class:`~bioplaus.net.model.Model`, :func:`~bioplaus.net.model.build_model`).
* :mod:`~bioplaus.net.forward` -- the model's forward pieces shared by the
  rules and the evaluation: a block, the output layer, the dropout masks.
* :mod:`~bioplaus.net.restore` -- a trained model back from a checkpoint.
"""
