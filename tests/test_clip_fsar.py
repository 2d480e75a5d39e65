"""CLIP-FSAR known-answer tests CL-1..CL-3 (the modulated support keeps T tokens, video-text
logits, the bidirectional-sum OTAM regression value) and class names as text."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import split_source
from fsarbench.benchmarks.class_names import class_texts, readable, store_class_names
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.benchmarks.splits import store_splits
from fsarbench.cli import main
from fsarbench.errors import FsarbenchError
from fsarbench.methods.clip_fsar import TemporalTransformer
from fsarbench.registry import MODELS


@pytest.fixture
def model(standin_weights):
    torch.manual_seed(0)
    backbone = dict(type="CLIPFrameBackbone", pretrained=str(standin_weights["clip"]))
    return MODELS.build(dict(type="clip_fsar", backbone=backbone, heads=2, ffn_dim=32)).eval()


def test_cl1_support_keeps_t_tokens_and_shares_omega_with_the_query(model):
    frames, text = torch.randn(3, 8, 16), F.normalize(torch.randn(3, 16), dim=-1)
    assert model.modulate_support(frames, text).shape == (3, 8, 16)  # text token dropped
    assert model.encode(frames)["modulated"].shape == (3, 8, 16)
    omegas = [m for m in model.modules() if isinstance(m, TemporalTransformer)]
    assert omegas == [model.omega]  # one set of weights for both paths
    # the text token reaches the support frames (it is attended to), the query has none
    other = model.modulate_support(frames, -text)
    assert not torch.allclose(other, model.modulate_support(frames, text))


def test_cl2_video_text_logits_equal_the_scale_at_the_matching_class(model):
    text = F.normalize(torch.randn(6, 16), dim=-1)
    with torch.no_grad():
        model.scale.fill_(2.5)
    video = text[4].expand(8, 16)[None]  # every frame is class 4's text: v = text_4
    logits = model.video_text_logits(video, text)[0]
    # unit vectors: the released cosine is 1 / (1 + 0.01) at the matching class
    assert torch.isclose(logits[4], torch.tensor(2.5 / 1.01), atol=1e-6)
    assert logits.argmax() == 4


def test_cl3_bidirectional_sum_otam_on_the_ot4_inputs(model):
    """OT-4 inputs, lambda 0.5, first_col_vertical: -0.665770 + 1.574668 = 0.908898 [V]; the
    known answer is for the plain cosine, so the released epsilon is set to 0 here."""
    model.cosine_epsilon = 0.0
    eye = torch.eye(8, dtype=torch.float64)
    query = eye[None, None]  # [E=1, Q=1, T, D]: e0..e7
    support = eye[[0, 0, 1, 2, 3, 3, 4, 5]][None, None]  # a monotone warp
    forward = model.distances(query, support)[0, 0, 0]
    backward = model.distances(support, query)[0, 0, 0]
    assert abs(float(forward) - 0.908898) < 1e-6
    assert abs(float(forward) - float(backward)) < 1e-9  # the sum is symmetric


# --- the released computation, written out from its description ---------------------------


def released_omega(omega: TemporalTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The released code's one-layer block in eval mode, from its structure, on Omega's
    weights: one LayerNorm shared by q, k and v; bias-free projections into heads of D / heads;
    softmax(q kᵀ / sqrt(D / heads)) v; the output projection (with bias) added to the tokens;
    then Linear, GELU, Linear added to that, with no LayerNorm before it."""
    batch, length, dim = tokens.shape
    heads = omega.heads
    normed = F.layer_norm(tokens, (dim,), omega.norm.weight, omega.norm.bias, omega.norm.eps)

    def heads_of(weight):  # [B, heads, L, D / heads]
        return (normed @ weight.T).reshape(batch, length, heads, dim // heads).transpose(1, 2)

    q, k, v = heads_of(omega.to_q.weight), heads_of(omega.to_k.weight), heads_of(omega.to_v.weight)
    weights = torch.softmax(q @ k.transpose(-1, -2) * (dim // heads) ** -0.5, dim=-1)
    attended = (weights @ v).transpose(1, 2).reshape(batch, length, dim)
    x = tokens + attended @ omega.to_out.weight.T + omega.to_out.bias
    first, second = omega.ffn[0], omega.ffn[3]
    return x + F.gelu(x @ first.weight.T + first.bias) @ second.weight.T + second.bias


def released_cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x [M, D]``, ``y [N, D]`` -> ``x·y / (|x| |y| + 0.01)`` ``[M, N]``."""
    return (x @ y.T) / (x.norm(dim=-1)[:, None] * y.norm(dim=-1)[None] + 0.01)


def released_otam(distances: torch.Tensor, lbda: float = 0.5) -> float:
    """One direction of the released OTAM recursion on ``distances [Tq, Tp]``: a zero column
    padded on both sides, the first row summed, a soft minimum over the left and lower-left
    cells in the middle columns and over three cells in the first and last real columns."""
    d = F.pad(distances, (1, 1)).tolist()
    rows, cols = len(d), len(d[0])
    cum = [[0.0] * cols for _ in range(rows)]

    def softmin(*values):
        return -lbda * math.log(sum(math.exp(-value / lbda) for value in values))

    for m in range(1, cols):
        cum[0][m] = d[0][m] + cum[0][m - 1]
    for row in range(1, rows):
        cum[row][1] = d[row][1] + softmin(cum[row - 1][0], cum[row - 1][1], cum[row][0])
        for m in range(2, cols - 1):
            cum[row][m] = d[row][m] + softmin(cum[row - 1][m - 1], cum[row][m - 1])
        last = cols - 1
        cum[row][last] = d[row][last] + softmin(
            cum[row - 1][last - 1], cum[row - 1][last], cum[row][last - 1]
        )
    return cum[-1][-1]


@pytest.mark.parametrize("shots", [1, 3])
def test_logits_equal_the_released_computation_on_the_same_weights(model, shots):
    """The released test forward (visual metric): each support video's frames and its class's
    text token through the block, the first T outputs kept, shots averaged per class; the
    queries' frames through the same block; OTAM on 1 - the released cosine, both directions
    summed; logits = -distance. Computed here from that description on the head's own weights
    (trained-looking: every parameter perturbed from its initialisation) and compared with the
    head's logits, per episode and on the test's once-per-video path."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.omega.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    n_way, frames, dim = 5, 8, 16
    support = 3.0 * torch.randn(n_way * shots, frames, dim)  # CLIP-scale, not unit, features
    query = 3.0 * torch.randn(4, frames, dim)
    labels = torch.arange(n_way).repeat(shots)
    text = 8.0 * torch.randn(n_way, dim)  # raw text-tower features of the episode's classes

    expected = torch.empty(len(query), n_way, dtype=torch.float64)
    with torch.no_grad():
        modulated = released_omega(model.omega, torch.cat([support, text[labels, None]], dim=1))
        modulated = modulated[:, :frames]
        prototypes = torch.stack([modulated[labels == c].mean(dim=0) for c in range(n_way)])
        queries = released_omega(model.omega, query)
        for q in range(len(query)):
            for c in range(n_way):
                cost = 1.0 - released_cosine(queries[q], prototypes[c])  # [Tq, Tp]
                both = released_otam(cost.double()) + released_otam(cost.double().T)
                expected[q, c] = -both

        rows = lambda encoded: {k: v[None] for k, v in encoded.items()}  # noqa: E731
        episode = model.compare(
            rows(model.encode(support)),
            labels[None],
            rows(model.encode(query)),
            class_text=text[None],
        )[0]
        own = model.encode_for_test(support, shots, own_text=text[labels])
        per_video = model.compare(
            rows(own), labels[None], rows(model.encode(query)), class_text=text[None]
        )[0]
    assert expected.abs().max() > 1.0  # distances of some size, not all near zero
    assert torch.allclose(episode.double(), expected, atol=1e-5, rtol=0)
    assert torch.allclose(per_video.double(), expected, atol=1e-5, rtol=0)
    assert model.omega.out_dropout.p == 0.2  # the released dropouts, active in training only
    assert [m.p for m in model.omega.ffn if isinstance(m, torch.nn.Dropout)] == [0.05, 0.05]


def test_loss_has_the_video_text_term_weighted_by_lambda(model):
    names = tuple(f"class {i}" for i in range(6))
    model.set_class_texts({name: name for name in names})
    model.text_loss_weight = 3.0
    support, query = torch.randn(5, 8, 16), torch.randn(5, 8, 16)
    labels, classes = torch.arange(5), torch.tensor([5, 0, 2, 1, 4])
    losses = model(
        support,
        labels,
        query,
        labels,
        mode="loss",
        features=True,
        class_ids=classes,
        split_classes=names,
    )
    bank = model.text_features(names)
    class_logits = model.video_text_logits(torch.cat([support, query]), bank)
    expected = 3.0 * F.cross_entropy(class_logits, classes[labels].repeat(2))
    assert torch.isclose(losses["loss_text"], expected, atol=1e-6)


def test_fusion_mixes_text_and_visual_probabilities(model):
    text = F.normalize(torch.randn(1, 5, 16), dim=-1)
    support = model.encode(torch.randn(5, 8, 16))
    query = model.encode(torch.randn(3, 8, 16))
    rows = lambda encoded: {k: v[None] for k, v in encoded.items()}  # noqa: E731
    labels = torch.arange(5)[None]
    with torch.no_grad():
        visual = model.compare(rows(support), labels, rows(query), class_text=text)
        model.fusion = True
        fused = model.compare(rows(support), labels, rows(query), class_text=text)
        video = F.normalize(query["frames"].mean(dim=1), dim=-1)  # [Q, D]: a plain cosine
        p_text = F.softmax(model.scale * video @ text[0].T, dim=-1)
        p_vis = F.softmax((8.0 + visual[0]) / 8.0, dim=-1)  # visual = -d
    expected = p_text**0.9 * p_vis**0.1
    assert torch.allclose(fused[0].exp(), expected, atol=1e-5)


# --- class names ------------------------------------------------------------------------------


def test_labels_become_readable_names():
    assert readable("ApplyEyeMakeup") == "apply eye makeup"
    assert readable("brush_hair") == "brush hair"
    assert readable("Pushing [something] from left to right") == (
        "pushing something from left to right"
    )
    assert readable("playing bass guitar") == "playing bass guitar"


def test_ssv2_full_placeholders_ask_for_names(shared_splits):
    benchmark = get_benchmark("ssv2-full")
    store_splits(benchmark, split_source("ssv2-full"))
    with pytest.raises(FsarbenchError, match="data class-names ssv2-full"):
        class_texts(benchmark, ("train0", "train1"))


def test_ssv2_full_names_come_from_ssv2_annotation_files(shared_splits, tmp_path, capsys):
    benchmark = get_benchmark("ssv2-full")
    stored = store_splits(benchmark, split_source("ssv2-full"))
    # a stand-in for SSv2's annotation JSONs: one template per class, as SSv2 has
    entries = [
        {"id": entry.video_id, "template": f"Doing [something] number {entry.class_name}"}
        for split in stored.lists.values()
        for entry in split.entries
    ]
    half = len(entries) // 2
    train_json, val_json = tmp_path / "train.json", tmp_path / "validation.json"
    train_json.write_text(json.dumps(entries[:half]))
    val_json.write_text(json.dumps(entries[half:]))
    with pytest.raises(FsarbenchError, match="no name for"):
        store_class_names(benchmark, [train_json])  # the other half's classes are missing
    assert main(["data", "class-names", "ssv2-full", str(train_json), str(val_json)]) == 0
    assert class_texts(benchmark, ("test3",)) == ["doing something number test3"]
    # two templates for one class: these are not this split's annotation files
    entries[0]["template"] = "Another [thing]"
    train_json.write_text(json.dumps(entries[:half]))
    assert main(["data", "class-names", "ssv2-full", str(train_json), str(val_json)]) == 2
    assert "different SSv2 templates" in capsys.readouterr().err


def test_a_names_object_must_use_the_split_labels(shared_splits, tmp_path, capsys):
    benchmark = get_benchmark("ssv2-full")
    store_splits(benchmark, split_source("ssv2-full"))
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"train0": "a", "nonsense": "b"}))
    assert main(["data", "class-names", "ssv2-full", str(names)]) == 2
    assert "do not have: nonsense" in capsys.readouterr().err
    names.write_text("[not json")
    assert main(["data", "class-names", "ssv2-full", str(names)]) == 2
    assert "cannot be read as JSON" in capsys.readouterr().err


