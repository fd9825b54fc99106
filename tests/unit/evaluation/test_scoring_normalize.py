"""Official VQA answer normalisation."""

import pytest

from msl_ablate.evaluation.scoring.normalize import (
    normalize_answer,
    process_digit_article,
    process_punctuation,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("two", "2"),
        ("Two", "2"),
        ("none", "0"),
        ("a dog", "dog"),
        ("The Dog", "dog"),
        ("an apple", "apple"),
        ("dog.", "dog"),
        ("Dog!", "dog"),
        ("yes, it is", "yes it is"),
        ("3.5", "3.5"),  # a period before a digit is kept
        ("it is 3.5.", "it is 3.5"),  # ...but a trailing one goes
        ("1,000", "1000"),
        ("dont", "don't"),
        ("isnt", "isn't"),
        ("couldnt've", "couldn't've"),
        ("its", "its"),  # a real word, not rewritten
        ("ice-cream", "ice cream"),  # punctuation not beside a space becomes a space
        ("black and white\n", "black and white"),
        ("  red\tcar ", "red car"),
        ("dog's", "dog 's"),  # EvalAI tokenisation splits the possessive off
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_punctuation_rule_depends_on_spaces_and_digit_commas() -> None:
    # "-" beside a space is deleted; otherwise it becomes a space.
    assert process_punctuation("a - b") == "a  b"
    assert process_punctuation("a-b") == "a b"
    # A comma between digits anywhere makes every mark deletable.
    assert process_punctuation("1,000 a-b") == "1000 ab"


def test_digit_article_collapses_whitespace() -> None:
    assert process_digit_article("the  three   cats") == "3 cats"
