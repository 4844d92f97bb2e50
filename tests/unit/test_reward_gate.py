from alignops.stages.reward import quality_gate


def test_gate_passes_a_model_above_the_floor_and_the_length_baseline() -> None:
    assert quality_gate(accuracy=0.70, length_baseline=0.55, floor=0.6) == []


def test_gate_names_the_floor_and_the_shortfall() -> None:
    (reason,) = quality_gate(accuracy=0.58, length_baseline=0.50, floor=0.60)
    assert "0.580" in reason and "floor 0.600" in reason and "0.020" in reason


def test_gate_refuses_a_model_no_better_than_longer_wins() -> None:
    reasons = quality_gate(accuracy=0.62, length_baseline=0.64, floor=0.60)
    assert len(reasons) == 1 and "longer-response-wins" in reasons[0] and "0.020" in reasons[0]


def test_the_length_baseline_check_is_one_of_the_bias_checks() -> None:
    # turned off knowingly (reward.bias_checks=false) it goes with the others; the accuracy floor stays
    assert quality_gate(accuracy=0.62, length_baseline=0.64, floor=0.60, bias_checks=False) == []
    (reason,) = quality_gate(accuracy=0.58, length_baseline=0.64, floor=0.60, bias_checks=False)
    assert "floor" in reason
