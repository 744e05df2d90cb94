from benchmarks.update_readme import README, render


def test_readme_results_match_the_benchmark_json():
    text = README.read_text()
    assert "<!-- results:data_layer -->" in text
    assert render(text) == text, "README figures differ: run python -m benchmarks.update_readme"
