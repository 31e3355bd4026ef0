"""A seeded simulator of plate passes: a true plate, a camera read and an AI read, in production's wire form.

Each pass draws a true plate, a camera and an image quality, then lets two readers misread the plate
with their own error habits. The camera reports `regno_recognize` and `recognition_accuracy`; the AI
reports `afts_regno_ai` with its overall, per-character and per-length scores. The label says whether
the AI read equals the true plate. Everything comes from one `random.Random(seed)`, so a seed always
gives the same passes.
"""

from __future__ import annotations

import math
import random
import struct
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Callable, NamedTuple

#: The twelve Cyrillic letters Russian plates use.
PLATE_LETTERS = "АВЕКМНОРСТУХ"
#: Each plate letter and the Latin letter that looks the same.
LATIN_LOOKALIKES = dict(zip(PLATE_LETTERS, "ABEKMHOPCTYX"))
#: Digits and plate letters a reader swaps for one another.
DIGIT_LETTER = {"0": "О", "О": "0", "8": "В", "В": "8"}
#: Characters a reader mistakes for similar-looking ones.
SIMILAR = {
    "0": "8О9", "1": "74", "2": "7", "3": "85", "4": "1", "5": "63", "6": "58", "7": "12", "8": "036", "9": "0",
    "А": "ЛХ", "В": "8Р", "Е": "СК", "К": "ХН", "М": "НА", "Н": "МК", "О": "С0", "Р": "В",
    "С": "ОЕ", "Т": "У", "У": "ХТ", "Х": "КУ",
}
#: Region codes of the plates seen, with their weights: the cameras stand around Moscow.
REGION_WEIGHTS = {
    "77": 10, "97": 6, "99": 6, "177": 8, "197": 8, "199": 7, "777": 9, "797": 9, "799": 7, "977": 3,
    "50": 8, "90": 5, "150": 5, "190": 6, "750": 7, "790": 5, "78": 3, "98": 2, "178": 2, "198": 2,
    "196": 2, "02": 1, "102": 1, "123": 1, "23": 1, "93": 1, "61": 1, "161": 1, "16": 1, "116": 1,
    "52": 1, "152": 1, "54": 1, "154": 1, "66": 1, "74": 1, "174": 1, "24": 1, "63": 1, "163": 1,
    "40": 1, "71": 1, "62": 1, "69": 1, "33": 1, "76": 1, "36": 1, "31": 1, "32": 1, "57": 1,
    "67": 1, "86": 1, "186": 1, "72": 1, "47": 1, "147": 1, "37": 1, "48": 1, "68": 1, "05": 1,
}
#: Region codes readers take for one another: a digit added, dropped or misread, or a likelier code.
REGION_CONFUSIONS = {
    "777": ("797", "77", "799", "177"), "797": ("777", "197", "79"), "799": ("777", "779", "199", "79"),
    "77": ("777", "774", "177", "72"), "97": ("797", "197", "37"), "99": ("199", "799", "89"),
    "177": ("147", "777", "77"), "197": ("797", "193", "97"), "199": ("190", "198", "109", "99"),
    "190": ("198", "199", "790", "196"), "198": ("190", "199", "196"), "196": ("186", "198", "190"),
    "750": ("790", "75", "150"), "790": ("750", "190", "79"), "150": ("190", "750", "50"),
    "50": ("150", "58", "750"), "90": ("790", "190", "98"), "78": ("178", "76", "77"),
    "178": ("78", "176", "198"), "123": ("122", "23", "128"), "02": ("102", "62", "03"),
    "102": ("02", "162"), "161": ("61", "181"), "116": ("16", "118"),
}
#: Relative frequency of passes by hour of day: traffic is mostly daytime.
HOUR_WEIGHTS = (1, 0.6, 0.4, 0.3, 0.4, 0.8, 2, 4, 6, 6, 5.5, 5.5, 5.5, 5.5, 5.5, 6, 6.5, 7, 6.5, 5, 4, 3, 2, 1.5)
#: The first day of the simulated year.
YEAR_START = datetime(2021, 1, 1)
#: Share of passes kept when both readers agree: production asks the picker mostly about disagreements
#: (the customer's sample holds nothing else), but agreeing passes do reach it now and then.
AGREEING_KEPT = 0.05
#: Chance the AI sends "[]" for its character scores, the contract's quirk.
EMPTY_CHAR_SCORES = 0.002
#: Plate lengths the AI scores: 0..10.
MAX_LENGTH = 10


