"""Language consistency of the chain of thought, as the DeepSeek-R1 report defines it.

The reward is the share of the words of the chain of thought that are in the
target language. What counts as a word:

- Han, Kana and Thai are written without spaces, so each character is one word.
- Every other script counts one word per run of its letters (Latin, Cyrillic,
  Hangul, Arabic, Greek, Hebrew, Devanagari).
- Language-neutral text is removed first and counts neither way: numbers, math
  ($…$, $$…$$, \\(…\\), \\[…\\], bare LaTeX commands such as \\frac), code (fenced
  blocks, `inline code`, snake_case, camelCase, dotted.names, calls like f(x)),
  and single Latin or Greek letters (variables such as x or α). Other symbols
  (=, ≤, ∑, emoji) match no script and are ignored.

Most languages are decided by their script: zh by Han, ja by Han and Kana, ko by
Hangul, ru/uk/bg… by Cyrillic, ar/fa/ur by Arabic, and so on; English by Latin
letters. Script cannot tell zh from Han-only ja, or ru from uk. Latin-script
languages other than English (de, fr, es, …) are told apart by py3langid, run on
one sentence of Latin words at a time and restricted to the common Latin-script
languages, so a German chain of thought that drifts into English sentences loses
those words.
"""

import copy
import re
from collections import Counter
from functools import lru_cache

from .base import Reward, Sample
from .extract import think_text

UNSUPPORTED = "unsupported target language"
# Longer chains of thought are judged on their first and last 100,000 characters.
MAX_CHARS = 200_000

# Math and code spans say nothing about the language. Each alternative ends at
# its closer or at the end of the text (\Z), so an unclosed "$$" or "```" costs
# one linear scan instead of one scan per opener.
_NEUTRAL_SPANS = re.compile(
    r"""
      ```.*?(?:```|\Z)                      # fenced code
    | ~~~.*?(?:~~~|\Z)
    | `[^`\n]*`                             # inline code
    | \$\$.*?(?:\$\$|\Z)                    # display math
    | \\\[.*?(?:\\\]|\Z)
    | \\\(.*?(?:\\\)|\Z)
    | \$[^$\n]*\$                           # inline math, within one line
    """,
    re.DOTALL | re.VERBOSE,
)

_LATIN_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff\u0300-\u036f"
# A Latin word: two or more letters (a single letter is a variable, unless
# elided as in l'aire), apostrophes inside allowed, and not part of code or
# LaTeX: the look-arounds leave out \commands, snake_case, identifiers with
# digits, dotted.names, calls like print( and camelCase. A word never starts
# inside another, so each run of letters is read once (linear time).
_L = _LATIN_LETTERS
_LATIN_WORD = (
    rf"(?<![{_L}0-9_.\\'’])"  # not inside a word, an identifier or after a backslash
    r"(?![A-Za-z]*[a-z][A-Z])"  # not camelCase
    rf"(?:[{_L}]{{2,}}|[{_L}](?=['’][{_L}]))(?:['’][{_L}]+)*"
    rf"(?![{_L}0-9_(]|\.[A-Za-z_])"  # not followed by more identifier, a call or a dotted name
)
_OTHER_SCRIPT_RUNS = (
    r"(?P<han>[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+)"
    r"|(?P<kana>[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]+)"
    r"|(?P<thai>[\u0e00-\u0e7f]+)"
    r"|(?P<hangul>[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]+)"
    r"|(?P<cyrillic>[\u0400-\u052f]+)"
    r"|(?P<arabic>[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]+)"
    r"|(?P<greek>[\u0370-\u03ff\u1f00-\u1fff]+)"
    r"|(?P<hebrew>[\u0590-\u05ff]+)"
    r"|(?P<devanagari>[\u0900-\u097f]+)"
)
_LATIN_WORDS = re.compile(_LATIN_WORD)
_OTHER_SCRIPTS = re.compile(_OTHER_SCRIPT_RUNS)
# Any letter of a non-Latin script: most English chains of thought have none, and skip a pass.
_ANY_OTHER_SCRIPT = re.compile(
    "[" + "".join(re.findall(r"\[([^\]]+)\]", _OTHER_SCRIPT_RUNS)) + "]"
)
# Words of every script in order, with sentence ends, for the detector.
_WORDS_AND_STOPS = re.compile(
    rf"(?P<latin>{_LATIN_WORD})|{_OTHER_SCRIPT_RUNS}|(?P<stop>[.!?;:](?=\s|\Z)|[\n。！？；：])"
)
PER_CHARACTER = {"han", "kana", "thai"}  # no spaces between words: each character is a word
SKIP_SINGLE_LETTERS = {"greek"}  # α, π are variables, not words (Latin: see _LATIN_WORD)

# Languages decided by script alone.
SCRIPT_OF_LANGUAGE = {
    "en": {"latin"},
    "zh": {"han"},
    "ja": {"han", "kana"},
    "ko": {"hangul"},
    "th": {"thai"},
    "el": {"greek"},
    "he": {"hebrew"},
    **{lang: {"cyrillic"} for lang in ("ru", "uk", "bg", "be", "mk", "sr", "kk", "ky", "mn", "tg", "tt", "ba")},
    **{lang: {"arabic"} for lang in ("ar", "fa", "ur", "ps", "ug", "ku", "arz", "ary")},
    **{lang: {"devanagari"} for lang in ("hi", "mr", "ne", "sa")},
}

