"""Transformer backbones from ``transformers``: CLIP's image encoder per frame and VideoMAE per
clip, under the contract of :class:`~fsarbench.methods.backbones.ClipBackbone`.

Weights come from a local folder in the Hugging Face format (``config.json`` plus
``model.safetensors`` or ``pytorch_model.bin``) or from a Hub id already in the local Hugging
Face cache; nothing is downloaded (``local_files_only``). The folder's ``config.json`` sets the
architecture, so a small random-init model saved the same way (``save_standin``) exercises the
same loading path in the tests. Without weights, a backbone is built at the architecture its
config fragment declares (``arch``), randomly initialised under the run's seed.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fsarbench.errors import FsarbenchError
from fsarbench.methods.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipBackbone,
    strip_common_prefix,
)
from fsarbench.registry import MODELS

# CLIP's normalisation (OpenAI's preprocessing), on the 0-255 scale the harness feeds
CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_pretrained(source: str, what: str) -> Path:
    """A local folder in the Hugging Face format, or a Hub id found in the local cache."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FsarbenchError(
                f"{what} weights folder {path} has no config.json",
                "give the folder that `save_pretrained` or `huggingface-cli download` wrote",
            )
        if not any((path / name).is_file() for name in WEIGHT_FILES):
            raise FsarbenchError(
                f"{what} weights folder {path} has none of {', '.join(WEIGHT_FILES)}",
                "give the folder that `save_pretrained` or `huggingface-cli download` wrote",
            )
        return path
    if path.exists() or "/" not in source or source.startswith((".", "/", "~")):
        raise FsarbenchError(
            f"{what} weights: {source} is not a folder",
            "give a folder with config.json and model.safetensors (see README, Backbones)",
        )
    from huggingface_hub import snapshot_download

    try:  # a Hub id: only what is already in the local cache, never a download
        return Path(snapshot_download(source, local_files_only=True))
    except Exception:
        raise FsarbenchError(
            f"{what} weights: {source} is not in the local Hugging Face cache",
            f"on a machine with internet run `huggingface-cli download {source} --local-dir "
            "DIR`, copy DIR here and pass --weights DIR",
        ) from None