class WeightTable(NamedTuple):
    """Keys and their cumulative weights, ready for random.choices (saves re-summing per draw)."""

    keys: tuple
    cum_weights: tuple[float, ...]


def weight_table(weights: dict) -> WeightTable:
    """A WeightTable of a key -> weight mapping."""
    return WeightTable(tuple(weights), tuple(accumulate(weights.values())))


def _pick(rng: random.Random, table: WeightTable):
    """One key of a weight table."""
    return rng.choices(table.keys, cum_weights=table.cum_weights)[0]


_REGIONS = weight_table(REGION_WEIGHTS)
_HOURS = weight_table(dict(enumerate(HOUR_WEIGHTS)))


class Reader(NamedTuple):
    """How often a recogniser misreads, and which kinds of error it makes."""

    miss: float  # chance of a misread on a perfect image
    miss_poor: float  # extra chance on the worst image
    kinds: WeightTable  # error kind -> relative weight


class Camera(NamedTuple):
    """A camera model: its type, share of the traffic, confidence style and reader."""

    camera_class: str
    camera_type: str
    weight: float
    style: str  # how it reports recognition_accuracy: "low", "saturated" or "graded"
    reader: Reader


class Pass(NamedTuple):
    """One simulated pass: the wire record, its label and the plate really on the car."""

    record: dict
    label: int
    plate: str


def _camera_reader(unread: float = 1.0, latin: float = 0.6, miss: float = 0.08) -> Reader:
    """A camera recogniser; models differ in how often they leave characters unread or print Latin."""
    kinds = {"region": 3.0, "unread": unread, "latin": latin, "digit_letter": 1.0, "similar": 3.0, "drop": 1.2, "extra": 0.5}
    return Reader(miss, 0.55, weight_table(kinds))


#: The AI recogniser: better on average, and it leans to the commoner region codes (797 -> 777).
AI_READER = Reader(0.05, 0.45, weight_table({
    "region": 6.0, "unread": 0.05, "latin": 0.15, "digit_letter": 1.0, "similar": 3.0, "drop": 0.6, "extra": 1.0,
}))
#: Camera models with their share of passes, as in the customer's sample.
CAMERAS = (
    Camera("Астра-Трафик", "Стационарная", 34, "low", _camera_reader(miss=0.1)),
    Camera("Стрелка-Плюс", "Стационарная", 27, "saturated", _camera_reader(unread=0.3)),
    Camera("АвтоУраган-ВСМ2", "Стационарная", 19, "graded", _camera_reader(unread=6.0)),
    Camera("Стрелка-М", "Стационарная", 6, "saturated", _camera_reader(unread=0.3)),
    Camera("Форсаж", "Стационарная", 6, "graded", _camera_reader(latin=1.0)),
    Camera("Стрелка-360", "Стационарная", 4, "saturated", _camera_reader(unread=0.3)),
    Camera("Стрелка", "Передвижная", 3, "graded", _camera_reader(miss=0.12)),
    Camera("Стрит Фалькон", "Стационарная", 1, "graded", _camera_reader(latin=3.0)),
)
_CAMERAS = weight_table({camera: camera.weight for camera in CAMERAS})


def as_float32(value: float) -> float:
    """The value rounded to float32, as the recognisers report it."""
    return struct.unpack("f", struct.pack("f", value))[0]


def score_list(scores: list[float]) -> str:
    """Scores in the bracketed wire form, e.g. '[0.99, 0.87]'."""
    return "[" + ", ".join(repr(as_float32(score)) for score in scores) + "]"


def _letters(rng: random.Random, count: int) -> str:
    """count random plate letters."""
    return "".join(rng.choice(PLATE_LETTERS) for _ in range(count))


def _digits(rng: random.Random, count: int, lowest: int = 1) -> str:
    """A zero-padded number of count digits, at least lowest (plates have no number 000)."""
    return str(rng.randint(lowest, 10**count - 1)).zfill(count)


def _region(rng: random.Random) -> str:
    """A region code, weighted toward Moscow and its oblast."""
    return _pick(rng, _REGIONS)


