"""Official VQA answer normalisation (VQA ``vqaEval.py`` / LLaVA's ``EvalAIAnswerProcessor``).

The steps, in the order the official processor applies them:

1. *Tokenise*: lowercase, drop ``,`` and ``?``, split the possessive ``'s`` off (``"dog's"`` ->
   ``"dog 's"``), strip. (This is the EvalAI/m4c pre-step LLaVA applies to every prediction.)
2. Newlines and tabs become spaces; strip.
3. *Punctuation*: each mark in :data:`PUNCTUATION` is deleted when the original text has it next
   to a space (``"p "`` or ``" p"``) or contains a comma between digits; otherwise it becomes a
   space. Then periods not followed by a digit are deleted (``"3.5"`` keeps its period).
4. *Digits and articles*: lowercase, split on whitespace, number words become digits
   (``"two"`` -> ``"2"``, ``"none"`` -> ``"0"``), the articles ``a``, ``an``, ``the`` are
   dropped, apostrophe-less contractions are restored (``"dont"`` -> ``"don't"``), and the
   words are joined with single spaces.
"""

from __future__ import annotations

import re

PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
    ",", "?", "!",
)  # fmt: skip

NUMBER_WORDS: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})


_NOT_MAPPED = frozenset(
    {"its", "hell", "shell", "well", "were", "id", "ill", "shed", "wed", "lets", "im", "ive"}
)


def _contractions() -> dict[str, str]:
    """Build the map from apostrophe-less spellings to the contraction (``"dont"`` -> ``"don't"``)."""
    words = [
        "ain't", "aren't", "can't", "could've", "couldn't", "couldn't've", "didn't", "doesn't",
        "don't", "hadn't", "hadn't've", "hasn't", "haven't", "he'd", "he'd've", "he'll", "he's",
        "how'd", "how'll", "how's", "i'd", "i'd've", "i'll", "i'm", "i've", "isn't", "it'd",
        "it'd've", "it'll", "it's", "let's", "ma'am", "mightn't", "mightn't've", "might've",
        "mustn't", "must've", "needn't", "not've", "o'clock", "oughtn't", "shan't", "she'd",
        "she'd've", "she'll", "she's", "should've", "shouldn't", "shouldn't've", "somebody'd",
        "somebody'd've", "somebody'll", "somebody's", "someone'd", "someone'd've", "someone'll",
        "someone's", "something'd", "something'd've", "something'll", "that's", "there'd",
        "there'd've", "there're", "there's", "they'd", "they'd've", "they'll", "they're",
        "they've", "'twas", "wasn't", "we'd", "we'd've", "we'll", "we're", "we've", "weren't",
        "what'll", "what're", "what's", "what've", "when's", "where'd", "where's", "where've",
        "who'd", "who'd've", "who'll", "who's", "who've", "why'll", "why're", "why's", "won't",
        "would've", "wouldn't", "wouldn't've", "y'all", "y'all'll", "y'all'd've", "you'd",
        "you'd've", "you'll", "you're", "you've",
    ]  # fmt: skip
    table: dict[str, str] = {}
    for word in words:
        bare = word.replace("'", "")
        # Like the official map, skip spellings that are real words ("its", "well", "shed"...)
        # or that it lists only capitalised ("Im", "Ive"), which never match lowercased text.
        if bare in _NOT_MAPPED:
            continue
        table[bare] = word
        # Double contractions are also written with only the first apostrophe dropped.
        if word.count("'") == 2:
            first, rest = word.split("'", 1)
            table[first + rest] = word
            table[first + "'" + rest.replace("'", "")] = word
    return table


CONTRACTIONS: dict[str, str] = _contractions()

# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a look-*ahead* that can never
# fail at a '.', so in effect it deletes every period that is not followed by a digit.
_PERIOD_STRIP = re.compile(r"\.(?!\d)")
# The official call passes re.UNICODE (== 32) positionally as `count`: at most 32 periods go.
_PERIOD_STRIP_COUNT = int(re.UNICODE)
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")


def tokenize(text: str) -> str:
    """EvalAI pre-step: lowercase, drop ``,``/``?``, split off ``'s``, strip."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's")
    return text.strip()


def process_punctuation(text: str) -> str:
    """Apply the official punctuation rules (see module docstring, step 3).

    Args:
        text: Answer text.

    Returns:
        The text with punctuation removed or replaced by spaces.
    """
    out = text
    # The condition looks at the *original* text for every mark, as the official code does.
    digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for mark in PUNCTUATION:
        if (mark + " " in text) or (" " + mark in text) or digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """Apply the official number-word, article and contraction rules (step 4).

    Args:
        text: Answer text.

    Returns:
        Space-joined words with numbers as digits, no articles, contractions restored.
    """
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """Normalise an answer the way the official VQA / TextVQA evaluation does.

    Args:
        text: Raw answer (model prediction or annotator answer).

    Returns:
        The normalised answer, e.g. ``"Two dogs."`` -> ``"2 dogs"``, ``"A dog"`` -> ``"dog"``.
    """
    text = tokenize(text)
    text = text.replace("\n", " ").replace("\t", " ").strip()
    text = process_punctuation(text)
    return process_digit_article(text)
