"""The free-weight diagnostic: BN put back in the loop computes the same function; runs end to end."""

from __future__ import annotations

import torch

from service.archs import ResNet20, fold_batchnorm
from service.training.data import normalize
from service.training.free_weights import fine_tune, parser, perturbed, with_batchnorm
from service.training.hypernet_inputs import synthetic_splits


def random_folded(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = ResNet20(1, 10, None, batchnorm=True)
    with torch.no_grad():  # non-trivial statistics, so the folded biases are not zero
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return fold_batchnorm(model.eval())


def test_batchnorm_back_in_the_loop_computes_the_folded_networks_function():
    folded = random_folded()
    splits = synthetic_splits(64)
    x = normalize(splits.train.images, splits.info)
    plain = ResNet20(1, 10, None, batchnorm=False).eval()
    plain.load_state_dict(folded)

    model = with_batchnorm(folded, x)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-4, rtol=1e-4)
        refolded = fold_batchnorm(model)
    assert set(refolded) == set(folded)
    assert max((refolded[k] - folded[k]).abs().max().item() for k in folded) < 1e-4


def test_perturbation_touches_only_conv_weights():
    folded = random_folded()
    noisy = perturbed(folded, 0.2)
    for name, value in folded.items():
        changed = not torch.equal(value, noisy[name])
        assert changed == (value.dim() == 4), name


def test_fine_tune_runs_both_variants_and_logs_each_validation(tmp_path):
    folded, teacher = random_folded(0), random_folded(1)
    splits = synthetic_splits(64)
    for batchnorm in (False, True):
        args = parser().parse_args(["start", "teacher", "--steps", "3", "--batch", "16", "--val-every", "2",
                                    "--val-limit", "16", *(["--batchnorm"] if batchnorm else [])])
        records: list[dict] = []
        result = fine_tune(folded, teacher, splits, args, log=records.append)
        assert [r.get("step") for r in records] == [0, 2, 3, None]
        assert records[-1]["end"] and set(result) == {"test_ema", "test_start"}
        assert all(0.0 <= r["val_ema"] <= 100.0 for r in records[1:3])