def read_hf_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _load(model_class, folder: Path, what: str):
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused text tower of a full CLIP checkpoint is normal
    hf_logging.disable_progress_bar()  # one bar per load says nothing for a local folder
    try:
        model, info = model_class.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True
        )
    except Exception as error:
        raise FsarbenchError(
            f"{what} weights in {folder} cannot be loaded ({type(error).__name__}: {error})",
            "give a folder saved from the same kind of model (see README, Backbones)",
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    problems = {
        "missing": sorted(map(str, info.get("missing_keys", []))),
        "wrong shape": sorted(map(str, info.get("mismatched_keys", []))),
    }
    if any(problems.values()):
        shown = "; ".join(
            f"{len(v)} {k}: {', '.join(map(str, v[:4]))}" for k, v in problems.items() if v
        )
        raise FsarbenchError(
            f"{what} weights in {folder} do not fit {model_class.__name__} ({shown})",
            "give a folder saved from the same kind of model (see README, Backbones)",
        )
    return model


def build_hf_model(model_class, config_class, pretrained: str | None, arch, what: str):
    """``(folder, model)``: loaded from a weights folder (its config.json sets the
    architecture), else random-init at ``arch``; in train mode either way (``from_pretrained``
    leaves eval mode, and the harness sets modes itself)."""
    folder = resolve_pretrained(pretrained, what) if pretrained else None
    if folder is not None:
        model = _load(model_class, folder, what)
    else:
        model = model_class(config_class(**(arch or {})))
    return folder, model.train()


@functools.lru_cache(maxsize=2)
def clip_text_tower(folder: Path):
    """``(tokenizer, frozen text model)`` of a CLIP folder, loaded once per process: every run
    of a suite builds its own backbone, and the text tower never changes."""
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:
        raise FsarbenchError(
            f"CLIP folder {folder} has no usable tokenizer ({error})",
            "use a folder with vocab.json and merges.txt, as `huggingface-cli "
            "download openai/clip-vit-base-patch16` writes it",
        ) from None
    text_model = _load(CLIPTextModelWithProjection, folder, "CLIP text")
    return tokenizer, text_model.requires_grad_(False).eval()


# --- CLIP -----------------------------------------------------------------------------------


@MODELS.register_module()
class CLIPFrameBackbone(ClipBackbone):
    """CLIP's image encoder (``CLIPVisionModelWithProjection``) on every frame.

    Pooled: the projected class token (512-d for ViT-B/16), the feature CLIP-FSAR and the
    CLIP-as-backbone papers use. Maps: the patch tokens after ``post_layernorm`` (768-d,
    14x14 at 224 pixels). Frames of another size than the model's get
    interpolated position embeddings (``interpolate_pos_encoding``).

    ``encode_text(prompts)`` embeds text with the same checkpoint's text tower (frozen, loaded
    on first use, not part of this module's weights): CLIP-FSAR's class-name prompts.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        arch: dict | None = None,
        mean=CLIP_MEAN,
        std=CLIP_STD,
    ) -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        self.folder, self.clip = build_hf_model(
            CLIPVisionModelWithProjection, CLIPVisionConfig, pretrained, arch, "CLIP"
        )
        config = self.clip.config
        self.image_size, self.patch_size = config.image_size, config.patch_size
        self._channels = {"pooled": config.projection_dim, "maps": config.hidden_size}
        self.set_normalisation(mean, std)

    def channels(self, kind: str) -> int:
        self.check_kind(kind)
        return self._channels[kind]

    def forward(self, pixels: torch.Tensor, kind: str = "pooled") -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> pooled ``[B, T, 512]`` or maps ``[B, T, 768, H/16, W/16]``."""
        self.check_kind(kind)
        batch, frames, _, height, width = pixels.shape
        vision = self.clip.vision_model
        out = vision(
            pixel_values=pixels.flatten(0, 1),
            interpolate_pos_encoding=(height, width) != (self.image_size, self.image_size),
        )
        if kind == "pooled":
            pooled = self.clip.visual_projection(out.pooler_output)  # [B*T, 512]
            return pooled.unflatten(0, (batch, frames))
        tokens = vision.post_layernorm(out.last_hidden_state[:, 1:])  # [B*T, h*w, 768]
        grid = (height // self.patch_size, width // self.patch_size)
        maps = tokens.transpose(1, 2).unflatten(2, grid)  # [B*T, 768, h, w]
        return maps.unflatten(0, (batch, frames))

    @staticmethod
    def adapt_state_dict(state: dict) -> tuple[dict, list[str]]:
        """A CLIP checkpoint file (``CLIPModel``'s or ``CLIPVisionModelWithProjection``'s
        ``model.safetensors``) -> this module's keys; the text tower is left out."""
        state = strip_common_prefix(state, ("module.",))
        kept = ("vision_model.", "visual_projection.")
        dropped = sorted(k for k in state if not k.startswith(kept) and not k.startswith("clip."))
        adapted = {
            (k if k.startswith("clip.") else "clip." + k): v
            for k, v in state.items()
            if k not in dropped
        }
        return adapted, dropped

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> projected text features ``[len(prompts), projection_dim]`` from the
        checkpoint's frozen text tower, as it gives them (not normalised: a head that needs unit
        vectors normalises them; CLIP-FSAR's released code uses them as they are)."""
        if self.folder is None:
            raise FsarbenchError(
                "this CLIP backbone has no weights folder, so no text tower or tokenizer",
                "pass --weights FOLDER with a whole CLIP model (config.json, model.safetensors, "
                "tokenizer files); see README, Backbones",
            )
        tokenizer, text_model = clip_text_tower(self.folder)
        text_model.to(self.mean.device)
        tokens = tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=text_model.config.max_position_embeddings,
            return_tensors="pt",
        )
        tokens = {name: value.to(self.mean.device) for name, value in tokens.items()}
        features = text_model(**tokens).text_embeds  # [P, projection_dim]
        return features.float()


# --- VideoMAE -------------------------------------------------------------------------------


@MODELS.register_module()
class VideoMAEBackbone(ClipBackbone):
    """VideoMAE ViT (``VideoMAEModel``) on whole clips.

    Tubelets of 2 frames: T frames give T/2 time steps. The model's fixed sinusoidal position
    table, laid out as (steps, rows, columns), is interpolated (trilinear) when the clip has
    another number of frames or size than the model was built for: 8 frames on a 16-frame
    model give 4 steps. Maps: the last layer's tokens ``[T/2, 768, 14, 14]`` (after the final
    LayerNorm when the model has one). Pooled: the spatial mean per step, then ``fc_norm`` when
    the checkpoint has one (VideoMAE's fine-tuned classifiers do).

    Deviation from VideoMAE's own classifier: it applies ``fc_norm`` once, to the mean of all
    tokens; here it is applied to each step's mean, so that alignment heads get per-step
    features. A head that averages over steps (ProtoNet) therefore sees the mean of normalised
    steps, not the normalised mean.
    """

    kinds = ("pooled", "maps")

    def __init__(
        self,
        pretrained: str | None = None,
        arch: dict | None = None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ) -> None:
        super().__init__()
        from transformers import VideoMAEConfig, VideoMAEModel

        self.folder, self.videomae = build_hf_model(
            VideoMAEModel, VideoMAEConfig, pretrained, arch, "VideoMAE"
        )
        config = self.videomae.config
        self.hidden = config.hidden_size
        self.tubelet, self.patch_size = config.tubelet_size, config.patch_size
        self.native_grid = (
            config.num_frames // config.tubelet_size,
            config.image_size // config.patch_size,
            config.image_size // config.patch_size,
        )
        # fc_norm lives in VideoMAEForVideoClassification, not in VideoMAEModel: read it from the
        # checkpoint when it is there, else pooled features stay unnormalised (identity).
        fc_norm = self._checkpoint_fc_norm()
        self.fc_norm = None
        if fc_norm is not None:
            self.fc_norm = nn.LayerNorm(self.hidden)
            self.fc_norm.load_state_dict(fc_norm)
        self.set_normalisation(mean, std)

    def _checkpoint_fc_norm(self) -> dict | None:
        """``fc_norm``'s weight and bias from the weights folder, if its checkpoint has them
        (safetensors are read lazily: only these two tensors)."""
        if self.folder is None or not read_hf_config(self.folder).get("use_mean_pooling", True):
            return None
        keys = {"fc_norm.weight": "weight", "fc_norm.bias": "bias"}
        safetensors_path = self.folder / "model.safetensors"
        if safetensors_path.is_file():
            from safetensors import safe_open

            with safe_open(str(safetensors_path), framework="pt") as checkpoint:
                if not set(keys) <= set(checkpoint.keys()):
                    return None
                return {name: checkpoint.get_tensor(key) for key, name in keys.items()}
        state = torch.load(self.folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        if not set(keys) <= set(state):
            return None
        return {name: state[key] for key, name in keys.items()}

    def channels(self, kind: str) -> int:
        self.check_kind(kind)
        return self.hidden

    def time_steps(self, frames: int) -> int:
        return frames // self.tubelet

    def position_table(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """The sinusoidal table ``[1, steps*rows*cols, D]`` for a token grid, interpolated from
        the model's own grid when they differ (known-answer test VM-1)."""
        table = self.videomae.embeddings.position_embeddings  # [1, N0, D], fixed
        if tuple(grid) == self.native_grid:
            return table
        native = table.reshape(1, *self.native_grid, self.hidden).permute(0, 4, 1, 2, 3)
        resized = F.interpolate(native, size=grid, mode="trilinear", align_corners=True)
        return resized.permute(0, 2, 3, 4, 1).reshape(1, -1, self.hidden)  # [1, N, D]

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> last-layer tokens ``[B, T/2, h, w, D]``."""
        frames = pixels.shape[1]
        if frames % self.tubelet:
            raise ValueError(
                f"VideoMAE takes frames in tubelets of {self.tubelet}: {frames} frames do not "
                "divide; use an even num_frames"
            )
        model = self.videomae
        projection = model.embeddings.patch_embeddings.projection  # Conv3d, tubelet x patch
        embedded = projection(pixels.transpose(1, 2))  # [B, D, T/2, h, w]
        grid = tuple(embedded.shape[2:])
        embedded = embedded.flatten(2).transpose(1, 2)  # [B, N, D]
        embedded = embedded + self.position_table(grid).to(embedded)
        hidden = model.encoder(embedded).last_hidden_state  # [B, N, D]
        if model.layernorm is not None:
            hidden = model.layernorm(hidden)
        return hidden.unflatten(1, grid)  # [B, T/2, h, w, D]

    def forward(self, pixels: torch.Tensor, kind: str = "pooled") -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> pooled ``[B, T/2, D]`` or maps ``[B, T/2, D, h, w]``."""
        self.check_kind(kind)
        tokens = self.tokens(pixels)  # [B, T/2, h, w, D]
        if kind == "maps":
            return tokens.permute(0, 1, 4, 2, 3)
        pooled = tokens.mean(dim=(2, 3))  # [B, T/2, D]
        return self.fc_norm(pooled) if self.fc_norm is not None else pooled

    @staticmethod
    def adapt_state_dict(state: dict) -> tuple[dict, list[str]]:
        """A VideoMAE checkpoint file (``VideoMAEModel``, ``VideoMAEForVideoClassification`` or
        ``VideoMAEForPreTraining``) -> this module's keys; classifier and decoder are left out."""
        state = strip_common_prefix(state, ("module.",))
        model_keys = ("embeddings.", "encoder.", "layernorm.")
        adapted, dropped = {}, []
        for key, value in state.items():
            name = key.removeprefix("videomae.")
            if name.startswith(model_keys):
                adapted["videomae." + name] = value
            elif name.startswith(("videomae.", "fc_norm.")):
                adapted[name] = value
            else:
                dropped.append(key)
        return adapted, sorted(dropped)


# --- stand-ins ------------------------------------------------------------------------------

TINY_CLIP = dict(
    vision_config=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=56,
        patch_size=8,
        projection_dim=16,
    ),
    text_config=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,  # as CLIP's: character tokens of a synth name fit
        projection_dim=16,
    ),
    projection_dim=16,
)
TINY_VIDEOMAE = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=56,
    patch_size=8,
    num_frames=8,
    tubelet_size=2,
)