# Plate formats: a name, a weight and a builder returning (plate without region, region). Every
# plate falls in one of the contract's categories, though not always the one its name suggests:
# a trailer with a two-digit region matches the taxi row first, as in the team's code.
PlateBuilder = Callable[[random.Random], tuple[str, str]]
PLATE_FORMATS: tuple[tuple[str, float, PlateBuilder], ...] = (
    ("private car", 86.0, lambda r: (_letters(r, 1) + _digits(r, 3) + _letters(r, 2), _region(r))),
    ("taxi", 4.0, lambda r: (_letters(r, 2) + _digits(r, 3), _region(r))),
    ("trailer", 2.5, lambda r: (_letters(r, 2) + _digits(r, 4), _region(r))),
    ("motorcycle", 2.0, lambda r: (_digits(r, 4) + _letters(r, 2), _region(r))),
    ("transit", 1.5, lambda r: (_letters(r, 2) + _digits(r, 3) + _letters(r, 1), _region(r))),
    ("police car", 1.0, lambda r: (_letters(r, 1) + _digits(r, 4), _region(r))),
    ("police motorcycle", 0.4, lambda r: (_digits(r, 4) + _letters(r, 1), _region(r))),
    ("police trailer", 0.3, lambda r: (_digits(r, 3) + _letters(r, 1), _region(r))),
    ("diplomatic", 1.0, lambda r: (_digits(r, 3) + r.choice(("CD", "D", "T")) + _digits(r, 1), _region(r))),
    ("export", 0.5, lambda r: ("Т" + _letters(r, 2) + _digits(r, 3), _region(r))),
    ("old private", 0.3, lambda r: (_letters(r, 1) + _digits(r, 4) + _letters(r, 2), "")),
)
_FORMATS = weight_table({build: weight for _, weight, build in PLATE_FORMATS})


def true_plate(rng: random.Random) -> tuple[str, str]:
    """A true plate and its region code ('' for formats without one)."""
    build = _pick(rng, _FORMATS)
    body, region = build(rng)
    return body + region, region


# A read is a list of (character, correct) tokens, so the AI can score the wrong characters low.
Tokens = list[tuple[str, bool]]


def _positions(tokens: Tokens, allowed) -> list[int]:
    """Indexes of the tokens whose character is in allowed."""
    return [i for i, (char, _) in enumerate(tokens) if char in allowed]


def _replace_at(rng: random.Random, tokens: Tokens, table) -> bool:
    """Replace one character found in table by its counterpart; False if none can be."""
    places = _positions(tokens, table)
    if not places:
        return False
    i = rng.choice(places)
    tokens[i] = (rng.choice(table[tokens[i][0]]), False)
    return True


def _confuse_region(rng: random.Random, tokens: Tokens, region: str) -> bool:
    """Replace the region code by one readers confuse it with; False if it has none."""
    start = len(tokens) - len(region)
    if not region or region not in REGION_CONFUSIONS or "".join(c for c, _ in tokens[start:]) != region:
        return False
    other = rng.choice(REGION_CONFUSIONS[region])
    if start + len(other) > MAX_LENGTH:  # the AI scores lengths up to 10 only
        return False
    kept = [ok for _, ok in tokens[start:]]
    # Characters that still match in place stay correct; changed or added ones are wrong.
    tokens[start:] = [(c, i < len(region) and c == region[i] and kept[i]) for i, c in enumerate(other)]
    return True


def _unread(rng: random.Random, tokens: Tokens) -> bool:
    """Mark one character unread, '_'."""
    i = rng.randrange(len(tokens))
    tokens[i] = ("_", False)
    return True


def _drop(rng: random.Random, tokens: Tokens) -> bool:
    """Lose one character, most often at the edges where plates are cut off."""
    if len(tokens) < 2:
        return False
    i = rng.choice((0, len(tokens) - 1)) if rng.random() < 0.6 else rng.randrange(len(tokens))
    del tokens[i]
    return True


