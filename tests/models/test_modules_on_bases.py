"""Every LightningModule on either kind of base: the project's GPT and tiny random Hugging Face Llama, Qwen2 and
GPT-2 models (tests/support/hf_models.py; nothing is downloaded), trained for a few real Lightning steps on CPU.

They prove: every trainable parameter moves and nothing frozen does (reference, an untied LM head that a head
module never reads); heads are sized from the base's hidden_size; with LoRA only the adapters and the heads
move, and export() gives the adapter model's logits from plain layers that load without peft; PPO and GRPO run an
iteration on an HF policy; load_from_checkpoint and type(module)(**module.hparams) rebuild the same module;
bf16-mixed trains with float32 weights and finite float32 losses; the reward is read at the last real token on
either padding side; distillation runs between any two bases of one vocabulary.

    .venv/bin/python -m pytest tests/models/test_modules_on_bases.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from alignops.config import LoraConfig, OptimConfig
from models.base import HFCausalLM, backbone_spec, build_backbone
from models.distill import DistillModel
from models.dpo import DPOModel
from models.gpt import GPT, GPTConfig
from models.lm import ClassifierModule, LMModule
from models.lora import ADAPTER_PREFIX, has_lora
from models.ppo.module import PPOConfig, PPOModule
from models.reward import RewardModel
from models.tagger import TokenTagger
from tests.support.hf_models import SHAPES, VOCAB, tiny_model

BASES = ("gpt", *SHAPES)  # the project's GPT, then Llama, Qwen2, GPT-2
KINDS = ("lm", "classifier", "reward", "dpo", "tagger")
HEADS = ("head.", "value_head.")  # parameters of the modules' own heads, outside the base
PAD, EOS = 0, 1
B, T, STEPS = 4, 12, 3
OPTIM = OptimConfig(lr=1e-2, warmup_steps=0, weight_decay=0.0)  # no decay: only a gradient can move a parameter


def base(shape: str, seed: int = 0):
    """A tiny base of the given shape, random weights (seeded)."""
    if shape == "gpt":
        torch.manual_seed(seed)
        return GPT(GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=2, n_embd=32))
    return HFCausalLM(tiny_model(shape, seed))


def ids_and_mask(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) random ids (never PAD or EOS), right-padded: row i has T - i real tokens."""
    ids = torch.randint(2, VOCAB, (B, T), generator=g)
    mask = (torch.arange(T)[None, :] < (T - torch.arange(B))[:, None]).long()
    return ids.masked_fill(mask == 0, PAD), mask


def batch(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """One batch in the layout alignops.data's loaders give each kind of module."""
    g = torch.Generator().manual_seed(seed)
    ids, mask = ids_and_mask(g)
    labels = ids.masked_fill(mask == 0, -100)
    if kind == "lm":
        labels[:, :3] = -100  # a prompt: not learned
        return dict(input_ids=ids, attention_mask=mask, labels=labels)
    if kind == "classifier":
        return dict(input_ids=ids, attention_mask=mask, label=torch.arange(B) % 2)
    if kind == "tagger":
        tags = torch.randint(0, 3, (B, T), generator=g).masked_fill(mask == 0, -100)
        return dict(input_ids=ids, attention_mask=mask, labels=tags)
    rejected, rejected_mask = ids_and_mask(g)
    labels[:, :3] = -100
    return dict(
        chosen_ids=ids, chosen_mask=mask, chosen_labels=labels, rejected_ids=rejected, rejected_mask=rejected_mask,
        rejected_labels=rejected.masked_fill(rejected_mask == 0, -100).index_fill(1, torch.arange(3), -100),
        weight=torch.ones(B),
    )  # fmt: skip


def loader(kind: str, n: int = STEPS) -> DataLoader:
    batches = [batch("dpo" if kind == "reward" else kind, seed) for seed in range(n)]
    return DataLoader(batches, batch_size=None)  # each item already a batch


def module(kind: str, shape: str, **hparams):
    """A module of `kind` starting from a fresh tiny base of `shape`."""
    hparams = {"optim": OPTIM, "max_steps": STEPS, **hparams}
    model = base(shape)
    if kind == "lm":
        return LMModule.from_base(model, **hparams)
    if kind == "classifier":
        return ClassifierModule.from_base(model, labels=["no", "yes"], **hparams)
    if kind == "reward":
        return RewardModel.from_base(model, **hparams)
    if kind == "dpo":
        return DPOModel.from_base(model, **hparams)
    return TokenTagger.from_base(model, labels=["O", "B", "I"], **hparams)


def outputs(m, kind: str) -> torch.Tensor:
    """The module's prediction on a fixed batch, in eval mode: logits, class logits, rewards or log-probs."""
    m.eval()
    with torch.no_grad():
        if kind == "dpo":
            return torch.stack(m.pair_logps(batch("dpo", seed=9)))
        b = batch("dpo" if kind == "reward" else kind, seed=9)
        if kind == "reward":
            return torch.cat(m.pair_rewards(b))
        return m(b["input_ids"], b["attention_mask"])


def fit(m, kind: str, trainer_factory, **kwargs) -> L.Trainer:
    trainer = trainer_factory(max_steps=STEPS, **kwargs)
    trainer.fit(m, loader(kind))
    return trainer


def snapshot(m) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in m.named_parameters()}


