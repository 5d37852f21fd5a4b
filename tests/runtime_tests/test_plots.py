"""The Pareto plot's point labels: short enough to read beside their points."""

from llamaport.runtime_tests.plots import _short_labels


def test_labels_drop_the_calibration_note_and_the_shared_prefix():
    labels, prefix = _short_labels(["et-xnnpack-8da4w-g128 (calibrated on calibration.txt x16)",
                                    "et-xnnpack-8da8w", "et-xnnpack-8da4w-g32-keep8x2"])
    assert prefix == "et-xnnpack-"
    assert labels == ["8da4w-g128", "8da8w", "8da4w-g32-keep8x2"]
    assert _short_labels(["et-xnnpack-8da8w"]) == (["et-xnnpack-8da8w"], "")