def _extra(rng: random.Random, tokens: Tokens) -> bool:
    """Add one character: a doubled neighbour or a stray digit, most often at the end."""
    if len(tokens) >= MAX_LENGTH:
        return False
    i = len(tokens) if rng.random() < 0.6 else rng.randrange(len(tokens) + 1)
    char = tokens[i - 1][0] if i and rng.random() < 0.5 else str(rng.randrange(10))
    tokens.insert(i, (char, False))
    return True


def _error(rng: random.Random, tokens: Tokens, region: str, kind: str) -> bool:
    """Apply one error of the given kind; False if the plate offers no place for it."""
    if kind == "region":
        return _confuse_region(rng, tokens, region)
    if kind == "latin":
        return _replace_at(rng, tokens, LATIN_LOOKALIKES)
    if kind == "digit_letter":
        return _replace_at(rng, tokens, DIGIT_LETTER)
    if kind == "similar":
        return _replace_at(rng, tokens, SIMILAR)
    return {"unread": _unread, "drop": _drop, "extra": _extra}[kind](rng, tokens)


def read_plate(rng: random.Random, plate: str, region: str, reader: Reader, quality: float) -> Tokens:
    """One reader's tokens for the plate: correct on a good image, more errors on a poor one."""
    tokens = [(char, True) for char in plate]
    if rng.random() >= reader.miss + reader.miss_poor * (1.0 - quality) ** 1.5:
        return tokens
    errors = rng.choices((1, 2, 3), weights=(0.7, 0.2 + 0.3 * (1 - quality), 0.1 + 0.3 * (1 - quality)))[0]
    made = 0
    for _ in range(errors * 4):  # a kind that finds no place is retried with another
        made += _error(rng, tokens, region, _pick(rng, reader.kinds))
        if made == errors:
            break
    return tokens


def _text(tokens: Tokens) -> str:
    """The read plate as a string."""
    return "".join(char for char, _ in tokens)


def _sure(rng: random.Random, low: float, high: float) -> float:
    """A score just below 1: 1 - 10**u with u uniform in [low, high]."""
    return 1.0 - 10.0 ** rng.uniform(low, high)


def char_scores(rng: random.Random, tokens: Tokens, quality: float) -> list[float]:
    """The AI's per-character scores: near 1 on right characters, lower (but noisy) on wrong ones."""
    doubt = 0.02 + 0.2 * (1.0 - quality)  # right characters the AI still hesitates over
    scores = []
    for _, correct in tokens:
        if correct:
            scores.append(rng.uniform(0.35, 0.99) if rng.random() < doubt else _sure(rng, -6.0, -2.5))
        elif rng.random() < 0.22:  # confidently wrong
            scores.append(_sure(rng, -4.0, -1.3))
        else:
            scores.append(rng.betavariate(2.5, 1.6) * 0.97)
    return scores


def length_scores(rng: random.Random, read_len: int, true_len: int, quality: float) -> list[float]:
    """The AI's probability for each plate length 0..10: peaked at the read length, less sure if it is off."""
    scores = [10.0 ** rng.uniform(-11.0, -7.0) for _ in range(MAX_LENGTH + 1)]
    read_len = min(read_len, MAX_LENGTH)
    if read_len != true_len and rng.random() < 0.8:
        peak, runner_up = rng.uniform(0.52, 0.97), min(true_len, MAX_LENGTH)
    elif rng.random() < 0.04 + 0.15 * (1.0 - quality):
        peak, runner_up = rng.uniform(0.6, 0.995), read_len + rng.choice((-1, 1))
    else:
        peak, runner_up = _sure(rng, -9.0, -3.5), read_len + rng.choice((-1, 1))
    runner_up = max(0, min(MAX_LENGTH, runner_up))
    scores[read_len] = peak
    if runner_up != read_len:
        # The runner-up takes the mass the peak leaves, so the scores sum to about 1 like a softmax.
        rest = sum(scores) - peak - scores[runner_up]
        scores[runner_up] = max(1.0 - peak - rest, scores[runner_up])
    return scores


def ai_score(rng: random.Random, chars: list[float], lengths: list[float]) -> float:
    """The AI's overall confidence: the product of its character scores and its length score, with noise."""
    product = math.prod(chars) * max(lengths)
    return min(1.0, max(0.0, product * math.exp(rng.gauss(0.0, 0.04))))


