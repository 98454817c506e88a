"""Worked solution: the upcycling weight copy (see ../upcycle.py for the task)."""

from __future__ import annotations

import torch


def copy_mlp_into_experts(mlp, moe):
    experts = moe.experts
    n = experts.gate_up_proj.size(0)
    if tuple(experts.gate_up_proj.shape[1:]) != tuple(mlp.fc.weight.shape):
        raise ValueError(f"the experts are {tuple(experts.gate_up_proj.shape[1:])}, the dense MLP "
                         f"{tuple(mlp.fc.weight.shape)}: build them at the dense width")
    with torch.no_grad():
        for e in range(n):
            experts.gate_up_proj[e].copy_(mlp.fc.weight)
            experts.down_proj[e].copy_(mlp.proj.weight)
    return moe