def test_the_head_learns_from_informative_features(model):
    """On CLIP-like features (each frame near its class's text feature, plus noise), a few
    Adam steps on training episodes bring both losses down and the episode accuracy well above
    chance. On stored features the video-text loss can only learn its scale s (the frames are
    fixed); that is what lets it fall here."""
    torch.manual_seed(0)
    classes, dim = 8, 16
    names = tuple(f"class {c}" for c in range(classes))
    model.set_class_texts({name: name for name in names})
    # distinct class texts (the stand-in's text tower maps "class 0".."class 7" close together)
    model._text_cache[names] = F.normalize(torch.randn(classes, dim), dim=-1)
    directions = model.text_features(names)  # [C, D], unit

    def videos(class_ids, count):  # [count * len(class_ids), T, D], class order repeated
        means = directions[class_ids].repeat(count, 1)[:, None]  # [V, 1, D]
        return means + 0.3 * torch.randn(len(means), 8, dim)

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    first = last = None
    for _ in range(80):
        class_ids = torch.randperm(classes)[:5]
        labels = torch.arange(5)
        losses = model(
            videos(class_ids, 1),
            labels,
            videos(class_ids, 3),
            labels.repeat(3),
            mode="loss",
            features=True,
            class_ids=class_ids,
            split_classes=names,
        )
        total = losses["loss_cls"] + losses["loss_text"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        last = {k: float(v.detach()) for k, v in losses.items()}
        first = first or last
    assert last["loss_text"] < 0.5 * first["loss_text"]
    assert last["loss_cls"] < first["loss_cls"]
    model.eval()
    class_ids = torch.tensor([0, 2, 4, 6, 7])
    with torch.no_grad():
        logits = model(
            videos(class_ids, 1),
            torch.arange(5),
            videos(class_ids, 4),
            features=True,
            class_ids=class_ids,
            split_classes=names,
        )
    accuracy = (logits.argmax(-1) == torch.arange(5).repeat(4)).float().mean()
    assert accuracy > 0.6  # chance is 0.2
