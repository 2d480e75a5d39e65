"""Training replicates: the same run trained again from weights perturbed at float rounding's
scale, the gate's model of what another machine changes.

Why: on another CPU (another SIMD width, another BLAS kernel) the float32 rounding of the
forward and backward passes differs in the last bits, and 300 training iterations amplify
those bits into other weights and a different accuracy, by up to several points on synth.
A baseline written on one machine cannot pin that down. Replicate ``R > 0`` of a run keeps
everything the run has (its seeds, its data order, its episodes) and multiplies every
initial weight by ``1 + 1e-6 * N(0, 1)``, drawn under (seed, R): a perturbation of the size
rounding makes, which training then amplifies as it amplifies rounding. Reseeding instead
(other initial weights, another data order) measures another question, seed variance, which
is several times larger and would leave the gate nearly blind.

Replicate 0 is the run itself: nothing is perturbed and its config, identity and record are
those of a plain run. With ``--weights`` the loaded backbone replaces its perturbed
initialisation, so only a head's weights are perturbed.
"""

from __future__ import annotations

import numpy as np
import torch

RELATIVE_SCALE = 1e-6  # float32 rounding is ~6e-8 relative; training amplifies either alike
BACKBONE, HEAD = 0, 1  # the two parts, perturbed by generators of their own


def replicate_of(config) -> int:
    return int(config.schedule.get("replicate", 0))


def perturb_initial_weights(
    parameters: list[tuple[str, torch.nn.Parameter]], config, seed: int, part: int
) -> None:
    """Perturb ``parameters`` (name, tensor) in place for the config's replicate (no-op for
    replicate 0). The noise is a function of (seed, replicate, part, order of the names), so
    a backbone built alone and the same backbone inside its model get the same perturbation."""
    replicate = replicate_of(config)
    if replicate == 0:
        return
    state = np.random.SeedSequence([seed, replicate, part]).generate_state(1)[0]
    generator = torch.Generator().manual_seed(int(state))
    with torch.no_grad():
        for _, tensor in sorted(parameters, key=lambda item: item[0]):
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
                tensor.mul_(1.0 + RELATIVE_SCALE * noise.to(tensor.dtype))


def perturb_model(model, config, seed: int) -> None:
    """A freshly built model's backbone and head, each with its own generator."""
    perturb_initial_weights(list(model.backbone.named_parameters()), config, seed, BACKBONE)
    head = [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone.")]
    perturb_initial_weights(head, config, seed, HEAD)
