"""benchmarks/bpfpn_ablation.py's bookkeeping, whose numbers go into README and the model cards: variant names,
and the summary over seeds with its paired (same seed) differences, against hand-computed values."""
import sys

import pytest

pytest.importorskip("torch", reason="the ablation script imports the trainer (train extra)")

from tests.conftest import REPO  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
import bpfpn_ablation as ablation  # noqa: E402


def test_variant_names_round_trip():
    assert ablation.parse_variant("gils_dgr_k2_gap5_s1") == ablation.Variant("gils_dgr", 2, 5, "stem", 0, 1)
    assert ablation.parse_variant("fpn_k0") == ablation.Variant("fpn", 0, 1, "stem", 0, 0)
    assert ablation.parse_variant("dgr_k0_syn20_s2") == ablation.Variant("dgr", 0, 1, "stem", 20, 2)
    assert ablation.parse_variant("fpn_k2_finest_s1") == ablation.Variant("fpn", 2, 1, "finest", 0, 1)
    for name in ("fpn_k0", "gils_nodetach_k2_s3", "dgr_k2_gap4", "gils_k1_gap2_s2", "fpn_k2_gap3_syn8_s1",
                 "gils_bn_dgr_k2_gap10_finest_syn4_s2"):
        assert ablation.variant_name(ablation.parse_variant(name)) == name
    for wrong in ("bifpn_k0", "fpn", "fpn_k2_gap0", "fpn_k2_s1_gap2", "fpn_k0_syn", "fpn_k0_finest",
                  "fpn_k2_finest_gap2"):
        assert ablation.parse_variant(wrong) is None, wrong


def row(ap50, pd, idf1=None):
    return {"AP50": ap50, "pd_at_false_alarms_per_frame": {"0.5": pd},
            "tracking": None if idf1 is None else {"MOTA": 0.5, "IDF1": idf1}}


def test_summary_pairs_seeds_with_the_plain_fpn_and_single_frames():
    variants = {"fpn_k0": row(0.70, 0.80, 0.70), "fpn_k0_s1": row(0.80, 0.90, 0.72),
                "dgr_k0": row(0.75, 0.85, 0.71), "dgr_k0_s1": row(0.82, 0.88), "dgr_k0_s2": row(0.60, 0.70, 0.6),
                "fpn_k2_gap5": row(0.72, 0.86, 0.75), "fpn_k0_syn20_s1": row(0.78, 0.92, 0.7),
                "fpn_k2_gap5_finest": row(0.74, 0.90, 0.7), "released bpfpn_tiny": row(0.9, 0.9, 0.9)}
    summary = {entry["variant"]: entry for entry in ablation.summarise(variants)}
    assert set(summary) == {"fpn_k0", "dgr_k0", "fpn_k2_gap5", "fpn_k0_syn20", "fpn_k2_gap5_finest"}, \
        "releases are not summarised"

    dgr = summary["dgr_k0"]
    assert dgr["seeds"] == [0, 1, 2]
    assert dgr["AP50"]["n"] == 3 and dgr["AP50"]["mean"] == pytest.approx(0.7233, abs=1e-4)
    assert dgr["AP50"]["std"] == pytest.approx(0.1124, abs=1e-4)  # sample std of 0.75, 0.82, 0.60
    paired = dgr["AP50"]["vs_plain_fpn"]  # seeds 0 and 1 only: seed 2 has no plain FPN
    assert paired["n"] == 2 and paired["mean"] == pytest.approx(0.035) and paired["std"] == pytest.approx(0.0212, 1e-2)
    assert dgr["Pd@0.5FA"]["vs_plain_fpn"]["mean"] == pytest.approx(0.015)
    assert dgr["IDF1"]["n"] == 2 and dgr["IDF1"]["vs_plain_fpn"] == {"n": 1, "mean": 0.01, "std": None}, \
        "a seed without tracking scores drops out of the tracking pairs"
    assert "vs_single_frame" not in dgr and "vs_plain_fpn" not in summary["fpn_k0"]["AP50"]

    multi = summary["fpn_k2_gap5"]
    assert "vs_plain_fpn" not in multi["AP50"], "no plain FPN with the same input frames"
    assert multi["Pd@0.5FA"]["vs_single_frame"] == {"n": 1, "mean": 0.06, "std": None}
    assert "vs_stem_stacking" not in multi["AP50"], "stem stacking is this variant itself"
    finest = summary["fpn_k2_gap5_finest"]["Pd@0.5FA"]
    assert finest["vs_stem_stacking"]["mean"] == pytest.approx(0.04)
    assert finest["vs_single_frame"]["mean"] == pytest.approx(0.10)
    simulated = summary["fpn_k0_syn20"]["AP50"]
    assert simulated["vs_real_clips_only"]["mean"] == pytest.approx(-0.02) and "vs_plain_fpn" not in simulated


def test_markdown_table_shows_means_paired_differences_and_latency_ratios():
    variants = {"fpn_k0": row(0.70, 0.80), "fpn_k0_s1": row(0.80, 0.90), "gils_k0": row(0.75, 0.85),
                "gils_k0_s1": row(0.79, 0.93)}
    for name, ratio in zip(variants, (1.0, 1.002, 1.01, 1.03)):
        variants[name]["latency_vs_plain_fpn"] = {"median": ratio}
    table = ablation.markdown_table({"variants": variants, "summary": ablation.summarise(variants)})
    header, rule, plain, gils = table.splitlines()
    assert header.count("|") == rule.count("|") == plain.count("|") == gils.count("|") == 8
    assert "1 frame" not in header, "no multi-frame variant: no column for it"
    assert plain == "| fpn_k0 | 2 | 0.750 ± 0.071 | 0.850 ± 0.071 | - | - | 1.001 |"
    assert gils == "| gils_k0 | 2 | 0.770 ± 0.028 | 0.890 ± 0.057 | - | +0.020 ± 0.042 / +0.040 ± 0.014 | 1.020 |"


def test_released_table_lists_each_release_at_every_false_alarm_rate():
    released = row(0.79, 0.9, 0.76)
    released["pd_at_false_alarms_per_frame"] = {"0.1": 0.84, "0.5": 0.9, "1.0": 0.93}
    released["latency_vs_plain_fpn"] = {"median": 1.0251}
    untracked = dict(released, tracking=None, latency_vs_plain_fpn=None)
    results = {"variants": {"fpn_k0": row(0.7, 0.8), "released bpfpn_tiny": released, "released other": untracked}}
    header, rule, first, second = ablation.released_table(results).splitlines()
    assert header == "| model | AP50 | Pd at 0.1 / 0.5 / 1 FA/frame | IDF1 | latency / plain FPN |"
    assert first == "| bpfpn_tiny | 0.790 | 0.840 / 0.900 / 0.930 | 0.760 | 1.025 |"
    assert second == "| other | 0.790 | 0.840 / 0.900 / 0.930 | - | - |"
    assert ablation.released_table({"variants": {"fpn_k0": row(0.7, 0.8)}}) == ""
