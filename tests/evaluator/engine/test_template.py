from evaluator.engine.template import fill, format_value


def test_every_occurrence_is_filled() -> None:
    record = {"qname": "example.com", "sum": 120.0}
    text = fill("Observed ${sum} NXDomain responses for ${qname} (${qname}, ${ sum })", record)
    assert text == "Observed 120 NXDomain responses for example.com (example.com, 120)"


def test_dotted_names_reach_nested_values_and_flat_keys_win() -> None:
    record = {"objectRef": {"namespace": "kube-system"}, "user.username": "alice"}
    assert fill("${user.username} in ${objectRef.namespace}", record) == "alice in kube-system"


def test_unknown_variables_stay_visible() -> None:
    assert fill("${missing} and ${qname}", {"qname": "a"}) == "${missing} and a"


def test_value_formatting() -> None:
    assert format_value(2.5) == "2.5"
    assert format_value(3.0) == "3"
    assert format_value(None) == ""
    assert format_value(["b", "a"]) == '["b", "a"]'
    assert format_value(True) == "true"
