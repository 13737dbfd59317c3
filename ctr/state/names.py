"""Container ids and generated names, Docker style (`quirky_hopper`)."""

from __future__ import annotations

import os

_ADJECTIVES = (
    "admiring adoring agitated amazing angry awesome blissful bold boring brave busy charming "
    "clever cool compassionate competent confident crazy dazzling determined distracted dreamy "
    "eager ecstatic elastic elated elegant eloquent epic fervent festive flamboyant focused "
    "friendly frosty gallant gifted goofy gracious happy hardcore heuristic hopeful hungry "
    "infallible inspiring jolly jovial keen kind laughing loving lucid magical modest musing "
    "mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic "
    "pensive practical priceless quirky quizzical relaxed reverent romantic sad serene sharp "
    "silly sleepy stoic strange stupefied suspicious sweet tender thirsty trusting upbeat "
    "vibrant vigilant vigorous wizardly wonderful xenodochial youthful zealous zen"
).split()
_NAMES = (
    "albattani allen almeida babbage banach bardeen bell bhabha blackwell bohr booth borg bose "
    "brown carson cerf chandrasekhar chatelet curie darwin davinci dijkstra einstein elion "
    "engelbart euclid euler fermat fermi feynman franklin galileo gauss goldberg goodall hamilton "
    "hawking heisenberg hertz hodgkin hopper hypatia jackson jennings kalam kepler knuth lamarr "
    "lamport leakey lovelace lumiere mayer mccarthy mcclintock meitner mendel mirzakhani morse "
    "napier newton nobel noether pare pascal pasteur payne perlman pike poincare ptolemy raman "
    "ramanujan ride ritchie rosalind saha sammet shannon shockley sinoussi stallman swanson "
    "tesla thompson torvalds turing varahamihira visvesvaraya wescoff wiles williams wilson wing "
    "wozniak wright yalow yonath"
).split()


def new_id() -> str:
    """A 64-hex-digit container id, as Docker's; the first 12 make the short id."""
    return os.urandom(32).hex()  # as secrets.token_hex, without importing random at start-up


def generate_name() -> str:
    """A readable random name; callers retry on the rare clash with an existing one."""
    a, b = int.from_bytes(os.urandom(4), "little"), int.from_bytes(os.urandom(4), "little")
    return f"{_ADJECTIVES[a % len(_ADJECTIVES)]}_{_NAMES[b % len(_NAMES)]}"
