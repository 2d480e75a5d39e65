"""Checks every registered method must pass (shapes, invariances, no NaN, gradients)."""

from __future__ import annotations

import pytest
import torch

from fsarbench.config import method_config
from fsarbench.configs import CONFIG_ROOT
from fsarbench.names import method_configs, registered_methods
from fsarbench.registry import MODELS

TINY_BACKBONE = dict(type="FrameResNet", depth=18, num_stages=1)
CONFIGS = list(method_configs())


@pytest.fixture
def build(standin_weights):
    """A method on a tiny backbone: ResNet, or the CLIP stand-in for heads that embed class
    names (their episodes then carry random unit class texts, see ``call_head``)."""

    def build_method(name):
        torch.manual_seed(0)
        options = method_config(name)
        backbone = TINY_BACKBONE
        if MODELS.get(options["type"]).needs_text:
            backbone = dict(type="CLIPFrameBackbone", pretrained=str(standin_weights["clip"]))
        model = MODELS.build(dict(**options, backbone=backbone))
        model.eval()
        return model

    return build_method


def class_text(model, n_way=5, episodes=None):
    """Unit class texts ``[N, D]`` (``[E, N, D]``) for heads that need them, else None."""
    if not model.needs_text:
        return {}
    shape = (n_way, model.channels) if episodes is None else (episodes, n_way, model.channels)
    generator = torch.Generator().manual_seed(7)
    return {
        "class_text": torch.nn.functional.normalize(
            torch.randn(*shape, generator=generator), dim=-1
        )
    }


def call_head(model, support, labels, query, text=None):
    return model.head(support, labels, query, **(class_text(model) if text is None else text))


def call_loss(model, support, labels, query, query_labels, features):
    extra = {}
    if model.needs_text:  # training episodes carry their classes (as split class labels)
        names = tuple(f"class {i}" for i in range(8))
        model.set_class_texts({name: name for name in names})
        extra = dict(class_ids=torch.tensor([6, 1, 4, 0, 3]), split_classes=names)
    return model(support, labels, query, query_labels, mode="loss", features=features, **extra)


def features(model, count, frames=4):
    channels = model.channels
    shape = (
        (count, frames, channels)
        if model.feature_kind == "pooled"
        else (count, frames, channels, 3, 3)
    )
    return torch.randn(*shape)


def test_every_registered_method_has_a_config_folder_with_a_readme():
    # and every method folder of fsarbench's configs is a registered method: names resolve
    # from the folders without importing the methods
    folders = {path.parent.name for path in method_configs().values()}
    assert folders == set(registered_methods())
    for method in registered_methods():
        assert (CONFIG_ROOT / method / f"{method}.py").is_file(), method
        readme = CONFIG_ROOT / method / "README.md"
        assert readme.is_file() and "Deviations" in readme.read_text(), method


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_shape_and_finite_loss(name, build):
    model = build(name)
    torch.manual_seed(1)
    support, labels = features(model, 10), torch.arange(5).repeat(2)
    query = features(model, 15)
    logits = call_head(model, support, labels, query)
    assert logits.shape == (15, 5) and torch.isfinite(logits).all()
    loss = call_loss(model, support, labels, query, torch.arange(5).repeat(3), features=True)
    assert all(torch.isfinite(value) for value in loss.values())


