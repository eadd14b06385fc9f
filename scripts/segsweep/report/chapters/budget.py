"""The training budget of successive halving (a section of the results, only under halving): the
method in words, the rung table, the full-grid estimate and the saving, the figure of validation
curves against epochs, and every configuration's budget; and the summary's sentence on the
saving. Without halving there is nothing (no section, no sentence)."""

from __future__ import annotations

import pandas as pd

from segsweep.numerals import NA, integer, number, plural, significant
from segsweep.report.document import Document, Figure, Paragraph, Section, Table, text
from segsweep.report.inputs import ReportInputs, read_table
from segsweep.sweep.budget import budget_of
from segsweep.sweep.pruning import halving, rung_epochs

PRUNE_RULES = {
    "rank": "the configurations below the best 1/η of those ranked are pruned",
    "wilcoxon": (
        "of the configurations below the best 1/η only those significantly worse than the "
        "rung's best are pruned (one-sided Wilcoxon signed-rank test over the patients both "
        "have, Holm-corrected, at α = {alpha})"
    ),
}


def shown(inputs: ReportInputs) -> bool:
    """Whether the thesis shows the budget: the sweep trains by successive halving and the
    budget's tables are among its inputs."""
    return halving(inputs.config, inputs.sweep) and "budget_rungs" in inputs.tables


def _ratio(value: float) -> str:
    return NA if pd.isna(value) else f"{significant(value)}×"


def _saving(total: pd.Series) -> dict[str, str]:
    """The numbers of a saving sentence, from rungs.csv's total row: run-epochs spent and of
    the full grid, hours spent and estimated, and the saving in hours as a ratio."""
    return {
        "spent": integer(total["epochs_trained"]),
        "full": integer(total["full_epochs"]),
        "hours": significant(total["hours"]),
        "full_hours": significant(total["full_hours"]),
        "saving": _ratio(total["saving_hours"]),
    }


def rung_frame(rungs: pd.DataFrame) -> pd.DataFrame:
    """rungs.csv as display text (the total row last)."""
    return pd.DataFrame(
        {
            "Rung": rungs["rung"].astype(str).str.replace("total", "Total"),
            "Epochs": rungs["epochs"].map(integer),
            "Entering": rungs["entering"].map(integer),
            "Promoted": rungs["promoted"].map(integer),
            "Pruned": rungs["pruned"].map(integer),
            "Run-epochs trained": rungs["epochs_trained"].map(integer),
            "Hours": rungs["hours"].map(significant),
            "Device": rungs["device"].replace("", NA),
        }
    )


def estimate_frame(total: pd.Series) -> pd.DataFrame:
    """Spent, full grid and saving, in run-epochs and in hours."""
    return pd.DataFrame(
        [
            [
                "Run-epochs",
                integer(total["epochs_trained"]),
                integer(total["full_epochs"]),
                _ratio(total["saving_epochs"]),
            ],
            [
                "Hours",
                significant(total["hours"]),
                significant(total["full_hours"]),
                _ratio(total["saving_hours"]),
            ],
        ],  # fmt: skip
        columns=["", "Successive halving", "Full grid (estimated)", "Saving"],
    )


def configuration_frame(table: pd.DataFrame, rungs: list[int]) -> pd.DataFrame:
    """configurations.csv as display text, narrow enough for a page: the configuration (its id
    names its values), outcome, run-epochs trained, its score at every rung and the reason of
    its last decision (its values and hours are in the CSV)."""
    frame = pd.DataFrame({"Configuration": table["configuration"].astype(str)})
    frame["Outcome"] = table["outcome"]
    frame["Run-epochs"] = table["epochs_trained"].map(integer)
    for k, epochs in enumerate(rungs, start=1):
        frame[f"Score, rung {k} ({epochs})"] = table[f"score_at_{epochs}"].map(number)
    frame["Reason"] = table["reason"].replace("", NA)
    return frame


