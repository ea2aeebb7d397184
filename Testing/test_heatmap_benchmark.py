"""benchmarks/heatmap.py: development pictures asked for by name never silently become a simulated-only table."""

import re
from argparse import Namespace

import pytest


@pytest.fixture(scope="module")
def heatmap(benchmark_script):
    return benchmark_script("heatmap")


@pytest.mark.parametrize("asked", [{"scenes": ["S01", "S05"], "sources": None},
                                   {"scenes": None, "sources": ["development"]}])
def test_development_pictures_asked_for_without_the_data_is_an_error_that_names_the_folder(heatmap, tmp_path, asked):
    args = Namespace(data=str(tmp_path), noise_seeds=[11], anatomies=[101], **asked)
    with pytest.raises(SystemExit, match=f"no development data at {re.escape(str(tmp_path))}.*give --data"):
        next(heatmap.sources(args))
