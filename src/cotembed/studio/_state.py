"""The studio's state: one system being edited, one data set embedded once, and what they score.

Every figure comes from library code (:func:`~cotembed.evaluation._evaluate.evaluate`,
:func:`~cotembed.evaluation._misclassified.misclassified_examples`,
:func:`~cotembed.inspection.inspect_system`, :class:`~cotembed.authoring.induce.RuleInducer`)
run on the cached :class:`~cotembed._embeddings.EmbeddingSet`; an edit only embeds the
prompt texts the :class:`~cotembed._embeddings.PromptBank` has never seen. An edit that
does not validate is reported with its field and changes nothing: the last valid
system keeps scoring. History (undo/redo) is kept on disk under the fingerprint of the
file's system, so restarting the studio on the same file resumes where it stopped.
"""

from __future__ import annotations

import difflib
import json
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed._io import atomic_write
from cotembed.errors import BusyError, ConflictError, CotembedError, InputError, SystemValidationError
from cotembed.evaluation._evaluate import EvalReport, evaluate
from cotembed.evaluation._misclassified import MisclassifiedSample, misclassified_examples
from cotembed.inspection import Inspection, inspect_system
from cotembed.scoring import Scorer, ScoringConfig
from cotembed.scoring._threads import single_blas_thread
from cotembed.studio._changes import system_changes
from cotembed.studio._edits import EDITS, edit_field, edit_message
from cotembed.studio._proposals import Optimization, Proposal, proposal_changes
from cotembed.system import System, parse_system_text

EmbedTexts = Callable[[Sequence[str]], np.ndarray]

DEFAULT_METHODS = ("cot", "hybrid")
MAX_SHOWN_MISTAKES = 24
CELL_LIMIT = 60
"""Inputs listed for one confusion cell (the count says how many there are)."""
TAB_TIMEOUT_S = 30.0
"""A tab not heard from for this long no longer holds the system: another tab may edit it."""
FIGURE_CACHE = 16
INDUCE_PER_CLASS = 5
OPTIMIZE_CANDIDATES = 400
OPTIMIZE_SECONDS = 60.0
SYSTEM_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Figures:
    """What the page shows for one system; computed once per fingerprint."""

    system: System
    config: ScoringConfig
    report: EvalReport | None
    mistakes: MisclassifiedSample | None
    inspection: Inspection
    predictions: list[dict[str, Any]] | None
    """Explain-only mode (unlabelled data): each shown input's prediction and answers."""
    elapsed_ms: float


