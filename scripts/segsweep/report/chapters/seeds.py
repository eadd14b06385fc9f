"""Section "Seed noise" of the results and its summary sentence: how far a setting's score moves
when only its seed changes (the seed spread table), whether the best setting beats the others by
more than that (the comparisons, tested over patients) and how often it stays first seed by seed
(`segsweep.sweep.seeds`).

Shown only when the thesis has the seed tables (`inputs.tables` "seed_spread",
"seed_comparisons", "seed_winners": settings trained with several seeds); without them the
section and the sentence are left out.
"""

from __future__ import annotations

import pandas as pd

from segsweep.numerals import integer, number, p_value, percent, plural
from segsweep.report.document import Document, Paragraph, Section, Table, text
from segsweep.report.inputs import ReportInputs, read_table
from segsweep.sweep.seeds import winner_share

TEXT = ["setting", "winner", "other", "test", "first"]


def _holm_is(p: float) -> str:
    """ "p (Holm) = 0.012", or "p (Holm) < 0.001"."""
    written = p_value(p)
    return f"p (Holm) {written}" if written.startswith("<") else f"p (Holm) = {written}"


def spread_frame(spread: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """The seed spread, best seed-averaged setting first, as display text."""
    ordered = spread.sort_values(["mean", "setting"], ascending=[not higher_is_better, True])
    frame = pd.DataFrame({"Setting": ordered["setting"], "Seeds": ordered["seeds"].map(integer)})
    for column, heading in [("mean", "Mean"), ("sd", "SD"), ("min", "Min"), ("max", "Max")]:
        frame[heading] = ordered[column].map(number)
    frame["Range"] = ordered["range"].map(number)
    return frame


def comparisons_frame(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The comparisons of the best setting with the others, as display text."""
    rows = [
        [
            row["other"],
            f"{integer(row['winner_seeds'])} / {integer(row['other_seeds'])}",
            number(row["difference"]),
            number(row["winner_sd"]),
            number(row["other_sd"]),
            number(row["pooled_sd"]),
            number(row["standardised"], 2),
            integer(row["n"]),
            number(row["statistic"], 1),
            p_value(row["p"]),
            p_value(row["p_holm"]),
            "yes" if _flag(row["distinguishable"]) else "no",
        ]
        for _, row in comparisons.iterrows()
    ]
    columns = ["Against", "Seeds", "Δ mean", "SD best", "SD other", "Pooled SD", "Δ / SD"]
    columns += ["Patients", "W", "p", "p (Holm)", "Beyond seed noise"]
    return pd.DataFrame(rows, columns=columns)


def _flag(value: object) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes"}


def _tables(inputs: ReportInputs) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """(spread, comparisons, winners), or None when the thesis has no seed tables."""
    if "seed_spread" not in inputs.tables:
        return None
    return (
        read_table(inputs.tables["seed_spread"], text=TEXT[:1]),
        read_table(inputs.tables["seed_comparisons"], text=TEXT),
        read_table(inputs.tables["seed_winners"], text=TEXT),
    )


def sections(inputs: ReportInputs) -> list[Section]:
    """The section "Seed noise" (a list of it), empty without the seed tables or a repeated
    setting."""
    tables = _tables(inputs)
    if tables is None or tables[0].empty:
        return []
    spread, comparisons, winners = tables
    higher = bool(inputs.config["selection"]["higher_is_better"])
    score = inputs.thesis.score_label(inputs.config["selection"])
    spread_table = Table.of(
        "seed-spread",
        f"The {score} on the validation set of every setting trained with several seeds: its "
        "seeds' mean, standard deviation (SD), minimum, maximum and range.",
        spread_frame(spread, higher),
        notes=["A setting is a configuration without its seed; seeds that failed are left out."],
    )
    means = spread["mean"]
    blocks: list = [
        text(
            "A setting (a configuration without its seed) was trained with several seeds where "
            "the sweep repeats it or confirms it among the best. {table} shows how far the "
            "score of each of the {n} moved from seed to seed: a median SD over seeds of {sd}, "
            "while their seed-averaged scores span {gap}.",
            table=spread_table,
            n=plural(len(spread), "repeated setting"),
            sd=number(spread["sd"].median()),
            gap=number(means.max() - means.min()),
        ),
        spread_table,
    ]
    if len(comparisons):
        blocks += _comparison_blocks(comparisons)
    if len(winners):
        blocks.append(_stability(winners))
    return [Section("seed-noise", "Seed noise", blocks)]


def _comparison_blocks(comparisons: pd.DataFrame) -> list:
    winner = comparisons["winner"].iloc[0]
    n = int(comparisons["n"].max())
    table = Table.of(
        "seed-comparisons",
        f"The best setting by seed-averaged score, {winner}, against every other repeated "
        "setting: the difference of their seed-averaged scores, their seed SDs and the pooled "
        "seed SD, the difference in pooled SDs, and a two-sided Wilcoxon signed-rank test over "
        "the patients both score.",
        comparisons_frame(comparisons),
        notes=[
            "Each patient's value is the mean over a setting's seeds of its per-patient score "
            "(at slice level the patient's aggregate of its slices); Holm's correction over "
            f"the {plural(len(comparisons), 'comparison')}. Beyond seed noise: p (Holm) < 0.05 "
            "and |Δ mean| above the pooled seed SD."
        ],
    )
    beyond = comparisons[comparisons["distinguishable"].map(_flag)]["other"].tolist()
    verdict = (
        f"it is distinguishable from {plural(len(beyond), 'setting')} ({', '.join(beyond)})"
        if beyond
        else "it is distinguishable from none of them"
    )
    return [
        text(
            "Is the best setting, {winner}, better than the others beyond seed noise? {table} "
            "sets each difference against the pooled seed SD and tests it over the {patients} "
            "both settings score (two-sided Wilcoxon signed-rank test of the per-patient "
            "values averaged over each setting's seeds, Holm's correction): {verdict}.",
            winner=winner,
            table=table,
            patients=plural(n, "patient"),
            verdict=verdict,
        ),
        table,
    ]


def _stability(winners: pd.DataFrame) -> Paragraph:
    winner = winners["winner"].iloc[0]
    first = int(winners["winner_first"].map(_flag).sum())
    share = winner_share(winners.assign(winner_first=winners["winner_first"].map(_flag)))
    others = sorted(set(winners["first"]) - {winner})
    return text(
        "Seed by seed (the i-th seed of every repeated setting against the i-th of the others, "
        "the same seed in each), {winner} ranked first at {first} of {n} ({share}){others}.",
        winner=winner,
        first=first,
        n=plural(len(winners), "seed index", "seed indices"),
        share=percent(share),
        others=f"; {', '.join(others)} at the others" if others else "",
    )


def summary_sentence(inputs: ReportInputs, document: Document) -> Paragraph | None:
    """The summary's sentence: whether the best setting is distinguishable from the runner-up
    beyond seed noise, with the test, Holm's p and the patients it rests on; None without the
    comparisons table in the document."""
    table = document.find("seed-comparisons")
    tables = _tables(inputs)
    if table is None or tables is None or tables[1].empty:
        return None
    row = tables[1].iloc[0]
    return text(
        "Beyond seed noise, the best setting, {winner} ({seeds}), {verdict} from the "
        "runner-up, {other}: their seed-averaged scores differ by {difference} against a "
        "pooled seed SD of {sd} (two-sided Wilcoxon signed-rank over {patients}, {p}; {table}).",
        winner=row["winner"],
        seeds=plural(int(row["winner_seeds"]), "seed"),
        verdict="is distinguishable" if _flag(row["distinguishable"]) else "is not distinguishable",
        other=row["other"],
        difference=number(row["difference"]),
        sd=number(row["pooled_sd"]),
        patients=plural(int(row["n"]), "patient"),
        p="no test defined" if pd.isna(row["p_holm"]) else _holm_is(row["p_holm"]),
        table=table,
    )
