from benchmarks.update_readme import BLOCKS, GENERATED, README, render


def test_readme_results_match_the_benchmark_json():
    text = README.read_text()
    for name in (*BLOCKS, *GENERATED):
        assert f"<!-- results:{name} -->" in text and f"<!-- /results:{name} -->" in text
    assert render(text) == text, "README figures differ: run python -m benchmarks.update_readme"