def method_text(inputs: ReportInputs) -> str:
    """The method in words: the rungs, η, min_epochs and the prune rule."""
    budget = budget_of(inputs.sweep)
    rungs = rung_epochs(inputs.config, inputs.sweep)
    rule = PRUNE_RULES[budget["prune"]].format(alpha=budget["alpha"])
    return (
        f"The sweep was trained by successive halving (η = {budget['eta']}, min_epochs = "
        f"{budget['min_epochs']}): every configuration, all its folds, trained to the first "
        f"rung of {plural(rungs[0], 'epoch')}; at each rung the configurations were ranked by "
        f"their validation score and {rule}, the others training on to the next rung. The "
        f"rungs were at {', '.join(map(str, rungs[:-1]))} and {rungs[-1]} epochs "
        "(train.epochs). A pruned configuration keeps its runs and its score at the epochs it "
        "reached."
    )


def sections(inputs: ReportInputs) -> list[Section]:
    """The section "Training budget", under halving only."""
    if not shown(inputs):
        return []
    rungs = rung_epochs(inputs.config, inputs.sweep)
    rung_rows = read_table(inputs.tables["budget_rungs"], text=["rung", "device"])
    total = rung_rows.iloc[-1]
    per = read_table(inputs.tables["budget_configurations"], text=["configuration", "outcome"])
    device = str(total["device"]) or "measured"
    rung_table = Table.of(
        "budget-rungs",
        "The rungs of successive halving: the configurations entering each rung, how many it "
        "promoted and pruned (at the last rung those that finished), the run-epochs trained "
        f"since the rung below, summed over the entering configurations' runs, and their "
        f"measured {device} hours (the logged seconds of those epochs).",
        rung_frame(rung_rows),
    )
    estimate = Table.of(
        "budget-estimate",
        "What successive halving trained against the full grid, every run trained to "
        f"{rungs[-1]} epochs at its own measured mean seconds per epoch, and the saving as a "
        "ratio (full grid ÷ spent).",
        estimate_frame(total),
    )
    figure = Figure.of(
        "budget",
        f"Validation {inputs.thesis.curve} of every configuration against epochs (with folds "
        "the mean of its folds per epoch). The rungs are dotted vertical lines; pruned "
        "configurations are dashed and end at the rung that pruned them, the configurations "
        "that reached the last rung are drawn solid and named.",
        inputs.figures["budget"],
    )
    budgets = Table.of(
        "budget-configurations",
        f"Every configuration's budget: how far it trained ({plural(len(rungs), 'rung')}), the "
        "run-epochs it took, its validation score at each rung it reached (at the last rung the "
        "score of its selected checkpoint at the full budget) and why its last decision went as "
        "it did (every rung's decision: results/budget/rung-<epochs>.csv). The table mixes "
        "budgets: a pruned configuration's last score is at the epochs of its rung.",
        configuration_frame(per, rungs),
        long=True,
    )
    finished = int((per["outcome"] == "full budget").sum())
    return [
        Section(
            "training-budget",
            "Training budget",
            [
                text(method_text(inputs)),
                text(
                    "{rungs} follows the {n} through the rungs; {finished} reached the last "
                    "one. The hyperparameter tables, tests and figures below compare all {n} at "
                    "the first rung, the one budget every configuration trained to; the final "
                    "models were chosen among the configurations that reached the last rung, "
                    "at the full budget.",
                    rungs=rung_table,
                    n=plural(len(per), "configuration"),
                    finished=plural(finished, "configuration"),
                ),
                rung_table,
                text(
                    "Successive halving trained {spent} of the {full} run-epochs a full grid "
                    "would have, {hours} h instead of an estimated {full_hours} h, {saving} less "
                    "({table}). {figure} shows where each configuration stopped, and "
                    "{budgets} lists every configuration's budget.",
                    **_saving(total),
                    table=estimate,
                    figure=figure,
                    budgets=budgets,
                ),
                estimate,
                figure,
                budgets,
            ],
        )
    ]


def summary_sentence(inputs: ReportInputs, document: Document) -> Paragraph | None:
    """ "Successive halving trained N of the M epochs a full grid would have, X h instead of an
    estimated Y h (Z× less)", citing the estimate table; None without it."""
    table = document.find("budget-estimate")
    if table is None or not shown(inputs):
        return None
    total = read_table(inputs.tables["budget_rungs"], text=["rung", "device"]).iloc[-1]
    return text(
        "Successive halving trained {spent} of the {full} epochs a full grid would have, "
        "{hours} h instead of an estimated {full_hours} h ({saving} less; {table}).",
        **_saving(total),
        table=table,
    )