def _byte_symbols() -> list[str]:
    """The 256 printable symbols byte-level BPE uses for the bytes 0..255 (GPT-2's scheme, as
    in CLIP's vocab.json): printable Latin-1 bytes stand for themselves, the rest are shifted
    past 255."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    symbols, shift = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + shift)
            shift += 1
    return [symbols[byte] for byte in range(256)]


def _write_clip_tokenizer(folder: Path) -> None:
    """A byte-level BPE vocabulary with no merges, in CLIP's file format (vocab.json,
    merges.txt): every text still tokenises, character by character, which is all a
    random-init stand-in needs."""
    symbols = _byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def save_standin(kind: str, folder: Path, seed: int = 0, fine_tuned_labels: int = 0) -> Path:
    """A small random-init model saved as the real checkpoints are (``save_pretrained``):
    ``clip`` (a whole CLIPModel with a tokenizer, as ``openai/clip-vit-base-patch16`` is laid
    out) or ``videomae`` (``VideoMAEForVideoClassification`` with ``fine_tuned_labels``
    classes, like MCG-NJU's fine-tuned checkpoints, or ``VideoMAEModel`` with 0)."""
    from transformers import (
        CLIPConfig,
        CLIPModel,
        VideoMAEConfig,
        VideoMAEForVideoClassification,
        VideoMAEModel,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if kind == "clip":
        config = CLIPConfig(**TINY_CLIP)
        config.text_config.vocab_size = 2 * 256 + 2
        config.text_config.bos_token_id, config.text_config.eos_token_id = 512, 513
        config.text_config.pad_token_id = 513
        CLIPModel(config).save_pretrained(str(folder))
        _write_clip_tokenizer(folder)
    elif kind == "videomae":
        config = VideoMAEConfig(**TINY_VIDEOMAE, num_labels=max(fine_tuned_labels, 1))
        if fine_tuned_labels:
            VideoMAEForVideoClassification(config).save_pretrained(str(folder))
        else:
            VideoMAEModel(config).save_pretrained(str(folder))
    else:
        raise ValueError(f"unknown stand-in kind {kind!r}: use clip or videomae")
    return folder