@dataclass
class EditOutcome:
    """The answer to one edit: applied, or the problems and the field they belong to."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    field: str | None = None


def _header_of(text: str) -> str:
    """The leading comment block of a YAML file (kept when the studio saves it)."""
    lines: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#") or (lines and not line.strip()):
            lines.append(line)
        else:
            break
    while lines and not lines[-1].strip():
        lines.pop()
    return "".join(lines) + ("\n" if lines else "")


class Studio:
    """One system file, its edits, and the data it is scored on.

    ``embed`` turns prompt texts into vectors (``PromptBank.embed``); ``data`` is
    embedded once by the caller. ``data`` without labels opens explain-only mode.
    ``examples`` (labelled) feed ``induce``; without them induce draws examples from ``data``.
    ``llm`` (a :class:`~cotembed.authoring._llm.ChatModel`) enables the LLM revision.
    """

    def __init__(self, path: str | Path, data: EmbeddingSet, embed: EmbedTexts, *, logit_scale: float | None = None,
                 temperature: float | None = None, hybrid_weight: float = 1.0, methods: Sequence[str] = DEFAULT_METHODS,
                 examples: EmbeddingSet | None = None, state_dir: str | Path | None = None, thumbnail: Callable[[int], str | None] | None = None,
                 llm: Any = None):
        self.path = Path(path)
        self.disk_text = self.path.read_text(encoding="utf-8")
        self.disk_system = System.load(self.path)
        self.data = data
        self._embed_lock = threading.Lock()
        self._raw_embed = embed
        self.logit_scale = logit_scale
        self.temperature = temperature
        self.hybrid_weight = hybrid_weight
        self.methods = tuple(dict.fromkeys(methods))
        self.examples = examples
        self.labelled = len(data) > 0 and all(label is not None for label in data.labels)
        self.lock = threading.RLock()
        self._figures: OrderedDict[str, Figures] = OrderedDict()
        self._texts: dict[tuple[str, str, str], tuple[System, str]] = {}
        self.history: list[System] = [self.disk_system]
        self.position = 0
        self.draft: dict[str, Any] | None = None
        """The last YAML text that did not validate, with its problems (None when the text is valid)."""
        self.proposal: Proposal | None = None
        self.holder: str | None = None
        self.holder_seen = 0.0
        self.saved_as: list[str] = []
        self.optimization: Optimization | None = None
        self.llm = llm
        self._asking = threading.Lock()
        """Held while the LLM is asked for a revision: one request at a time, without holding the studio's lock."""
        self.key = self.disk_system.fingerprint
        self.state_file = Path(state_dir) / f"{self.key}.json" if state_dir else None
        self._restore()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The prompt bank, one caller at a time (an optimisation runs in its own thread)."""
        with self._embed_lock:
            return self._raw_embed(texts)

    # ------------------------------------------------------------ the system
    @property
    def system(self) -> System:
        return self.history[self.position]

    def config_for(self, system: System) -> ScoringConfig:
        from cotembed._classifier import resolve_temperature

        temperature = self.temperature
        if temperature is None and system.temperature is None:
            temperature = self.logit_scale
        return ScoringConfig(resolve_temperature(temperature, system, None), self.hybrid_weight)

    def _push(self, system: System) -> None:
        if system == self.system:
            return
        del self.history[self.position + 1:]
        self.history.append(system)
        self.position = len(self.history) - 1
        self._persist()

    def undo(self) -> bool:
        with self.lock:
            if self.position == 0:
                return False
            self.position -= 1
            self.draft = None
            self._persist()
            return True

    def redo(self) -> bool:
        with self.lock:
            if self.position >= len(self.history) - 1:
                return False
            self.position += 1
            self.draft = None
            self._persist()
            return True

    # ----------------------------------------------------------------- edits
    def edit(self, op: dict[str, Any]) -> EditOutcome:
        """One typed edit of a table cell; validated before it replaces the current system."""
        kind = op.get("op")
        handler = EDITS.get(str(kind))
        if handler is None:
            return EditOutcome(False, [f"unknown edit {kind!r}; the edits are {', '.join(EDITS)}"], None)
        where = edit_field(op)
        with self.lock:
            try:
                system = handler(self.system, op)
            except SystemValidationError as exc:
                return EditOutcome(False, list(exc.problems) or [str(exc)], where)
            except (CotembedError, KeyError, IndexError, TypeError, ValueError) as exc:
                return EditOutcome(False, [edit_message(exc)], where)
            self.draft = None
            self._push(system)
        return EditOutcome(True, field=where)

    def set_text(self, text: str) -> EditOutcome:
        """The YAML beside the tables: a valid text becomes the system, an invalid one is kept as a draft."""
        with self.lock:
            try:
                data = parse_system_text(text, "YAML")
                system = System.from_dict(data, source="YAML")
            except SystemValidationError as exc:
                self.draft = {"text": text, "problems": list(exc.problems) or [str(exc)]}
                return EditOutcome(False, self.draft["problems"], "yaml")
            except CotembedError as exc:
                self.draft = {"text": text, "problems": [str(exc)]}
                return EditOutcome(False, self.draft["problems"], "yaml")
            self.draft = None
            self._push(system)
        return EditOutcome(True, field="yaml")

    def render(self, system: System | None = None) -> str:
        """The text saving would write for ``system`` (kept per fingerprint: the YAML writer is slow next to scoring)."""
        system = system or self.system
        header = _header_of(self.disk_text) if self.path.suffix.lower() != ".json" else ""
        key = (system.fingerprint, header, self.path.suffix.lower())
        cached = self._texts.get(key)
        if cached is None or cached[0] != system:
            cached = self._texts[key] = (system, system.render(self.path.suffix, header))
            while len(self._texts) > FIGURE_CACHE:
                self._texts.pop(next(iter(self._texts)))
        return cached[1]

    def diff(self, system: System | None = None, against: str | None = None) -> str:
        """Unified diff from the file on disk (or ``against``) to ``system``'s text, both written the way save writes them."""
        before = self.render(self.disk_system) if against is None else against
        after = self.render(system)
        return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                            fromfile=f"{self.path.name} (on disk)", tofile=f"{self.path.name} (edited)"))

    # ---------------------------------------------------------------- figures
    def figures(self, system: System | None = None) -> Figures:
        """Every figure for ``system`` (default: the current one), from library code on cached embeddings."""
        system = system or self.system
        with self.lock:
            cached = self._figures.get(system.fingerprint)
            if cached is not None and cached.system == system:
                self._figures.move_to_end(system.fingerprint)
                return cached
            started = time.perf_counter()
            config = self.config_for(system)
            with single_blas_thread():  # small products: a second BLAS thread costs more than it saves
                report, mistakes, inspection, predictions = self._compute(system, config)
            figures = Figures(system, config, report, mistakes, inspection, predictions, 1000 * (time.perf_counter() - started))
            self._figures[system.fingerprint] = figures
            while len(self._figures) > FIGURE_CACHE:
                self._figures.popitem(last=False)
            return figures

    def _compute(self, system: System, config: ScoringConfig) -> tuple[Any, Any, Inspection, Any]:
        scorer = Scorer.build(system, self.embed, config, self.methods)
        report = mistakes = predictions = None
        if self.labelled:
            report = evaluate(scorer, self.data, self.methods)
            mistakes = misclassified_examples(scorer, self.data, self.methods, MAX_SHOWN_MISTAKES)
            inspection = inspect_system(system, embed=self.embed, data=self.data, config=config, method=self.methods[0])
        else:
            inspection = inspect_system(system, embed=self.embed)
            predictions = self._explain(scorer, range(min(len(self.data), CELL_LIMIT)))
        return report, mistakes, inspection, predictions

    def _explain(self, scorer: Scorer, rows: Sequence[int] | range) -> list[dict[str, Any]]:
        """Prediction and per-question answers of the given rows under the first method."""
        rows = list(rows)
        if not rows:
            return []
        method = self.methods[0]
        embeddings = self.data.embeddings[rows]
        probs = scorer.probabilities(embeddings, method)
        batch = scorer.batch(embeddings)
        compiled = scorer.compiled
        out = []
        for i, row in enumerate(rows):
            top = int(probs[i].argmax())
            answers = []
            for g, group in enumerate(scorer.system.groups):
                block = batch.option_probs[i, compiled.offsets[g]: compiled.offsets[g + 1]]
                best = int(block.argmax())
                answers.append({"group": group.name, "answer": group.options[best], "probability": float(block[best])})
            out.append({"row": row, "input": self.data.sources[row], "label": self.data.labels[row],
                        "predicted": compiled.class_names[top], "probability": float(probs[i, top]), "answers": answers})
        return out

    def cell(self, true: str, predicted: str, method: str | None = None) -> dict[str, Any]:
        """The inputs of one confusion cell (true class, predicted class), each with its answers."""
        method = method or self.methods[0]
        if method not in self.methods:
            raise InputError(f"method {method!r} is not shown here; choose from {', '.join(self.methods)}")
        if not self.labelled:
            raise InputError("the data has no labels: there is no confusion matrix")
        with self.lock:
            system = self.system
            figures = self.figures(system)
            names = system.class_names
            for name in (true, predicted):
                if name not in names:
                    raise InputError(f"{name!r} is not a class of the system")
            scorer = Scorer.build(system, self.embed, figures.config, self.methods)
            predictions = scorer.scores(self.data.embeddings, method).argmax(axis=1)
            truth = self.data.label_indices(names)
            rows = np.flatnonzero((truth == names.index(true)) & (predictions == names.index(predicted)))
            shown = self._explain(scorer, rows[:CELL_LIMIT].tolist())
            rules = system.rules
            for item in shown:
                for answer in item["answers"]:
                    group = system.groups[system.group_names.index(answer["group"])]
                    answer["fits_true"] = any(group.options[j] == answer["answer"] for j in rules[true][group.name])
            return {"true": true, "predicted": predicted, "method": method, "count": int(len(rows)), "inputs": shown}

    # -------------------------------------------------------------- proposals
    def propose_induce(self, per_class: int = INDUCE_PER_CLASS, seed: int = 0) -> Proposal:
        """RuleInducer on the examples (or ``per_class`` drawn from the data); its effect measured on the data it did not see."""
        from cotembed.authoring.induce import RuleInducer, draw_examples

        with self.lock:
            system = self.system
            if self.examples is not None:
                train, heldout, source = self.examples, self.data, "--examples"
            elif self.labelled:
                counts = {c: sum(1 for label in self.data.labels if label == c) for c in system.class_names}
                k = max(1, min(per_class, min(counts.values()) - 1 if min(counts.values()) > 1 else 1))
                train_rows, rest = draw_examples(self.data.labels, system.class_names, k, seed)
                train = self.data.subset(train_rows)
                heldout = self.data.subset(rest) if rest else self.data
                source = f"{k} examples per class drawn from the data (seed {seed}); effect measured on the other {len(rest)} inputs"
            else:
                raise InputError("induce needs labelled examples: give --examples DATA (the data has no labels)")
            config = self.config_for(system)
            inducer = RuleInducer(system, self.embed, temperature=config.temperature)
            inducer.fit(train)
            induced = inducer.system_
            changes = proposal_changes(system, induced, inducer.rule_changes_)
            before = self._accuracy(system, heldout)
            after = self._accuracy(induced, heldout)
            effect = {"measured_on": source if self.examples is None else f"the data ({len(heldout)} inputs); examples from --examples",
                      "n_inputs": len(heldout), "before": before, "after": after}
            self.proposal = Proposal(f"induce-{induced.fingerprint}", "induce", system, changes, effect,
                                     note=f"RuleInducer: {len(inducer.rule_changes_)} rule change(s), method {inducer.method_}",
                                     measured_on=heldout)
            self._proposed_system = induced
            return self.proposal

    def start_optimize(self, max_candidates: int = OPTIMIZE_CANDIDATES, max_seconds: float = OPTIMIZE_SECONDS, seed: int = 0) -> "Optimization":
        """A bounded ``optimize`` run in a thread; its best system becomes a proposal when it ends (or is stopped)."""
        from cotembed.authoring.induce import draw_examples
        from cotembed.optimize import Objective, Search, SearchSettings

        with self.lock:
            if self.optimization is not None and self.optimization.running:
                raise BusyError("an optimisation is already running; stop it first")
            if not self.labelled:
                raise InputError("optimize needs labelled data (the data has no labels)")
            system = self.system
            counts = [sum(1 for label in self.data.labels if label == c) for c in system.class_names]
            k = max(1, min(counts) // 2)
            train_rows, rest = draw_examples(self.data.labels, system.class_names, k, seed)
            train, val = self.data.subset(train_rows), (self.data.subset(rest) if rest else None)
            config = self.config_for(system)
            objective = Objective(train, self.embed, config.temperature, val=val, method=self.methods[0], hybrid_weight=self.hybrid_weight)
            run = Optimization(max_candidates)
            settings = SearchSettings(seed=seed, max_candidates=max_candidates, max_seconds=max_seconds, per_round=32)
            search = Search(objective, settings, record=run.record)
            self.optimization = run

        def work() -> None:
            try:
                result = search.run(system)
            except Exception as exc:
                run.finish(f"failed: {exc}")
                return
            with self.lock:
                before, after = result.start_score, result.best_score
                held_out = before.val is not None and after.val is not None
                effect = {"measured_on": (f"{len(rest)} inputs the search did not climb on (it climbed on {len(train_rows)})" if held_out
                                          else f"the {len(train_rows)} inputs it climbed on"),
                          "n_inputs": len(rest) if held_out else len(train_rows),
                          "before": {self.methods[0]: before.val if held_out else before.train},
                          "after": {self.methods[0]: after.val if held_out else after.train}}
                changes = system_changes(system, result.best)
                if changes:
                    note = f"optimize: {result.n_candidates} candidates in {result.rounds} rounds, stopped by {result.stop_reason}"
                    self.proposal = Proposal(f"optimize-{result.best.fingerprint}", "optimize", system, changes, effect, note=note,
                                             measured_on=val if held_out else train)
                run.finish(result.stop_reason)

        run.thread = threading.Thread(target=work, name="studio-optimize", daemon=True)
        run.thread.start()
        return run

    def propose_llm(self, notes: str = "") -> Proposal:
        """An LLM's revision of the current system, from its confusions, weak questions and ``notes``; validated, then measured.

        The studio's lock is not held while the LLM answers (minutes, on a slow model): the page keeps working.
        """
        from cotembed.studio._revision import MAX_NOTES_CHARS, revise

        if self.llm is None:
            raise InputError("no LLM is configured: start the studio with --llm-model NAME (and --llm-base-url URL for a local server)")
        if len(notes) > MAX_NOTES_CHARS:
            raise InputError(f"notes: at most {MAX_NOTES_CHARS:,} characters, got {len(notes):,}")
        if not self._asking.acquire(blocking=False):
            raise BusyError("the LLM is already revising this system; wait for its answer")
        try:
            with self.lock:
                system = self.system
                figures = self.figures(system)
                if figures.inspection.data is None:
                    raise InputError("the LLM revision needs labelled data: it is shown how the model answers each question")
                diagnostics = figures.inspection.data.to_dict()
            revision = revise(self.llm, system, diagnostics, notes, self._modality())
        finally:
            self._asking.release()
        with self.lock:
            changes = system_changes(system, revision.system)
            effect = {"measured_on": f"the studio's {len(self.data)} inputs (the LLM saw their confusions: not held out)",
                      "n_inputs": len(self.data), "before": self._accuracy(system, self.data),
                      "after": self._accuracy(revision.system, self.data)}
            where = f" (after {revision.requests - 1} repair)" if revision.requests > 1 else ""
            note = (f"LLM revision by {revision.model or self.llm.settings.model} in {revision.elapsed_s:.1f} s{where}"
                    + ("" if changes else "; it proposes no change"))
            self.proposal = Proposal(f"llm-{revision.system.fingerprint}", "llm", system, changes, effect, note=note, measured_on=self.data)
            return self.proposal

    def _modality(self) -> str:
        samples = self.data.samples
        return "text" if samples and all(s.path is None and s.text is not None for s in samples) else "image"

    def preview(self, proposal_id: str, accepted: Sequence[int]) -> dict[str, Any]:
        """The measured effect of a chosen subset of the open proposal's changes (or why the subset is not a valid system)."""
        with self.lock:
            proposal = self.proposal
            if proposal is None or proposal.id != proposal_id:
                raise InputError("that proposal is no longer open; make a new one")
            try:
                candidate = proposal.apply(proposal.base, accepted)
            except CotembedError as exc:
                problems = list(getattr(exc, "problems", ()) or ()) or [edit_message(exc)]
                return {"ok": False, "problems": problems, "accepted": sorted(set(accepted))}
            data = proposal.measured_on if proposal.measured_on is not None else self.data
            return {"ok": True, "accepted": sorted(set(accepted)), "before": proposal.effect["before"],
                    "after": self._accuracy(candidate, data) if self.labelled else None}

    def stop_optimize(self) -> None:
        if self.optimization is not None:
            self.optimization.stop.set()

    def proposal_diff(self) -> str:
        if self.proposal is None:
            return ""
        try:
            candidate = self.proposal.apply(self.proposal.base, range(len(self.proposal.changes)))
        except CotembedError as exc:  # every change together is the proposer's valid system; this is a safety net
            return f"the changes together do not make a valid system: {exc}"
        return "".join(difflib.unified_diff(self.render(self.proposal.base).splitlines(keepends=True),
                                            self.render(candidate).splitlines(keepends=True), fromfile="current", tofile="proposed"))

    def accept(self, proposal_id: str, accepted: Sequence[int]) -> EditOutcome:
        with self.lock:
            if self.proposal is None or self.proposal.id != proposal_id:
                return EditOutcome(False, ["that proposal is no longer open; make a new one"], "proposal")
            try:
                system = self.proposal.apply(self.system, accepted)
            except SystemValidationError as exc:
                return EditOutcome(False, list(exc.problems) or [str(exc)], "proposal")
            except CotembedError as exc:
                return EditOutcome(False, [edit_message(exc)], "proposal")
            self.proposal = None
            self._push(system)
            return EditOutcome(True, field="proposal")

    def reject(self) -> None:
        with self.lock:
            self.proposal = None

    def _accuracy(self, system: System, data: EmbeddingSet) -> dict[str, float | None]:
        report = evaluate(Scorer.build(system, self.embed, self.config_for(system), self.methods), data, self.methods)
        return {m: report.methods[m].acc1 for m in self.methods}

    # ------------------------------------------------------------------- save
    def save(self, confirm: bool = False) -> dict[str, Any]:
        """Write the current system over its file atomically, the previous text kept beside it.

        Without ``confirm`` nothing is written (ConflictError): replacing a file is a person's decision.
        """
        with self.lock:
            return self._write(self.path, confirm)

    def save_as(self, target: str | Path, confirm: bool = False) -> dict[str, Any]:
        """Write the current system to a new file (a relative path is beside the open file) and go on editing that one.

        A file already there is replaced only with ``confirm`` (ConflictError without), its text kept beside it.
        The format follows the suffix: ``.json``, else YAML (the open file's leading comments kept).
        """
        text = str(target).strip()
        if not text:
            raise InputError("path: name the file to save as")
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.path.parent / path
        if path.suffix.lower() not in SYSTEM_SUFFIXES:
            raise InputError(f"path {text!r}: a system file ends in {', '.join(SYSTEM_SUFFIXES)}")
        if path.is_dir():
            raise InputError(f"path {text!r}: {path} is a folder; name a file")
        if not path.parent.is_dir():
            raise InputError(f"path {text!r}: the folder {path.parent} does not exist")
        with self.lock:
            if path.resolve() == self.path.resolve():
                return self._write(self.path, confirm)
            result = self._write(path, confirm, replacing_open_file=False)
            self.path = path
            return result

    def _write(self, path: Path, confirm: bool, replacing_open_file: bool = True) -> dict[str, Any]:
        system = self.system
        header = _header_of(self.disk_text) if path.suffix.lower() != ".json" else ""
        text = system.render(path.suffix, header) if path != self.path else self.render(system)
        on_disk = path.read_text(encoding="utf-8") if path.exists() else None
        if on_disk == text:
            self.disk_text, self.disk_system = text, system
            return {"path": str(path), "written": False, "backup": None, "message": f"{path.name} already says this"}
        if on_disk is not None and not confirm:
            changed_outside = replacing_open_file and on_disk != self.disk_text
            note = " It was changed outside the studio since it was opened." if changed_outside else ""
            raise ConflictError(f"saving replaces {path}; confirm to write it (the previous version is kept beside it).{note}")
        backup = None
        if on_disk is not None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            backup = path.with_name(f"{path.name}.bak-{stamp}")
            shutil.copy2(path, backup)

        def reads_back(written: Path) -> None:
            if System.load(written) != system:
                raise CotembedError(f"{path}: the written system did not read back the same; nothing was written")

        atomic_write(path, text, check=reads_back)
        self.disk_text = text
        self.disk_system = system
        self.saved_as.append(str(path))
        self._persist()
        return {"path": str(path), "written": True, "backup": None if backup is None else str(backup),
                "fingerprint": system.fingerprint, "message": f"saved {path.name}"}

    # ------------------------------------------------------------------- tabs
    def claim(self, tab: str, take_over: bool = False) -> dict[str, Any]:
        """A tab asks to edit. The first one holds the system; a second is told, and may take over."""
        with self.lock:
            now = time.monotonic()
            free = self.holder is None or self.holder == tab or now - self.holder_seen > TAB_TIMEOUT_S
            if free or take_over:
                self.holder, self.holder_seen = tab, now
                return {"holder": True, "message": ""}
            return {"holder": False, "message": "this system is being edited in another tab: edits here are refused "
                                                "until you take over (the other tab then becomes read-only)"}

    def check_holder(self, tab: str | None) -> None:
        with self.lock:
            now = time.monotonic()
            if self.holder is None or now - self.holder_seen > TAB_TIMEOUT_S:
                self.holder = tab
            if tab is None or tab != self.holder:
                raise ConflictError("this system is being edited in another tab; take over there or here to edit")
            self.holder_seen = now

    def heartbeat(self, tab: str) -> bool:
        with self.lock:
            if tab == self.holder:
                self.holder_seen = time.monotonic()
                return True
            return False

    # ------------------------------------------------------------ persistence
    def _persist(self) -> None:
        if self.state_file is None:
            return
        payload = {"file": str(self.path), "disk": self.disk_system.fingerprint, "position": self.position,
                   "history": [s.to_dict() for s in self.history]}
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.state_file, json.dumps(payload, ensure_ascii=False, allow_nan=False))
        except (OSError, ValueError):
            pass  # the state is a convenience; the edits stay in memory

    def _restore(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            payload = json.loads(self.state_file.read_text(encoding="utf-8"))
            history = [System.from_dict(d, source=str(self.state_file)) for d in payload["history"]]
            position = int(payload["position"])
        except (OSError, ValueError, KeyError, TypeError, CotembedError):
            return
        if history and history[0] == self.disk_system and 0 <= position < len(history):
            self.history, self.position = history, position


__all__ = ["BusyError", "ConflictError", "EDITS", "EditOutcome", "Figures", "Optimization", "Proposal", "Studio"]
