#!/usr/bin/env python3
"""The PLE of a uie census config, trained in PyTorch (CPU) on the rows `uie-train export` wrote:
the PyTorch baseline of scripts/bench-train.sh (Protocol A).

Same data (the trainer's train/val/test rows, read from the export's safetensors), same initial
weights (the export's init.safetensors, i.e. what `uie-train train` starts from with that seed),
same model (docs/model.md §6: embeddings in input order + normalised dense, PLE levels with
ReLU experts and softmax gates, ReLU towers, one logit per task), same loss (Σ_k w_k · mean BCE),
same optimizer (Adam β 0.9/0.999, ε 1e-8, bias-corrected, dense updates of every tensor), same
batch size and epochs; validation after every epoch, the test AUC of the best epoch (mean
validation AUC). The shuffle is torch's own. Only the PLE backbone is implemented here (no
sequence, no UIE): the config must have neither.

Prints one JSON object (samples/s of the optimisation steps, the time per stage, test AUC,
peak RSS) as its last line.

usage: ple_torch.py --export DIR --config models/census-ple.toml --threads N [--epochs N]
"""

import argparse
import json
import resource
import struct
import sys
import time
import tomllib

import numpy as np
import torch

DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    """name -> numpy array (f32 / i64 only), without the safetensors package."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        dtype = DTYPES[spec["dtype"]]
        out[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(spec["shape"]).copy()
    return out


def auc(scores, labels):
    """ROC AUC, ties at their average rank (as uie-train's metrics); None for one class."""
    scores = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(labels) >= 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i + 1
        while j < len(s) and s[j] == s[i]:
            j += 1
        ranks[i:j] = (i + 1 + j) / 2.0
        i = j
    rank_of = np.empty(len(s))
    rank_of[order] = ranks
    return float((rank_of[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class Ple(torch.nn.Module):
    """docs/model.md §6 with uie's tensor names; Linear is x · W + b with W [in, out]."""

    def __init__(self, config, init):
        super().__init__()
        order = {"user": 0, "item": 1, "context": 2}
        fields = sorted(
            config["features"]["categorical"], key=lambda f: order[f.get("group", "user")]
        )
        self.fields = [(f["name"], f["buckets"]) for f in fields]
        self.levels = config["ple"]["levels"]
        self.shared = config["ple"]["shared_experts"]
        self.specific = config["ple"]["specific_experts"]
        self.depth = len(config["ple"]["expert_hidden"])
        self.tasks = [t["name"] for t in config["tasks"]]
        self.task_weights = [float(t.get("weight", 1.0)) for t in config["tasks"]]
        self.tower_depth = {t["name"]: len(t.get("tower_hidden", [])) for t in config["tasks"]}
        if "sequence" in config["features"] or any(
            config.get("uie", {}).get(m, {}).get("enabled", False)
            for m in ("upe", "ucbe", "ucse")
        ):
            raise SystemExit("ple_torch.py implements the PLE backbone only (no sequence, no UIE)")
        self.params = torch.nn.ParameterDict()
        self.names = {}
        for name, values in init.items():
            if name in ("dense.mean", "dense.std"):
                continue
            key = name.replace(".", "__")
            self.names[name] = key
            self.params[key] = torch.nn.Parameter(torch.from_numpy(values))
        self.register_buffer("mean", torch.from_numpy(init["dense.mean"]))
        self.register_buffer("std", torch.from_numpy(init["dense.std"]))
        missing = [
            f"embed.{f}" for f, _ in self.fields if f"embed.{f}" not in self.names
        ]
        if missing:
            raise SystemExit(f"init weights lack {missing}")

    def p(self, name):
        return self.params[self.names[name]]

    def linear(self, x, prefix):
        return torch.addmm(self.p(f"{prefix}.bias"), x, self.p(f"{prefix}.weight"))

    def mlp(self, x, prefix, depth):
        for m in range(depth):
            x = torch.relu(self.linear(x, f"{prefix}.fc{m}"))
        return x

    def forward(self, ids, dense):
        parts = [
            torch.nn.functional.embedding(ids[f], self.p(f"embed.{f}")) for f, _ in self.fields
        ]
        parts.append((dense - self.mean) / self.std)
        x = torch.cat(parts, dim=1)
        task_in = [x] * len(self.tasks)
        shared_in = x
        for lvl in range(self.levels):
            specific = [
                [
                    self.mlp(task_in[k], f"ple.l{lvl}.{t}.expert{j}", self.depth)
                    for j in range(self.specific)
                ]
                for k, t in enumerate(self.tasks)
            ]
            shared = [
                self.mlp(shared_in, f"ple.l{lvl}.shared.expert{j}", self.depth)
                for j in range(self.shared)
            ]
            nxt = []
            for k, t in enumerate(self.tasks):
                g = torch.softmax(self.linear(task_in[k], f"ple.l{lvl}.{t}.gate"), dim=1)
                experts = specific[k] + shared
                nxt.append(sum(g[:, j : j + 1] * e for j, e in enumerate(experts)))
            if lvl + 1 < self.levels:
                g = torch.softmax(self.linear(shared_in, f"ple.l{lvl}.shared.gate"), dim=1)
                experts = [e for group in specific for e in group] + shared
                shared_in = sum(g[:, j : j + 1] * e for j, e in enumerate(experts))
            task_in = nxt
        logits = []
        for k, t in enumerate(self.tasks):
            h = self.mlp(task_in[k], f"tower.{t}", self.tower_depth[t])
            logits.append(self.linear(h, f"tower.{t}.out"))
        return torch.cat(logits, dim=1)


def load_split(path, model):
    raw = read_safetensors(path)
    ids = {f: torch.from_numpy(np.mod(raw[f"input.{f}"], b)) for f, b in model.fields}
    dense = torch.from_numpy(raw["input.dense"])
    labels = torch.from_numpy(raw["labels"])
    return ids, dense, labels


def predict(model, split, chunk=4096):
    ids, dense, _ = split
    n = dense.shape[0]
    out = []
    with torch.no_grad():
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            out.append(torch.sigmoid(model({f: v[s:e] for f, v in ids.items()}, dense[s:e])))
    return torch.cat(out).numpy()


def mean_auc(model, split):
    probs = predict(model, split)
    labels = split[2].numpy()
    aucs = [auc(probs[:, k], labels[:, k]) for k in range(labels.shape[1])]
    return aucs, float(np.mean([a for a in aucs if a is not None]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", required=True, help="directory written by `uie-train export`")
    ap.add_argument("--config", required=True, help="the uie config (TOML) the export was made from")
    ap.add_argument("--threads", type=int, required=True, help="torch intra-op threads")
    ap.add_argument("--epochs", type=int, help="default train.epochs")
    ap.add_argument("--seed", type=int, help="default train.seed (the shuffle)")
    ap.add_argument(
        "--adam",
        choices=["default", "fused"],
        default="default",
        help="torch.optim.Adam as it comes (a per-tensor loop on CPU) or fused=True",
    )
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with open(args.config, "rb") as f:
        config = tomllib.load(f)
    train_cfg = config["train"]
    epochs = args.epochs or train_cfg["epochs"]
    seed = args.seed if args.seed is not None else train_cfg["seed"]
    batch_size = train_cfg["batch_size"]
    patience = train_cfg["patience"]
    torch.manual_seed(seed)

    t_load = time.perf_counter()
    init = read_safetensors(f"{args.export}/init.safetensors")
    model = Ple(config, init)
    train = load_split(f"{args.export}/train.safetensors", model)
    val = load_split(f"{args.export}/val.safetensors", model)
    test = load_split(f"{args.export}/test.safetensors", model)
    load_s = time.perf_counter() - t_load
    n = train[1].shape[0]
    weights = torch.tensor(model.task_weights)
    opt = torch.optim.Adam(
        model.parameters(),
        lr=train_cfg["learning_rate"],
        betas=(0.9, 0.999),
        eps=1e-8,
        fused=True if args.adam == "fused" else None,
    )
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")

    stages = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0, "eval": 0.0}
    steps_s = 0.0
    samples = 0
    best = (None, -1.0, None)
    since_best = 0
    history = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n)
        model.train()
        loss_sum, steps = 0.0, 0
        for s in range(0, n, batch_size):
            t0 = time.perf_counter()
            rows = order[s : s + batch_size]
            ids = {f: v[rows] for f, v in train[0].items()}
            dense, labels = train[1][rows], train[2][rows]
            t1 = time.perf_counter()
            logits = model(ids, dense)
            loss = (bce(logits, labels).mean(dim=0) * weights).sum()
            t2 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t3 = time.perf_counter()
            opt.step()
            t4 = time.perf_counter()
            stages["data"] += t1 - t0
            stages["forward"] += t2 - t1
            stages["backward"] += t3 - t2
            stages["optimizer"] += t4 - t3
            steps_s += t4 - t0
            samples += rows.shape[0]
            loss_sum += float(loss)
            steps += 1
        t0 = time.perf_counter()
        model.eval()
        val_aucs, score = mean_auc(model, val)
        stages["eval"] += time.perf_counter() - t0
        history.append({"epoch": epoch, "train_loss": loss_sum / steps, "val_auc": val_aucs})
        print(f"epoch {epoch}: train loss {loss_sum / steps:.5f}, mean val auc {score:.5f}", file=sys.stderr)
        if score > best[1]:
            best = (epoch, score, {k: v.detach().clone() for k, v in model.state_dict().items()})
            since_best = 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    model.load_state_dict(best[2])
    test_aucs, _ = mean_auc(model, test)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "framework": f"torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "adam": args.adam,
        "rows": {"train": n, "val": int(val[1].shape[0]), "test": int(test[1].shape[0])},
        "epochs": len(history),
        "best_epoch": best[0],
        "samples_per_second": samples / steps_s if steps_s > 0 else 0.0,
        "step_seconds": steps_s,
        "stages": stages,
        "load_seconds": load_s,
        "test_auc": dict(zip(model.tasks, test_aucs)),
        "peak_rss_mib": peak_kib / 1024.0,
        "history": history,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
