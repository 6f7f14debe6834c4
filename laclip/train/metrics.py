"""Training metrics: JSON lines in pods (LACLIP_LOG_FORMAT=json), readable lines locally,
TensorBoard event files under checkpoints/<run>/tensorboard/ (uploaded at checkpoints for gs://)."""

from __future__ import annotations

import json
import os
import tempfile

from laclip import layout
from laclip.storage.base import Store

JSON = os.environ.get("LACLIP_LOG_FORMAT") == "json"


class MetricsLog:
    """Rank 0 only: one record per `log_every` steps to stdout and TensorBoard."""

    def __init__(self, store: Store, run: str, total_steps: int, tensorboard: bool):
        self.store, self.run, self.total = store, run, total_steps
        self.console = None
        if not JSON:
            from rich.console import Console

            # one line per record, even piped; no markup: fields hold store paths and run ids as typed
            self.console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
        self.writer, self.tb_dir, self.remote = None, None, False
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            local = store.local_path(layout.tensorboard(run))
            self.remote = local is None
            self.tb_dir = str(local) if local is not None else tempfile.mkdtemp(prefix="laclip-tb-")
            self.writer = SummaryWriter(self.tb_dir)

    def write(self, step: int, metrics: dict) -> None:
        record = {"event": "train", "run": self.run, "step": step, "total_steps": self.total, **metrics}
        if JSON:
            print(json.dumps(record), flush=True)
        else:
            pct = 100 * step / self.total
            from rich.text import Text

            self.console.print(Text.assemble(
                (f"step {step}/{self.total}", "bold"), f" ({pct:4.1f}%)  loss {metrics['loss']:.4f}  "
                f"lr {metrics['lr']:.2e}  scale {metrics['logit_scale']:.1f}  "
                f"{metrics['samples_per_s']:.0f} samples/s  data wait {100 * metrics['data_wait']:.0f}%"))
        if self.writer:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(f"train/{k}", v, step)

    def event(self, name: str, **fields) -> None:
        if JSON:
            print(json.dumps({"event": name, "run": self.run, **fields}), flush=True)
        else:
            from rich.text import Text

            self.console.print(Text.assemble((name, "cyan"), " ", "  ".join(f"{k}={v}" for k, v in fields.items())))

    def flush(self) -> None:
        """Push TensorBoard files to the store when it is not a local folder."""
        if not self.writer:
            return
        self.writer.flush()
        if self.remote:
            for name in os.listdir(self.tb_dir):
                self.store.upload_file(os.path.join(self.tb_dir, name),
                                       layout.tensorboard(self.run, name))

    def close(self) -> None:
        self.flush()
        if self.writer:
            self.writer.close()