def moved(m, before: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}


@pytest.mark.parametrize("shape", BASES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_trainable_parameter_moves(kind: str, shape: str, cpu_trainer) -> None:
    m = module(kind, shape)
    head = getattr(m, "head", None)
    if head is not None:  # heads read the base's hidden states: sized from its hidden_size
        assert head.linear.in_features == m.model.hidden_size
    before = snapshot(m)
    fit(m, kind, cpu_trainer)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable - moved(m, before) == set(), "trainable parameters that did not move"
    assert moved(m, before) - trainable == set(), "frozen parameters that moved"
    if kind == "dpo":
        assert not any(n.startswith("reference.") for n in trainable)
    if kind in ("classifier", "reward", "tagger") and shape in ("llama", "qwen2"):
        # their LM head is its own matrix (untied) that no loss reads: frozen, not left idle in the optimizer
        assert not m.model.lm_head.weight.requires_grad


@pytest.mark.parametrize("shape", SHAPES)
def test_reward_is_read_at_the_last_real_token_whatever_the_padding(shape: str) -> None:
    rm = RewardModel.from_base(base(shape)).eval()
    texts = [torch.randint(2, VOCAB, (n,), generator=torch.Generator().manual_seed(n)) for n in (5, 2, 7)]
    alone = torch.cat([rm.score(t[None], torch.ones(1, len(t), dtype=torch.long)) for t in texts])
    for side in ("left", "right"):
        ids = torch.full((3, 7), PAD)
        mask = torch.zeros(3, 7, dtype=torch.long)
        for i, t in enumerate(texts):
            cols = slice(7 - len(t), 7) if side == "left" else slice(0, len(t))
            ids[i, cols], mask[i, cols] = t, 1
        torch.testing.assert_close(rm.score(ids, mask), alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ("lm", "classifier", "reward", "dpo"))
def test_lora_moves_adapters_and_heads_only_and_export_merges(kind: str, shape: str, cpu_trainer) -> None:
    m = module(kind, shape, lora=LoraConfig(r=2, alpha=4).model_dump())
    before = snapshot(m)
    fit(m, kind, cpu_trainer)
    expected = {n for n in before if ADAPTER_PREFIX in n and not n.startswith("reference.") or n.startswith(HEADS)}
    assert any(ADAPTER_PREFIX in n for n in expected)
    assert moved(m, before) == expected
    if kind == "dpo":
        assert not has_lora(m.reference)  # the reference is the plain SFT weights

    adapted = outputs(m, kind)
    exported = m.export()
    assert exported is not m.model and has_lora(m.model)  # a merged copy: the module keeps its adapters
    assert not has_lora(exported)
    assert not [type(x).__module__ for x in exported.modules() if type(x).__module__.startswith("peft")]
    m.model, adapters = exported.eval(), m.model  # the same module reading the merged backbone
    torch.testing.assert_close(outputs(m, kind), adapted, atol=1e-5, rtol=1e-4)
    m.model = adapters


def test_lora_settings_are_checked_and_saved_as_a_dict() -> None:
    m = LMModule.from_base(base("llama"), lora=LoraConfig(r=2, target_modules=["q_proj"]))
    assert m.hparams.lora == LoraConfig(r=2, target_modules=["q_proj"]).model_dump()  # plain, JSON-able
    with pytest.raises(ValueError, match="r"):
        LMModule.from_base(base("llama"), lora={"r": 0})
    with pytest.raises(ValueError, match="Layer names in this LlamaForCausalLM"):
        RewardModel.from_base(base("llama"), lora={"target_modules": ["c_attn"]})


# A fresh interpreter where `import peft` fails loads the exported folder and prints its logits.
_LOAD_WITHOUT_PEFT = """
import json, sys
sys.modules["peft"] = None
import torch
from models.base import HFCausalLM
with torch.no_grad():
    logits = HFCausalLM.from_folder(sys.argv[2]).eval()(torch.tensor(json.loads(sys.argv[1])))
print(json.dumps({"logits": logits.tolist(), "peft": any(n.startswith("peft.") for n in sys.modules)}))
"""


def test_exported_lora_model_loads_without_peft(cpu_trainer, tmp_path: Path) -> None:
    m = module("lm", "llama", lora=LoraConfig(r=2, alpha=4).model_dump())
    fit(m, "lm", cpu_trainer)
    ids = batch("lm", seed=5)["input_ids"]
    with torch.no_grad():
        expected = m.eval().model(ids)
    m.export().save(tmp_path / "exported")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_PEFT, json.dumps(ids.tolist()), str(tmp_path / "exported")],
        capture_output=True, text=True, cwd=root, timeout=300,
        env={"PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["peft"] is False
    torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("kind", "shape", "lora"),
    [(kind, shape, False) for kind in ("lm", "classifier", "reward", "dpo") for shape in ("gpt", "llama", "gpt2")]
    + [(kind, "qwen2", True) for kind in ("lm", "reward", "dpo")],
)
def test_checkpoint_round_trip(kind: str, shape: str, lora: bool, cpu_trainer, tmp_path: Path) -> None:
    m = module(kind, shape, dropout=0.0, lora=LoraConfig(r=2).model_dump() if lora else None)
    checkpoints = ModelCheckpoint(dirpath=tmp_path, filename="last", save_top_k=-1, every_n_train_steps=STEPS)
    fit(m, kind, cpu_trainer, enable_checkpointing=True, callbacks=[checkpoints])
    expected = outputs(m, kind)
    assert m.hparams.backbone == backbone_spec(build_backbone(m.hparams.backbone))  # JSON-able, rebuilds the same
    json.dumps(m.hparams.backbone)

    restored = type(m).load_from_checkpoint(tmp_path / "last.ckpt")
    torch.testing.assert_close(outputs(restored, kind), expected, atol=0, rtol=0)
    assert has_lora(restored.model) == lora

    rebuilt = type(m)(**m.hparams)  # what stages/training.trained() does under FSDP
    rebuilt.load_state_dict(m.state_dict())
    torch.testing.assert_close(outputs(rebuilt, kind), expected, atol=0, rtol=0)


