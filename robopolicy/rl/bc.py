"""Behaviour cloning as a warm start before RL: a fresh policy, a few epochs of its own loss.

The full behaviour-cloning trainer (:mod:`robopolicy.train`) is for real pretraining (EMA,
validation, resumable checkpoints); this is the short, seeded loop an RL run does first.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from robopolicy.data.dataset import SequenceDataset, SequenceDatasetConfig
from robopolicy.policies.base import Policy, PolicyConfig
from robopolicy.policies.build import make_policy

log = logging.getLogger(__name__)


def behaviour_clone(
    config: PolicyConfig,
    data: str | Path,
    *,
    epochs: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> Policy:
    """A policy of ``config``'s type fitted on the episode store ``data``.

    The dataset's windows follow ``config`` (keys, To, Tp, Ta); its normalizer is fitted on the
    data (as for any cloned policy); ``epochs`` passes of ``policy.loss`` with Adam at ``lr`` in
    a seeded order. Network initialization uses torch's global generator (seed it first).
    """
    dataset = SequenceDataset(
        SequenceDatasetConfig(
            data,
            obs_keys=config.obs_keys,
            image_keys=config.image_keys,
            n_obs_steps=config.n_obs_steps,
            horizon=config.horizon,
            n_action_steps=config.n_action_steps,
        )
    )
    policy = make_policy(dataclasses.replace(config, shapes={}), dataset)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    policy.train()
    for epoch in tqdm(range(epochs), desc="bc", unit="epoch", disable=not progress):
        losses = []
        for rows in torch.randperm(len(dataset), generator=generator).split(batch_size):
            loss = policy.loss(dataset[rows.numpy()])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        log.info("bc epoch %d/%d: loss %.5f", epoch + 1, epochs, sum(losses) / len(losses))
    return policy
