"""Run directories: config, metrics (JSONL + TensorBoard), checkpoints, plots, summary.

runs/<recipe>/<YYYYmmdd-HHMMSS>-<seed>/
    config.json      {"recipe", "profile", "config", "code"}: "code" is `code_version()` when the run was created
    data.json        a user's data, when the recipe was given some (`DATA_FIELDS`): for each such config field, the
                     file or folder (absolute path), its SHA-256, size and the column choices; see `record_data`
    metrics.jsonl    one object per logged step: {"step", "time_s", "train/loss": ...}
    tb/              TensorBoard event files (one subfolder per variant)
    checkpoints/     last.pt, best.pt
    plots/*.png
    variants/<name>/ a sub-run per compared variant: metrics.jsonl, checkpoints/, result.json
    summary.json     written only when the run completed: metrics, targets met or not, wall time, versions, and
                     the code it started on (commit, dirty, src_sha256, copied from config.json)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from torch_cookbook.engine import loop
from torch_cookbook.engine.checkpoint import Checkpointer, load_checkpoint
from torch_cookbook.engine.config import Target, config_hash, to_dict
from torch_cookbook.engine.distributed import barrier, is_main_process
from torch_cookbook.errors import CheckpointError, DataError

DATA_FILE = "data.json"


class Run:
    """One run (or one variant of a run). Every write is a no-op on ranks other than 0."""

    def __init__(self, directory: Path, recipe: str, cfg: Any, profile: str, device: torch.device,
                 parent: Run | None = None, name: str = "") -> None:
        self.dir = Path(directory)
        self.recipe = recipe
        self.cfg = cfg
        self.profile = profile
        self.device = device
        self.parent = parent
        self.name = name
        self.root: Run = parent.root if parent else self
        self.is_main = is_main_process()
        self._t0 = time.perf_counter()
        self._elapsed_before = self._last_logged_time()
        self._tb: Any = None
        self._tb_purge_step: int | None = None
        self._last_log: tuple[int, float] | None = None  # (step, time) of this process's previous log
        if parent is None:
            loop.reset_data_counters()  # data time and samples are this run's, from this process on

    # ---- creation -------------------------------------------------------------------------
    @classmethod
    def create(cls, recipe: str, cfg: Any, profile: str, device: torch.device, root: Path = Path("runs"),
               data: dict[str, Any] | None = None) -> Run:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(root) / recipe / f"{stamp}-{cfg.seed}"
        directory, n = base, 1
        while directory.exists():
            directory, n = base.with_name(f"{base.name}.{n}"), n + 1
        if is_main_process():
            for sub in ("checkpoints", "plots", "tb"):
                (directory / sub).mkdir(parents=True, exist_ok=True)
            config = {"recipe": recipe, "profile": profile, "config": to_dict(cfg), "code": code_version()}
            (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            if data:
                (directory / DATA_FILE).write_text(json.dumps(data, indent=2) + "\n")
        return cls(directory, recipe, cfg, profile, device)

    # ---- metrics ---------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Wall seconds spent on this run, summed over every attempt (resumes included)."""
        return self._elapsed_before + time.perf_counter() - self._t0

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Append one metrics record and mirror it to TensorBoard. Keys are namespaced: `train/loss`."""
        if not self.is_main:
            return
        values = {k: _to_number(v) for k, v in metrics.items()}
        now = time.perf_counter()
        if self._last_log is not None and step > self._last_log[0] and "perf/steps_per_s" not in values:
            # Wall-clock throughput since the previous record, evaluation included: what the user waits for.
            # Only within one process, so a resume never divides by the time the run was down.
            values["perf/steps_per_s"] = round((step - self._last_log[0]) / max(now - self._last_log[1], 1e-9), 3)
        self._last_log = (int(step), now)
        record = {"step": int(step), "time_s": round(self.elapsed, 3), **values}
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        writer = self.tensorboard()
        for key, value in values.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(key, value, step)

    def history(self, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs logged under `key`, in order; survives resume."""
        path = self.dir / "metrics.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if key in record:
                out.append((record["step"], record[key]))
        return out

    def tensorboard(self) -> Any:
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            logdir = self.root.dir / "tb" / self.name if self.parent else self.dir / "tb"
            self._tb = SummaryWriter(str(logdir), purge_step=self._tb_purge_step)
        return self._tb

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    # ---- files -----------------------------------------------------------------------------
    def plot_path(self, name: str) -> Path:
        """Where to save a plot: plots always live in the top-level run's plots/ folder."""
        folder = self.root.dir / "plots"
        if self.is_main:
            folder.mkdir(parents=True, exist_ok=True)
        return folder / (name if name.endswith(".png") else name + ".png")

    def checkpointer(self, every: int = 0, **objects: Any) -> Checkpointer:
        """A checkpointer for this run's checkpoints/; restoring also rewinds metrics past the saved step."""
        every = self.cfg.checkpoint_every or every
        run = self

        class _RunCheckpointer(Checkpointer):
            def restore(self) -> int:
                step = super().restore()
                if step:
                    run._rewind_metrics(step)
                return step

        return _RunCheckpointer(self.dir / "checkpoints", self.recipe, self.config_hash(), every,
                                enabled=self.is_main, **objects)

    def _rewind_metrics(self, step: int) -> None:
        """Drop records logged after the checkpoint we resume from: they will be logged again."""
        self._tb_purge_step = step + 1
        path = self.dir / "metrics.jsonl"
        if not self.is_main or not path.exists():
            return
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))

    def _last_logged_time(self) -> float:
        path = self.dir / "metrics.jsonl"
        if not path.exists():
            return 0.0
        lines = path.read_text().splitlines()
        return float(json.loads(lines[-1]).get("time_s", 0.0)) if lines else 0.0

    def config_hash(self) -> str:
        """The hash its checkpoints carry: of the settings the run's config.json recorded, so that a setting a recipe
        gained later, at its default, does not make an older run's checkpoints foreign to `eval` and `--resume`."""
        path = self.root.dir / "config.json"
        keys = json.loads(path.read_text())["config"].keys() if path.exists() else None
        return config_hash(self.cfg, keys)

    # ---- variants --------------------------------------------------------------------------
    def variant(self, name: str) -> Run:
        """A named sub-run (one arm of a comparison) with its own metrics and checkpoints."""
        sub = Run(self.dir / "variants" / name, self.recipe, self.cfg, self.profile, self.device,
                  parent=self, name=name)
        if self.is_main:
            (sub.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        return sub

    def checkpoint_path(self, which: str = "last") -> Path:
        """checkpoints/last.pt or checkpoints/best.pt of this run or variant."""
        if which not in ("last", "best"):
            raise ValueError(f"which={which!r}: expected 'last' or 'best'")
        return self.dir / "checkpoints" / f"{which}.pt"

    def load(self, model: torch.nn.Module | None = None, which: str = "last", name: str = "model") -> dict[str, Any]:
        """Load this run's (or variant's) last or best checkpoint, checked to belong to this recipe and
        config; copy its state `name` into `model` when given. Returns the checkpoint dict."""
        ckpt = load_checkpoint(self.checkpoint_path(which), self.recipe, self.config_hash())
        if model is not None:
            if name not in ckpt["state"]:
                raise CheckpointError(f"checkpoint {self.checkpoint_path(which)} has no state for {name!r}")
            model.load_state_dict(ckpt["state"][name])
        return ckpt

    @property
    def result(self) -> dict[str, Any] | None:
        """The finished variant's result, or None if it has not finished (so resume re-enters it)."""
        path = self.dir / "result.json"
        return json.loads(path.read_text()) if path.exists() else None

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Mark this variant finished with its result; returns the result for convenience."""
        if self.is_main:
            tmp = self.dir / "result.json.tmp"
            tmp.write_text(json.dumps(result, indent=2, default=_to_number) + "\n")
            os.replace(tmp, self.dir / "result.json")
        barrier()  # under torchrun the other ranks may read result.json next
        self.close()
        return result

    # ---- summary ---------------------------------------------------------------------------
    def write_summary(self, metrics: dict[str, float], targets: list[Target]) -> dict[str, Any]:
        metrics = {k: _to_number(v) for k, v in metrics.items()}
        summary = {
            "recipe": self.recipe,
            "profile": self.profile,
            "seed": self.cfg.seed,
            "metrics": metrics,
            "targets": [{"metric": t.metric, "op": t.op, "value": t.value, **_judged(t, self.cfg, metrics)}
                        for t in targets],
            "wall_time_s": round(self.elapsed, 2),
            "device": device_description(self.device),
            "torch": torch.__version__,
            **self._code_at_start(),
            "status": "complete",
        }
        now = code_version()["src_sha256"]
        if now != summary["src_sha256"]:  # the package's files changed while it ran: later imports saw other code
            summary["src_sha256_at_end"] = now
        if loop.SAMPLES_TAKEN:  # recipes whose batches come from engine.loop.take (this process's share only)
            summary["data_time_s"] = round(loop.DATA_TIME_S, 6)
            summary["train_samples"] = loop.SAMPLES_TAKEN
            summary["process_wall_s"] = round(time.perf_counter() - self._t0, 6)  # what they were counted over
        if self.is_main:
            self._plots_to_tensorboard()
            tmp = self.dir / "summary.json.tmp"
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
            os.replace(tmp, self.dir / "summary.json")
        return summary

    def _code_at_start(self) -> dict[str, Any]:
        """The code the run started on, as config.json recorded it (for a run made before it was recorded: now)."""
        try:
            recorded = json.loads((self.root.dir / "config.json").read_text()).get("code")
        except (OSError, ValueError, AttributeError):
            recorded = None
        return recorded or code_version()

    def _plots_to_tensorboard(self) -> None:
        """Every saved plot also as a TensorBoard image (tag `plots/NAME`), at the run's last logged step,
        so `tensorboard --logdir runs/` shows the pictures beside the scalars without each recipe asking."""
        import matplotlib.image

        plots = sorted((self.dir / "plots").glob("*.png"))
        if not plots:
            return
        path = self.dir / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        step = int(json.loads(lines[-1])["step"]) if lines else 0
        writer = self.tensorboard()
        for plot in plots:
            image = matplotlib.image.imread(plot)  # float grey, RGB or RGBA in [0, 1]
            if image.ndim == 2:
                writer.add_image(f"plots/{plot.stem}", image, step, dataformats="HW")
            else:
                writer.add_image(f"plots/{plot.stem}", image[..., :3], step, dataformats="HWC")
        self.close()


def _judged(target: Target, cfg: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    """A target's verdict in one run: met or not; not judged outside its settings (`for`); or left to bench."""
    if not target.applies(cfg):
        return {"met": None, "for": dict(target.when)}
    if target.across_seeds:
        return {"met": None, "across_seeds": True}
    return {"met": target.met(metrics)}


def open_run_dir(directory: Path) -> dict[str, Any]:
    """Read config.json of an existing run directory, with a one-line error if it is not one."""
    directory = Path(directory)
    path = directory / "config.json"
    if not directory.is_dir():
        raise CheckpointError(f"run directory {directory} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a run directory (no config.json)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(data, dict) or not {"recipe", "profile", "config"} <= data.keys():
        raise CheckpointError(f"{path} lacks recipe/profile/config; it was not written by torch-cookbook")
    return data


# ---- a user's data -----------------------------------------------------------------------------------------
def with_absolute_data(cfg: Any, fields: dict[str, tuple[str, ...]]) -> Any:
    """`cfg` with each user-data path (the config fields named in the recipe's `DATA_FIELDS`) made absolute, so
    the run's config.json finds the data from any working directory."""
    import dataclasses

    paths = {f: os.path.abspath(getattr(cfg, f)) for f in fields if getattr(cfg, f)}
    return dataclasses.replace(cfg, **paths) if paths else cfg


def record_data(cfg: Any, fields: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """What data.json holds: for each data field set in `cfg`, `data.userdata.fingerprint` of the file or folder and
    its column choices (the config fields named with it in `DATA_FIELDS`, e.g. {"data": ("text_column",)})."""
    from torch_cookbook.data.userdata import fingerprint

    for f in fields:
        if getattr(cfg, f) and not os.path.exists(getattr(cfg, f)):  # False, not OSError, on a name too long
            raise DataError(f"--{f} {getattr(cfg, f)}: no such file or folder")
    return {f: {**fingerprint(getattr(cfg, f)), "columns": {c: getattr(cfg, c) for c in columns}}
            for f, columns in fields.items() if getattr(cfg, f)}


def check_data(directory: Path) -> None:
    """Refuse, in one line, a run whose data (recorded in its data.json) has changed or gone since it was made."""
    from torch_cookbook.data.userdata import fingerprint

    path = Path(directory) / DATA_FILE
    if not path.is_file():
        return
    for field, recorded in json.loads(path.read_text()).items():
        try:
            now = fingerprint(recorded["path"])["sha256"]
        except DataError as e:
            raise DataError(f"--{field} {recorded['path']}: {str(e).split(': ', 1)[-1]}; the run {directory} was"
                            f" trained on it (see {path})") from None
        if now != recorded["sha256"]:
            raise DataError(f"--{field} {recorded['path']} changed since the run {directory} was made (SHA-256"
                            f" {now[:12]}..., recorded {recorded['sha256'][:12]}... in {path}); restore it or start a"
                            f" new run")


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# ---- the code that runs ------------------------------------------------------------------------------------
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/torch_cookbook in a checkout, or an installed copy


def code_version() -> dict[str, Any]:
    """Which code is running: `commit` (short hash; "unknown" outside a git checkout of this project), `dirty` (the
    checkout differs from that commit, see `dirty_paths`; None outside a checkout) and `src_sha256`, a hash of the
    package's files as they are on disk, so that a dirty tree, or an installed copy, is identified too."""
    tracked = _git("ls-files", "-z", "--cached")
    if tracked is None or "__init__.py" not in tracked:  # no git, or a git repository that is not this project's
        files = [str(p.relative_to(PACKAGE_DIR)) for p in PACKAGE_DIR.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
        return {"commit": "unknown", "dirty": None, "src_sha256": _files_sha256(files)}
    untracked = _git("ls-files", "-z", "--others", "--exclude-standard") or []
    commit = _git("rev-parse", "--short", "HEAD")
    return {"commit": commit[0] if commit else "unknown", "dirty": bool(dirty_paths()),
            "src_sha256": _files_sha256(tracked + untracked)}


def dirty_paths() -> list[str]:
    """Where the checkout differs from its commit: tracked files changed, added or deleted anywhere in it, and new
    files inside the package (they are imported: a new recipe module registers itself). [] outside a checkout."""
    status = _git("status", "-z", "--porcelain=v1", "--untracked-files=no")
    if status is None:
        return []
    changed, skip = [], False
    for entry in status:
        if not skip:
            changed.append(entry[3:])
        skip = entry[:1] in ("R", "C") and not skip  # a rename's entry is followed by its old path
    prefix = _git("rev-parse", "--show-prefix") or [""]
    new = [prefix[0] + p for p in _git("ls-files", "-z", "--others", "--exclude-standard") or []]
    return changed + new


def _files_sha256(relative_paths: list[str]) -> str:
    """SHA-256 over (path, SHA-256 of content) of the package's files, in path order; deleted files are left out."""
    digest = hashlib.sha256()
    for rel in sorted(set(relative_paths)):
        path = PACKAGE_DIR / rel
        if path.is_file():
            digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _git(*args: str) -> list[str] | None:
    """The output of `git ARGS` run in the package folder, split into entries (on NUL with -z, else on lines);
    None where git is missing or the folder is not in a repository."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=PACKAGE_DIR)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [e for e in out.stdout.split("\0" if "-z" in args else "\n") if e]


def git_commit() -> str:
    """The short commit of the checkout ("unknown" outside one)."""
    return code_version()["commit"]


def _to_number(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return v.item()
    return v
