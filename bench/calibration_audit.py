"""`python -m bench.calibration_audit`: the closed-loop audit (#14) measured on the recorded SmolLM2 drafts.

Audit at 100% over a split of the calibration set (the test split by default), replayed offline on the drafts
`collect` recorded and `grade` graded:

1. the router's decision on each draft: the running policy (routing.risk_model, the shipped one by default;
   its with_embedding variant, as the router runs it when the embedder answers) behind the entropy window of
   --config (routing.entropy_threshold 2.3, as the shipped policy was fitted); only accepted drafts are audited;
2. the heavyweight's answer: the local heavyweight is SmolLM2 itself, whose greedy answer is the draft, so a
   strong heavyweight is stood in for by each item's reference ("The answer is 84.", the reference code in a
   fence); items with no reference answer (creative constraints, judge items) cannot be audited this way and
   are counted apart;
3. the audit's verdict and label as the auditor makes them (services/router/audit/verdicts.py): the cosine of
   both answers' MiniLM embeddings (the embedder's own backend, in this process) against audit.agree_similarity;
4. against the graded truth: how many wrong accepted drafts the audit catches (disagree), how many right ones
   it flags, with bootstrap 95% intervals, and the same at other agree_similarity values;
5. one `fit --from-audit` on those verdicts (the prior: the train split) and the routing AUROC against the
   truth before (the running policy) and after (the refit's out-of-fold risks) on the audited drafts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.router.audit import verdicts
from services.router.audit.store import DISAGREE
from services.router.calibration import graded, learn
from services.router.calibration.auroc import auroc, weighted
from services.router.calibration.bootstrap import interval, pair, ratio, resamples
from services.router.calibration.cache_pairs.embed import embed_all
from services.router.calibration.dataset import DATASET, Item, load_items
from services.router.calibration.features import build_rows
from services.router.calibration.fit_audit import AuditOptions, fit_from_audit
from services.router.calibration.fitting import embed_texts, variant_risks
from services.router.calibration.grade import DEFAULT_GRADES
from services.router.calibration.graders import grade_reference
from services.router.calibration.traces import DEFAULT_TRACES, Trace, load_traces
from services.router.risk import TRACE_ONLY, WITH_EMBEDDING, load_policy
from shared.config import load_config
from shared.messages import AuditLabel, AuditSample

DEFAULT_CONFIG = Path(".data/calibration/policy-config.yaml")
DEFAULT_POLICY = Path("services/router/policies/smollm2.json")
DEFAULT_OUT = Path("docs/calibration/audit.json")
SIMILARITIES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def reference_answer(item: Item, code: dict[str, str]) -> str | None:
    """What a strong heavyweight would answer, from the item's grader; checked by that grader. None: no reference."""
    spec = item.grader
    kind = spec["kind"]
    if kind == "aliases":
        candidates = [f"The answer is {spec['answers'][0]}."]
    elif kind == "number":
        value = spec["value"]
        candidates = [f"The answer is {int(value) if float(value).is_integer() else value}."]
    elif kind == "exact":
        candidates = [str(spec["answer"])]
    elif kind == "regex":
        candidates = ["Yes.", "No."]
    elif kind == "code" and item.id in code:
        candidates = [f"```python\n{code[item.id]}\n```"]
    else:
        return None
    for text in candidates:
        if kind == "code" or grade_reference(text, spec).correct:
            return text
    return None


def code_references() -> dict[str, str]:
    from scripts.calibration_prompts import generate

    return {entry.item.id: entry.reference for entry in generate() if entry.reference}


def share(flags: NDArray[np.bool_], among: NDArray[np.bool_], name: str) -> dict[str, Any]:
    """The share of `among` that is flagged, with a bootstrap 95% interval over the drafts."""
    if not among.any():
        return {"n": 0, "value": None, "ci": None}
    counts = resamples(len(flags), name).counts
    spread = ratio(counts @ (flags & among).astype(float), counts @ among.astype(float))
    bounds = pair(interval(spread[:, None]))
    return {"n": int(among.sum()), "count": int((flags & among).sum()),
            "value": round(float((flags & among).sum() / among.sum()), 4),
            "ci": None if bounds is None else [round(bounds[0], 4), round(bounds[1], 4)]}