def camera_accuracy(rng: random.Random, style: str, correct: bool) -> float:
    """recognition_accuracy 0..100 in the camera model's style; lower, on average, when the read is wrong."""
    if style == "low":  # Астра-Трафик reports small numbers that still rank its reads
        value = rng.triangular(2.0, 25.0, 14.0) if correct else rng.triangular(0.3, 25.0, 5.0)
        return round(min(value, 25.0), 6)
    if style == "saturated":  # Стрелка models say 99 most of the time, right or wrong
        if rng.random() < (0.75 if correct else 0.45):
            return 99.0
        return float(round(rng.uniform(85.0, 100.0) if correct else rng.uniform(55.0, 98.0)))
    value = rng.gauss(90.0, 5.0) if correct else rng.gauss(79.0, 10.0)
    return float(round(min(100.0, max(30.0, value))))


def pass_time(rng: random.Random) -> datetime:
    """A moment of the simulated year, hours weighted toward daytime."""
    hour = _pick(rng, _HOURS)
    day = rng.randrange(365)
    return YEAR_START + timedelta(days=day, hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))


def image_quality(rng: random.Random, when: datetime, camera: Camera, direction: int) -> float:
    """How readable the plate is, 0..1: worse at night, from mobile cameras and from behind."""
    quality = rng.betavariate(5.0, 1.6)
    if when.hour < 6 or when.hour >= 22:
        quality *= 0.8
    if camera.camera_type == "Передвижная":
        quality *= 0.9
    return quality * (0.95 if direction else 1.0)


class _Reads(NamedTuple):
    """A pass before the recognisers report on it: where and when, the plate, and both reads."""

    camera: Camera
    when: datetime
    direction: int
    plate: str
    quality: float
    cam: Tokens
    ai: Tokens


def _reads(rng: random.Random) -> _Reads:
    """Draw a pass and let both recognisers read its plate."""
    camera = _pick(rng, _CAMERAS)
    when, direction = pass_time(rng), rng.randrange(2)
    plate, region = true_plate(rng)
    quality = image_quality(rng, when, camera, direction)
    cam = read_plate(rng, plate, region, camera.reader, quality)
    return _Reads(camera, when, direction, plate, quality, cam, read_plate(rng, plate, region, AI_READER, quality))


def _record(rng: random.Random, reads: _Reads) -> dict:
    """The wire record of a pass: both reads with their confidences, in production's types."""
    cam, ai = _text(reads.cam), _text(reads.ai)
    chars = char_scores(rng, reads.ai, reads.quality)
    lengths = length_scores(rng, len(ai), len(reads.plate), reads.quality)
    return {
        "regno_recognize": cam,
        "afts_regno_ai": ai,
        "recognition_accuracy": camera_accuracy(rng, reads.camera.style, cam == reads.plate),
        "afts_regno_ai_score": as_float32(ai_score(rng, chars, lengths)),
        "afts_regno_ai_char_scores": "[]" if rng.random() < EMPTY_CHAR_SCORES else score_list(chars),
        "afts_regno_ai_length_scores": score_list(lengths),
        "camera_type": reads.camera.camera_type,
        "camera_class": reads.camera.camera_class,
        "time_check": reads.when.strftime("%Y-%m-%d %H:%M:%S"),
        "direction": reads.direction,
    }


def simulate_pass(rng: random.Random) -> Pass:
    """One pass as production sends it to the picker: mostly ones where the readers disagree."""
    while True:
        reads = _reads(rng)
        # Decide before building the record: most draws are agreements and are thrown away.
        if _text(reads.cam) != _text(reads.ai) or rng.random() < AGREEING_KEPT:
            break
    record = _record(rng, reads)
    return Pass(record, int(record["afts_regno_ai"] == reads.plate), reads.plate)


def simulate(n: int, seed: int) -> list[Pass]:
    """n passes with their true plates, the same for the same seed."""
    rng = random.Random(seed)
    return [simulate_pass(rng) for _ in range(n)]


def simulate_passes(n: int, seed: int) -> list[tuple[dict, int]]:
    """n (record, label) pairs; label is 1 iff the AI read is the true plate."""
    return [(p.record, p.label) for p in simulate(n, seed)]


def simulate_records(n: int, seed: int) -> list[dict]:
    """n wire records, for load tests."""
    return [p.record for p in simulate(n, seed)]