@pytest.mark.parametrize("shape", ("llama", "gpt2"))
@pytest.mark.parametrize("kind", ("lm", "classifier", "reward", "dpo"))
def test_bf16_mixed_trains_with_float32_weights_and_losses(kind: str, shape: str, cpu_trainer) -> None:
    m = module(kind, shape, lora=LoraConfig(r=2).model_dump() if kind == "dpo" else None)
    losses = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, out, *args) -> None:
            losses.append(out["loss"])

    from transformers.pytorch_utils import Conv1D  # GPT-2's layers

    linear = next(x for x in m.model.modules() if isinstance(x, (torch.nn.Linear, Conv1D)))  # the first layer
    computed = []
    hook = linear.register_forward_hook(lambda mod, args, out: computed.append(out.dtype))
    before = snapshot(m)
    fit(m, kind, cpu_trainer, precision="bf16-mixed", callbacks=[Losses()])
    hook.remove()
    assert computed and set(computed) == {torch.bfloat16}  # the base really ran under bf16 autocast
    assert len(losses) == STEPS
    assert all(x.dtype == torch.float32 and torch.isfinite(x) for x in losses), losses
    assert all(p.dtype == torch.float32 for p in m.parameters())  # autocast computes in bf16, weights stay fp32
    assert moved(m, before) == {n for n, p in m.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("teacher", "student"), [("llama", "llama"), ("gpt", "qwen2")])