@pytest.mark.parametrize("name", CONFIGS)
def test_label_permutation_permutes_columns(name, build):
    model = build(name)
    torch.manual_seed(2)
    support, labels, query = features(model, 10), torch.arange(5).repeat(2), features(model, 5)
    permutation = torch.tensor([3, 0, 4, 1, 2])  # class n becomes class permutation[n]
    text = class_text(model)
    logits = call_head(model, support, labels, query, text)
    # the class texts follow their classes to the new labels
    moved = {k: v[torch.argsort(permutation)] for k, v in text.items()}
    relabelled = call_head(model, support, permutation[labels], query, moved)
    assert torch.allclose(relabelled[:, permutation], logits, atol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_support_order_does_not_matter(name, build):
    model = build(name)
    torch.manual_seed(3)
    support, labels, query = features(model, 15), torch.arange(5).repeat(3), features(model, 5)
    order = torch.randperm(15)
    assert torch.allclose(
        call_head(model, support, labels, query),
        call_head(model, support[order], labels[order], query),
        atol=1e-5,
    )


@pytest.mark.parametrize("name", CONFIGS)
def test_no_nan_on_constant_input(name, build):
    model = build(name)
    support = torch.zeros_like(features(model, 5))
    logits = call_head(model, support, torch.arange(5), torch.zeros_like(features(model, 5)))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", CONFIGS)
def test_batched_heads_match_single_episodes(name, build):
    model = build(name)
    torch.manual_seed(4)
    support = torch.stack([features(model, 10) for _ in range(3)])
    labels = torch.stack([torch.arange(5).repeat(2)[torch.randperm(10)] for _ in range(3)])
    query = torch.stack([features(model, 5) for _ in range(3)])
    text = class_text(model, episodes=3)
    batched = model.head_episodes(support, labels, query, **text)
    single = torch.stack(
        [
            call_head(model, s, lab, q, {k: v[e] for k, v in text.items()})
            for e, (s, lab, q) in enumerate(zip(support, labels, query, strict=True))
        ]
    )
    assert torch.allclose(batched, single, atol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_backbone_receives_gradients(name, build):
    model = build(name)
    model.train()
    clips = torch.randint(0, 255, (10, 2, 3, 32, 32), dtype=torch.uint8)
    loss = call_loss(model, clips[:5], torch.arange(5), clips[5:], torch.arange(5), False)
    loss["loss_cls"].backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("kept", ["every row", "rebuildable rows left out"])
@pytest.mark.parametrize("shots", [1, 2])
@pytest.mark.parametrize("name", CONFIGS)
def test_the_test_path_from_a_feature_store_gives_each_episodes_head_logits(
    name, shots, kept, build, tmp_path, monkeypatch
):
    """What a run computes from stored features (``encode_for_test`` once per video into
    preallocated rows; beyond the memory budget, the rows a head can rebuild left out and
    rebuilt from features read back from the store on disk; ``compare`` over a batch of
    episodes) equals ``head`` on each episode's features."""
    import numpy as np

    import fsarbench.evaluation
    from fsarbench.data.episodes import EpisodeSpec, SplitVideos, sample_episodes
    from fsarbench.evaluation import encode_videos, episode_logits_from_encoded
    from fsarbench.features import StoredFeatures

    if kept != "every row":
        monkeypatch.setattr(fsarbench.evaluation, "KEPT_BUDGET_BYTES", 0)
    model = build(name)
    classes = tuple(f"class {c}" for c in range(7))
    ids = tuple(f"v{i:03d}" for i in range(42))
    split = SplitVideos("speed", "test", classes, ids, tuple(i % 7 for i in range(42)))
    episodes = sample_episodes(split, EpisodeSpec(5, shots, 2, 6, 0))
    if model.needs_text:
        model.set_class_texts({c: c for c in classes})
    torch.manual_seed(3)
    np.save(tmp_path / "features.npy", features(model, 42).numpy().astype(np.float16))
    stored = StoredFeatures(None, ids, np.load(tmp_path / "features.npy", mmap_mode="r"))
    encoded = encode_videos(model, episodes, stored, chunk=16)
    left_out = kept != "every row" and bool(model.rebuildable_rows)
    assert (encoded.stored is not None) == left_out
    batched = episode_logits_from_encoded(model, episodes, encoded, 0, len(episodes))
    rows = stored.rows_for(episodes.video_ids)
    with torch.inference_mode():
        single = torch.stack(
            [
                model.head(
                    torch.from_numpy(stored.read(rows[episodes.support[e]])),
                    torch.from_numpy(episodes.support_labels[e]),
                    torch.from_numpy(stored.read(rows[episodes.query[e]])),
                    **{k: v[0] for k, v in model.episode_context(episodes, e, e + 1).items()},
                )
                for e in range(len(episodes))
            ]
        )
    assert batched.shape == (6, 10, 5)
    assert torch.allclose(batched, single, atol=1e-5), (batched - single).abs().max()