# The detector chooses among these (plus the target): fewer candidates, fewer
# confusions on short sentences (py3langid alone may call a German sentence Luxembourgish).
COMMON_LATIN = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "tr", "vi", "id", "sv", "da",
                "no", "fi", "cs", "ro", "hu", "ca")
# Every Latin-script language py3langid knows: the targets the detector handles.
DETECTED_LATIN = frozenset(COMMON_LATIN) - {"en"} | {
    "af", "az", "br", "bs", "cy", "eo", "et", "eu", "fo", "fy", "ga", "gd", "gl", "hr", "ht", "is",
    "jv", "la", "lb", "lt", "lv", "mg", "ms", "mt", "nn", "oc", "qu", "rw", "se", "sk", "sl", "sn",
    "so", "sq", "st", "sw", "tl", "tk", "uz", "wa", "xh", "yo", "zu"}
MIN_SENTENCE_WORDS = 3  # shorter sentences ("Okay.", "Wait,") join the next one
MAX_SENTENCE_WORDS = 40


def language_consistency(sample: Sample, *, target: str | None = None) -> Reward:
    """Share of the chain-of-thought words written in the target language (default sample.language)."""
    lang = normalize_language(target or sample.language)
    text = think_text(sample.completion)
    if not text.strip():
        return Reward.zero("empty chain of thought", target=lang, words=0)
    details = {"target": lang}
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS // 2] + "\n" + text[-MAX_CHARS // 2:]
        details["judged_chars"] = MAX_CHARS

    if lang in SCRIPT_OF_LANGUAGE:
        counts, latin_languages = script_counts(text), None
        in_target = sum(counts[script] for script in SCRIPT_OF_LANGUAGE[lang])
    elif lang in DETECTED_LATIN:
        counts, latin_languages = _counts_with_detector(text, lang)
        in_target = latin_languages.get(lang, 0)
    else:
        return Reward.zero(f"{UNSUPPORTED} {lang!r}", target=lang, words=0)

    words = sum(counts.values())
    details.update(words=words, in_target=in_target, counts=dict(counts))
    if latin_languages is not None:
        details["latin_languages"] = dict(latin_languages)
    if words == 0:
        return Reward.zero("no words in the chain of thought (only numbers, math, code or symbols)", **details)
    share = in_target / words
    details["share"] = round(share, 4)
    return Reward(share, details)


def normalize_language(tag: str) -> str:
    """'zh-CN' → 'zh', 'en_US' → 'en', 'DE' → 'de'."""
    return re.split(r"[-_]", (tag or "").strip().lower(), maxsplit=1)[0]


def script_counts(text: str) -> Counter:
    """Words per script in text, language-neutral parts left out."""
    text = _NEUTRAL_SPANS.sub(" ", text)
    counts = Counter()
    latin = len(_LATIN_WORDS.findall(text))
    if latin:
        counts["latin"] = latin
    if _ANY_OTHER_SCRIPT.search(text):
        for m in _OTHER_SCRIPTS.finditer(text):
            _add_run(counts, m.lastgroup, m.group())
    return counts


def _add_run(counts: Counter, script: str, run: str) -> None:
    if script in PER_CHARACTER:
        counts[script] += len(run)
    elif len(run) > 1 or script not in SKIP_SINGLE_LETTERS:
        counts[script] += 1


def _counts_with_detector(text: str, target: str) -> tuple[Counter, Counter]:
    """Script counts, plus the Latin words split by language, one sentence at a time."""
    counts, sentences, current = Counter(), [], []
    for m in _WORDS_AND_STOPS.finditer(_NEUTRAL_SPANS.sub(" ", text)):
        script = m.lastgroup
        if script == "latin":
            current.append(m.group())
            counts["latin"] += 1
            continue
        # A sentence end or a word in another script closes the Latin sentence.
        if len(current) >= MIN_SENTENCE_WORDS:
            sentences.append(current)
            current = []
        if script != "stop":
            _add_run(counts, script, m.group())
    if current:
        sentences.append(current)

    identify = _identifier(target)
    latin_languages = Counter()
    for sentence in sentences:
        for start in range(0, len(sentence), MAX_SENTENCE_WORDS):
            chunk = sentence[start:start + MAX_SENTENCE_WORDS]
            latin_languages[identify(" ".join(chunk))[0]] += len(chunk)
    return counts, latin_languages


@lru_cache(maxsize=1)
def _base_identifier():
    """py3langid's bundled model (about 0.5 s to load, once per process)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


@lru_cache(maxsize=32)
def _identifier(target: str):
    """The detector restricted to COMMON_LATIN and the target; the shared model is never changed."""
    restricted = copy.copy(_base_identifier())
    restricted.set_languages(sorted({*COMMON_LATIN, target}))
    return restricted.classify