def test_distillation_between_any_bases(teacher: str, student: str, cpu_trainer) -> None:
    spec = backbone_spec(base(student))
    if student != "gpt":  # a shallower student of the same family
        config = spec["config"]
        config["num_hidden_layers"] = 1
        if config.get("layer_types"):  # Qwen2 lists each layer's attention kind
            config["layer_types"] = config["layer_types"][:1]
    m = DistillModel.from_teacher(base(teacher), spec, optim=OPTIM, max_steps=STEPS)
    assert m.model.vocab_size == m.teacher.vocab_size
    before = snapshot(m)
    fit(m, "lm", cpu_trainer)
    assert moved(m, before) == {n for n in before if n.startswith("model.")}  # the teacher stays as it was
    with torch.no_grad():
        ids = batch("lm", seed=9)["input_ids"]
        torch.testing.assert_close(m.teacher(ids), base(teacher).eval()(ids), atol=0, rtol=0)


# ---- PPO and GRPO on a Hugging Face policy ----------------------------------------------------------------------
def prompts(n: int) -> list[dict[str, torch.Tensor]]:
    """Left-padded prompt batches of 2-5 tokens, never PAD or EOS (the layout PPOModule reads)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        lengths = torch.randint(2, 6, (B,), generator=g)
        ids = torch.full((B, 5), PAD)
        mask = torch.zeros(B, 5, dtype=torch.long)
        for i, k in enumerate(lengths.tolist()):
            ids[i, 5 - k :], mask[i, 5 - k :] = torch.randint(2, VOCAB, (k,), generator=g), 1
        out.append(dict(input_ids=ids, attention_mask=mask))
    return out


def ppo(shape: str, method: str, lora: bool) -> PPOModule:
    reward = RewardModel.from_base(base(shape, seed=1)).eval()
    config = PPOConfig(method=method, group_size=2, rollout_batch_size=B, minibatch_size=4, ppo_epochs=2,
                       max_new_tokens=6, lr=1e-2)  # fmt: skip
    lora_config = LoraConfig(r=2).model_dump() if lora else None
    return PPOModule.from_base(base(shape), reward=reward, config=config, eos_id=EOS, pad_id=PAD, lora=lora_config)


@pytest.mark.parametrize(
    ("shape", "method", "lora", "precision"),
    [("llama", "ppo", False, "32-true"), ("gpt2", "ppo", False, "32-true"), ("qwen2", "grpo", False, "32-true"),
     ("llama", "ppo", True, "32-true"), ("qwen2", "ppo", False, "bf16-mixed")],
)  # fmt: skip
def test_ppo_iteration_on_a_hugging_face_policy(shape: str, method: str, lora: bool, precision: str, cpu_trainer):
    m = ppo(shape, method, lora)
    assert m.value_head.linear.in_features == m.model.hidden_size
    before = snapshot(m)
    trainer = cpu_trainer(max_steps=m.config.steps_per_iteration, log_every_n_steps=1, precision=precision)
    trainer.fit(m, DataLoader(prompts(1), batch_size=None))
    assert trainer.global_step == m.config.steps_per_iteration
    policy = {n for n in before if n.startswith("model.") and (ADAPTER_PREFIX in n or not lora)}
    critic = {n for n in before if n.startswith("value_head.")} if method == "ppo" else set()
    assert moved(m, before) == policy | critic  # reference and reward model frozen; GRPO reads no critic
    assert all(torch.isfinite(torch.tensor(float(v))) for v in trainer.callback_metrics.values())

    ids = prompts(1)[0]["input_ids"]
    with torch.no_grad():
        expected = m.model(ids)
        torch.testing.assert_close(m.policy_model().eval()(ids), expected, atol=1e-5, rtol=1e-4)
    assert not has_lora(m.policy_model())
    # a rebuilt module (same frozen inputs, same hparams) takes the trained state: the resume path
    assert (m.reference is None) == lora  # a LoRA policy's reference: the policy with its adapters off
    rebuilt = PPOModule.from_base(base(shape), reward=m.reward, config=m.config, eos_id=EOS, pad_id=PAD,
                                  lora=m.hparams.lora)  # fmt: skip
    rebuilt.load_state_dict(m.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.model(ids), expected, atol=0, rtol=0)