def label(trace: Trace, item: Item, heavy: str, similarity: float, agree_similarity: float) -> AuditLabel:
    """The label the auditor stores for this draft (services/router/audit/verdicts.py builds it): the sample
    the router would have queued, the heavyweight's answer, and the verdict by the audit's own rule."""
    sample = AuditSample(request_id=trace.id, body={"messages": list(item.messages), "max_tokens": item.max_tokens},
                         text=trace.text, tokens=[t.to_json() for t in trace.tokens], top_k=trace.top_k,
                         model=trace.model, category=trace.category,
                         usage=trace.usage.to_json() if trace.usage else None, finish_reason=trace.finish_reason)
    verdict = verdicts.by_similarity(similarity, agree_similarity)
    audit = verdicts.Audit(verdict=verdict, method=verdicts.SIMILARITY, similarity=similarity, heavy_text=heavy,
                           heavy_model="reference", detail=f"cosine {similarity:.3f}")
    return verdicts.label(sample, audit, now=0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration_audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    parser.add_argument("--grades", type=Path, default=DEFAULT_GRADES)
    parser.add_argument("--prompts", type=Path, default=DATASET)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="the router's settings (routing.entropy_threshold 2.3 for the shipped policy), "
                             "audit.agree_similarity and the embedder")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="the running policy")
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    progress = not args.quiet

    config, policy = load_config(args.config), load_policy(args.policy)
    items = {item.id: item for item in load_items(args.prompts)}
    loaded = graded.load(args.traces, args.grades)
    drafts = [g for g in loaded.items if g.split == args.split]
    rows = build_rows(drafts, {i: it.family for i, it in items.items()},
                      {i: list(it.messages) for i, it in items.items()}, policy.top_k, config.routing)
    vectors, _ = embed_texts(rows.texts, config.embedder, progress)
    rows = rows.with_embeddings(vectors)
    variant = policy.with_embedding or policy.trace_only
    risks = variant_risks(variant, rows)
    accepted = ~learn.escalated(risks, rows.window_escalated, policy.threshold_of(variant))

    traces = load_traces(args.traces)
    code = code_references()
    audited, heavy, no_reference = [], {}, 0
    for index in np.flatnonzero(accepted):
        item = items[rows.ids[index]]
        answer = reference_answer(item, code)
        if answer is None:
            no_reference += 1
            continue
        audited.append(int(index))
        heavy[item.id] = answer
    draft = {rows.ids[i]: traces[(rows.ids[i], "drafter")].text for i in audited}
    embedded = asyncio.run(embed_all(sorted(set(draft.values()) | set(heavy.values())), config.embedder,
                                     progress=progress))
    similarity = np.asarray([float(np.dot(embedded[draft[rows.ids[i]]], embedded[heavy[rows.ids[i]]]))
                             for i in audited])
    wrong = rows.wrong[audited] == 1
    agree_at = config.audit.agree_similarity
    labels = [label(traces[(rows.ids[i], "drafter")], items[rows.ids[i]], heavy[rows.ids[i]], float(s), agree_at)
              for i, s in zip(audited, similarity, strict=True)]
    disagree = np.asarray([lab.verdict == DISAGREE for lab in labels], dtype=bool)

    result: dict[str, Any] = {
        "split": args.split, "policy": str(args.policy), "variant": variant.name,
        "entropy_threshold": config.routing.entropy_threshold, "agree_similarity": agree_at,
        "drafts": len(rows), "accepted": int(accepted.sum()), "accepted_wrong": int(rows.wrong[accepted].sum()),
        "audited": len(audited), "audited_wrong": int(wrong.sum()), "no_reference": no_reference,
        "caught": share(disagree, wrong, "audit-caught"), "false_alarms": share(disagree, ~wrong, "audit-false"),
        "disagreement_rate": share(disagree, np.ones(len(audited), dtype=bool), "audit-rate"),
        "similarity_auroc": auroc(wrong.astype(float), -similarity, resamples(len(audited), "audit-similarity")
                                  ).to_json(),
        "by_similarity": [{"agree_similarity": s, "caught": share(similarity < s, wrong, f"caught-{s}")["value"],
                           "false_alarms": share(similarity < s, ~wrong, f"false-{s}")["value"]}
                          for s in SIMILARITIES],
    }
    options = AuditOptions(traces=args.traces, grades=args.grades, prompts=args.prompts, config=args.config,
                           policy=args.policy, progress=progress, source=f"replayed audit of the {args.split} split")
    fitted = fit_from_audit(labels, options)
    truth = {rows.ids[i]: float(rows.wrong[i]) for i in audited}
    against_truth = {}
    for name in (WITH_EMBEDDING, TRACE_ONLY):
        if name not in fitted.new_risks:
            continue
        y = np.asarray([truth[i] for i in fitted.audit_ids])
        before, after = fitted.running_risks[name], fitted.new_risks[name]
        counts = resamples(len(y), f"truth-{name}")
        gain = pair(interval((weighted(y, after, counts.counts) - weighted(y, before, counts.counts))[:, None]))
        against_truth[name] = {"before": auroc(y, before, counts).to_json(), "after": auroc(y, after, counts).to_json(),
                               "gain_ci": None if gain is None else [round(gain[0], 4), round(gain[1], 4)]}
    result["routing_auroc_against_truth"] = against_truth
    result["fit_from_audit"] = {"comparison_against_verdicts": fitted.comparison,
                                "trained_on": fitted.policy.trained_on["from_audit"],
                                "chosen": fitted.policy.metrics["variants"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(summary(result))


def summary(r: dict[str, Any]) -> str:
    def pct(entry: dict[str, Any]) -> str:
        if entry.get("value") is None:
            return "n/a"
        ci = entry.get("ci")
        return f"{entry.get('count', '')}/{entry['n']} = {entry['value']:.0%}" + (
            f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")

    lines = [f"{r['split']} split: {r['drafts']} graded drafts; the running policy ({r['variant']}, entropy threshold "
             f"{r['entropy_threshold']}) accepts {r['accepted']} ({r['accepted_wrong']} of them wrong)",
             f"audited at 100% with a reference answer: {r['audited']} ({r['audited_wrong']} wrong); "
             f"{r['no_reference']} accepted drafts have no reference (creative items)",
             f"at agree_similarity {r['agree_similarity']}: wrong accepted drafts caught {pct(r['caught'])}; "
             f"right drafts flagged {pct(r['false_alarms'])}; disagreement rate {pct(r['disagreement_rate'])}",
             f"the cosine as a detector of wrong accepted drafts: AUROC {r['similarity_auroc']['auroc']} "
             f"{r['similarity_auroc']['ci']}",
             "other agree_similarity values: " + ", ".join(
                 f"{row['agree_similarity']}: caught {row['caught']:.0%} / flagged {row['false_alarms']:.0%}"
                 for row in r["by_similarity"] if row["caught"] is not None and row["false_alarms"] is not None)]
    for name, a in r["routing_auroc_against_truth"].items():
        before, after = a["before"], a["after"]
        lines.append(f"routing AUROC against the truth on the audited drafts ({name}): before {before['auroc']} "
                     f"{before['ci']}, after one fit --from-audit (out-of-fold) {after['auroc']} {after['ci']}; "
                     f"gain interval {a['gain_ci']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
