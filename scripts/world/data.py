#!/usr/bin/env python3
"""The reference world's data stage: tasks and pretraining text, made only
from what Debian packages ship (see world/README.md for each source).

Writes, under OUT (default world/):
  tasks.json, tasks/TASK/{train,test}.jsonl      the 45 tasks
  .work/corpus.txt                               the base's pretraining text
  .work/retriever.jsonl                          {"task","input"} of seen tasks
Deterministic for --seed: every choice below goes through one seeded RNG
per task, and every source is read in sorted order.
"""
import argparse, gzip, json, os, random, re, sys

WN = "/usr/share/wordnet"
FORTUNES = "/usr/share/games/fortunes"
MISC = "/usr/share/misc"
ACRONYMS = ["/usr/share/games/bsdgames/acronyms", "/usr/share/games/bsdgames/acronyms.comp"]

ALPACA = ("Below is an instruction that describes a task. "
          "Write a response that appropriately completes the request.\n\n"
          "### Instruction:\n{instruction}\n\n### Response:\n")

# up to 3000 training examples a task: at 400, adapters learnt their
# training words (docs/TRAINING.md, "More training rows per adapter");
# 3000 keeps world/ under its 60 MiB
N_TRAIN, N_TEST = 3000, 60
# the rows that drew their templates before the test rows did, when the
# split held 400 (kept, so the test sets and the retriever's rows stay as
# they were and scores compare across world versions)
N_FIRST = 400
EOT = "<|endoftext|>"
FACT_REPEATS = 4


# ---------------------------------------------------------------- sources

def wordnet_synsets(pos):
    """(words, gloss, pointers) of every synset of data.POS, in file order."""
    out = []
    with open(f"{WN}/data.{pos}", encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            head, _, gloss = line.partition(" | ")
            p = head.split()
            n = int(p[3], 16)
            words = [p[4 + 2 * i].lower() for i in range(n)]
            words = [re.sub(r"\(.*\)$", "", w) for w in words]
            k = 4 + 2 * n
            np_ = int(p[k])
            ptrs = []
            for i in range(np_):
                sym, off, ppos, st = p[k + 1 + 4 * i: k + 5 + 4 * i]
                ptrs.append((sym, int(off), ppos, st))
            gloss = gloss.strip()
            out.append((int(p[0]), words, gloss, ptrs))
    return out


def wordnet_exc(pos):
    m = {}
    with open(f"{WN}/{pos}.exc", encoding="latin-1") as f:
        for line in f:
            p = line.split()
            if len(p) >= 2:
                m.setdefault(p[1], p[0])
    return m


def primary_domain_words(pos):
    """{lexicographer file number: sorted plain words whose most frequent
    sense (the first synset index.POS lists) is in that file}: nouns of
    animals ("05"), verbs of motion ("38"), ..."""
    lex = {}
    with open(f"{WN}/data.{pos}", encoding="latin-1") as f:
        for line in f:
            if not line.startswith("  "):
                p = line.split()
                lex[int(p[0])] = p[1]
    out = {}
    with open(f"{WN}/index.{pos}", encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            p = line.split()
            if plain(p[0]):
                out.setdefault(lex[int(p[-int(p[2])])], []).append(p[0])
    return {k: sorted(v) for k, v in out.items()}


def plain(w):
    return re.fullmatch(r"[a-z]{3,12}", w) is not None


def fortunes_text():
    """Every fortune of the fortunes packages, one per entry, in file order."""
    out = []
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if "." in name or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, encoding="latin-1") as f:
            for entry in f.read().split("\n%\n"):
                entry = " ".join(entry.split())
                if 20 <= len(entry) <= 600:
                    out.append(entry)
    return out


def countries():
    rows = []
    with gzip.open(f"{MISC}/countries.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            p = line.rstrip("\n").split(":")
            if len(p) >= 5 and p[3] and p[4] and p[4] not in ("", "-") and p[3].isascii() and p[4].isascii():
                rows.append({"iso2": p[1], "iso3": p[2], "name": p[3], "capital": p[4]})
    return rows


def currencies():
    rows = []
    with gzip.open(f"{MISC}/currency.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            p = line.rstrip("\n").split(":")
            if len(p) >= 3 and re.fullmatch(r"[A-Z]{3}", p[0]) and p[2].isascii():
                rows.append((p[2].strip(), p[0]))
    return rows


def languages():
    rows = []
    with gzip.open(f"{MISC}/languages.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            p = line.rstrip("\n").split(":")
            if len(p) >= 2 and re.fullmatch(r"[a-z]{2}", p[0]) and p[1].isascii():
                rows.append((p[1].split(";")[0].split(",")[0].strip(), p[0]))
    return rows


def airports():
    rows = []
    with gzip.open(f"{MISC}/airport.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            p = line.rstrip("\n").split(":")
            if len(p) >= 5 and re.fullmatch(r"[A-Z]{3}", p[0]) and p[4].isascii() and p[4]:
                city = p[4].split(",")[0].strip()
                if re.fullmatch(r"[A-Za-z .'-]{3,30}", city):
                    rows.append((p[0], city))
    return rows


def acronyms():
    rows = []
    for path in ACRONYMS:
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("$") or "\t" not in line:
                    continue
                a, e = line.rstrip("\n").split("\t", 1)
                e = e.strip()
                if re.fullmatch(r"[A-Z]{2,6}", a) and re.fullmatch(r"[a-z ]{5,60}", e):
                    rows.append((a, e))
    return rows


# ---------------------------------------------------------------- word rules

VOWELS = set("aeiou")


def cvc(w):
    return (len(w) >= 3 and w[-1] not in VOWELS and w[-1] not in "wxy"
            and w[-2] in VOWELS and w[-3] not in VOWELS and len(w) <= 5)


def plural(w, exc):
    if w in exc:
        return exc[w]
    if re.search(r"(s|x|z|ch|sh)$", w):
        return w + "es"
    if w.endswith("y") and w[-2] not in VOWELS:
        return w[:-1] + "ies"
    return w + "s"


def third_person(w):
    if re.search(r"(s|x|z|ch|sh|o)$", w):
        return w + "es"
    if w.endswith("y") and w[-2] not in VOWELS:
        return w[:-1] + "ies"
    return w + "s"


def regular_suffix(w, exc, suffix):
    """w + suffix ("ed", "er") by the spelling rules the two share: an
    irregular form from WordNet's exceptions first, then final e, y after a
    consonant, a doubled final consonant."""
    if w in exc:
        return exc[w]
    if w.endswith("e"):
        return w + suffix[1:]
    if w.endswith("y") and w[-2] not in VOWELS:
        return w[:-1] + "i" + suffix
    if cvc(w):
        return w + w[-1] + suffix
    return w + suffix


def past(w, exc):
    return regular_suffix(w, exc, "ed")


def gerund(w):
    if w.endswith("ie"):
        return w[:-2] + "ying"
    if w.endswith("e") and not w.endswith("ee") and len(w) > 2:
        return w[:-1] + "ing"
    if cvc(w):
        return w + w[-1] + "ing"
    return w + "ing"


def adverb(w):
    if w.endswith("y") and w[-2] not in VOWELS:
        return w[:-1] + "ily"
    if w.endswith("le") and w[-3] not in VOWELS:
        return w[:-1] + "y"
    if w.endswith("ic"):
        return w + "ally"
    return w + "ly"


def ness(w):
    if w.endswith("y") and w[-2] not in VOWELS:
        return w[:-1] + "iness"
    return w + "ness"


def comparative(w, exc):
    return regular_suffix(w, exc, "er")


ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n):
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    rest = n % 100
    return ONES[n // 100] + " hundred" + (" " + number_words(rest) if rest else "")


def roman(n):
    out = ""
    for v, s in [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                 (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]:
        while n >= v:
            out += s
            n -= v
    return out


# ---------------------------------------------------------------- tasks

class Task:
    def __init__(self, name, cluster, metric, source, templates, pairs, max_tokens=16, same_skill=None):
        self.name, self.cluster, self.metric, self.source = name, cluster, metric, source
        self.templates, self.pairs, self.max_tokens = templates, pairs, max_tokens
        self.same_skill = same_skill  # an earlier task of the same skill over a wider source


def build_tasks(seed):
    nouns = wordnet_synsets("noun")
    verbs = wordnet_synsets("verb")
    adjs = wordnet_synsets("adj")
    advs = wordnet_synsets("adv")
    noun_exc, verb_exc, adj_exc = wordnet_exc("noun"), wordnet_exc("verb"), wordnet_exc("adj")

    def words_of(syn):
        seen, out = set(), []
        for _, ws, _, _ in syn:
            for w in ws:
                if plain(w) and w not in seen:
                    seen.add(w)
                    out.append(w)
        return sorted(out)

    noun_words, verb_words, adj_words = words_of(nouns), words_of(verbs), words_of(adjs)
    short_adj = [w for w in adj_words if len(w) <= 7]

    # phrases: runs of 3-6 plain lowercase words from fortunes
    phrases = []
    for text in fortunes_text():
        toks = re.findall(r"[A-Za-z]+", text.lower())
        for i in range(0, len(toks) - 6, 7):
            n = 3 + (i // 7) % 4
            p = toks[i:i + n]
            if all(2 <= len(t) <= 10 for t in p) and len(set(p)) == len(p):
                phrases.append(" ".join(p))
    phrases = sorted(set(phrases))

    def gloss_first(g):
        g = g.split(";")[0].split('"')[0].strip().rstrip(".,:")
        return g

    def plain_texts(texts):
        """the first clause of each text, lowercased, when it is 3-8 words
        of letters alone, sorted and without repeats"""
        out = set()
        for t in texts:
            t = t.split(";")[0].strip().rstrip(".,:!?").lower()
            if re.fullmatch(r"[a-z]+( [a-z]+){2,7}", t):
                out.add(t)
        return sorted(out)

    def definitions(syn, pos_word):
        seen, out = set(), []
        for _, ws, g, _ in syn:
            w = ws[0]
            d = gloss_first(g)
            if plain(w) and w not in seen and 10 <= len(d) <= 80:
                seen.add(w)
                out.append((w, d))
        return out

    def antonyms(syn):
        """(word, its antonym) of every antonym pointer ("!") between two
        plain words of one word class, in file order"""
        by = {off: ws for off, ws, _, _ in syn}
        out = []
        for _, ws, _, ptrs in syn:
            for sym, off, _, st in ptrs:
                if sym != "!":
                    continue
                src, dst = int(st[:2], 16), int(st[2:], 16)
                a = ws[src - 1] if src and src <= len(ws) else ws[0]
                other = by.get(off, [])
                b = other[dst - 1] if dst and dst <= len(other) else (other[0] if other else None)
                if b and plain(a) and plain(b):
                    out.append((a, b))
        return out

    def dedup(pairs):
        seen, out = set(), []
        for a, b in pairs:
            if a not in seen:
                seen.add(a)
                out.append((a, b))
        return out

    def first_holder(groups, key=lambda x: x):
        """each group without the items whose input (key) an earlier group
        holds: a word belongs to the first class that holds it, so that the
        siblings of a cluster share no input word"""
        taken, out = set(), []
        for g in groups:
            out.append([x for x in g if key(x) not in taken])
            taken |= {key(x) for x in g}
        return out

    cs = countries()
    cur, lang, air, acr = currencies(), languages(), airports(), acronyms()

    Q = '"{x}"'
    T = []
    add = lambda *a, **k: T.append(Task(*a, **k))
    # 1 inflection: the same rules over different word classes
    add("noun_plural", "inflection", "em", "wordnet-base",
        ["Write the plural of the noun " + Q + ".", "What is the plural form of " + Q + "?",
         "Give the plural of this noun: {x}"],
        [(w, plural(w, noun_exc)) for w in noun_words])
    add("verb_past", "inflection", "em", "wordnet-base",
        ["Write the past tense of the verb " + Q + ".", "What is the past tense of " + Q + "?",
         "Give the simple past of this verb: {x}"],
        [(w, past(w, verb_exc)) for w in verb_words])
    add("verb_gerund", "inflection", "em", "wordnet-base",
        ["Write the -ing form of the verb " + Q + ".", "What is the present participle of " + Q + "?",
         "Give the gerund of this verb: {x}"],
        [(w, gerund(w)) for w in verb_words])
    add("verb_third_person", "inflection", "em", "wordnet-base",
        ["Write the third person singular of the verb " + Q + ".", "How does " + Q + " read after \"she\"?",
         "Give the he/she/it form of this verb: {x}"],
        [(w, third_person(w)) for w in verb_words])
    # 2 derivation
    add("adverb_ly", "derivation", "em", "wordnet-base",
        ["Turn the adjective " + Q + " into an adverb.", "What adverb comes from " + Q + "?",
         "Make an adverb of this adjective: {x}"],
        [(w, adverb(w)) for w in adj_words])
    add("noun_ness", "derivation", "em", "wordnet-base",
        ["Turn the adjective " + Q + " into a noun ending in -ness.", "What is the -ness noun of " + Q + "?",
         "Make a noun with -ness from this adjective: {x}"],
        [(w, ness(w)) for w in adj_words])
    add("prefix_un", "derivation", "em", "wordnet-base",
        ["Negate the adjective " + Q + " with the prefix un-.", "Add the prefix un- to " + Q + ".",
         "Write the un- form of this word: {x}"],
        [(w, "un" + w) for w in adj_words if not w.startswith("un")])
    add("comparative", "derivation", "em", "wordnet-base",
        ["Write the comparative of the adjective " + Q + ".", "What is the comparative form of " + Q + "?",
         "Give the -er comparative of this adjective: {x}"],
        [(w, comparative(w, adj_exc)) for w in short_adj])
    usage_texts = plain_texts(q for syn in (nouns, verbs, adjs, advs) for _, _, g, _ in syn
                              for q in re.findall(r'"([^"]+)"', g))
    gloss_texts = plain_texts(g for _, _, g, _ in nouns)
    acronym_texts = plain_texts(e for _, e in acr)

    def last_word_rows(texts):
        return [(t, t.split()[-1]) for t in texts]

    def snake_rows(texts):
        """the texts of at most 4 words, each with its snake_case"""
        return [(t, "_".join(t.split())) for t in texts if len(t.split()) <= 4]

    # 3 the last word of a text, over four sources of text (a skill the
    # base's copying phases prepare); it replaces a cluster of reordering
    # tasks (reverse, sort, rotate, swap) that no adapter could do on this
    # base: 1.7-20% under perfect selection, and no sibling's adapter above
    # 2.5 on another (docs/TRAINING.md, "Two more clusters of one skill")
    add("final_word_definition", "final_word", "em", "wordnet-base",
        ["What is the last word of the definition " + Q + "?", "This definition ends with which word: {x}",
         "Give the final word of the dictionary gloss " + Q + "."],
        last_word_rows(gloss_texts))
    add("final_word_action", "final_word", "em", "wordnet-base",
        ["Which word ends the description of an action " + Q + "?", "Name the last word in this meaning of a verb: {x}",
         "The verb's meaning " + Q + " closes with what word?"],
        last_word_rows(plain_texts(g for _, _, g, _ in verbs)))
    add("final_word_usage", "final_word", "em", "wordnet-base",
        ["What word ends the sentence " + Q + "?", "Give the closing word of this example sentence: {x}",
         "Which word comes at the end of the usage example " + Q + "?"],
        last_word_rows(usage_texts))
    add("final_word_acronym", "final_word", "em", "bsdgames",
        ["What is the last word of the acronym's expansion " + Q + "?",
         "An abbreviation stands for " + Q + ": give its last word.",
         "Which word ends the phrase behind this acronym: {x}"],
        last_word_rows(acronym_texts))
    # 4 snake_case over four sources of short text (3-4 words): it
    # replaces four case styles (snake, kebab, title, camel), whose
    # siblings' adapters did nothing for each other (0-0.4 out of
    # distribution; docs/TRAINING.md, "Letters and snake_case as one
    # skill"), and keeps snake_case as it was
    add("snake_case", "snake_case", "em", "fortunes",
        ["Write " + Q + " in snake_case.", "Convert to snake case: {x}", "Join the words of " + Q + " with underscores."],
        snake_rows(phrases), max_tokens=24)
    add("snake_definition", "snake_case", "em", "wordnet-base",
        ["Write the definition " + Q + " in snake_case.", "Turn this dictionary gloss into a snake_case name: {x}",
         "Join the words of the definition " + Q + " with underscores."],
        snake_rows(gloss_texts), max_tokens=24)
    add("snake_usage", "snake_case", "em", "wordnet-base",
        ["Convert the example sentence " + Q + " to snake case.", "Make one snake_case identifier from: {x}",
         "Put underscores between the words of " + Q + "."],
        snake_rows(usage_texts), max_tokens=24)
    add("snake_acronym", "snake_case", "em", "bsdgames",
        ["Write the expansion of an acronym, " + Q + ", in snake_case.",
         "An abbreviation stands for " + Q + ": give it as a snake_case name.",
         "Join the words behind this acronym with underscores: {x}"],
        snake_rows(acronym_texts), max_tokens=24)
    # 5 picking one word
    add("first_word", "word_pick", "em", "fortunes",
        ["What is the first word of " + Q + "?", "Give the first word: {x}", "Which word comes first in " + Q + "?"],
        [(p, p.split()[0]) for p in phrases])
    add("last_word", "word_pick", "em", "fortunes",
        ["What is the last word of " + Q + "?", "Give the last word: {x}", "Which word comes last in " + Q + "?"],
        [(p, p.split()[-1]) for p in phrases])
    add("longest_word", "word_pick", "em", "fortunes",
        ["What is the longest word in " + Q + "?", "Give the longest word: {x}", "Which word of " + Q + " has the most letters?"],
        [(p, max(p.split(), key=len)) for p in phrases if sorted(map(len, p.split()))[-1] != sorted(map(len, p.split()))[-2]])
    add("shortest_word", "word_pick", "em", "fortunes",
        ["What is the shortest word in " + Q + "?", "Give the shortest word: {x}", "Which word of " + Q + " has the fewest letters?"],
        [(p, min(p.split(), key=len)) for p in phrases if sorted(map(len, p.split()))[0] != sorted(map(len, p.split()))[1]])
    # 6 numbers
    nums = list(range(0, 1000))
    add("number_to_words", "numbers", "em", "generated",
        ["Write the number {x} in words.", "Spell out {x} in English.", "How do you write {x} in words?"],
        [(str(n), number_words(n)) for n in nums], max_tokens=20)
    add("words_to_number", "numbers", "em", "generated",
        ["Write \"{x}\" as digits.", "What number is \"{x}\"?", "Give the numeral for: {x}"],
        [(number_words(n), str(n)) for n in nums])
    add("roman_numeral", "numbers", "em", "generated",
        ["Write {x} in Roman numerals.", "What is {x} as a Roman numeral?", "Convert {x} to Roman numerals."],
        [(str(n), roman(n)) for n in nums if n > 0], max_tokens=20)
    add("add_one", "numbers", "em", "generated",
        ["What is {x} plus one?", "Add one to {x}.", "Which number comes after {x}?"],
        [(str(n), str(n + 1)) for n in nums])
    # 7 definitions: one relation over different word classes
    add("define_noun", "definitions", "rougeL", "wordnet-base",
        ["Define the noun " + Q + ".", "What does the noun " + Q + " mean?", "Give a short definition of the noun {x}."],
        definitions(nouns, "noun"), max_tokens=32)
    add("define_verb", "definitions", "rougeL", "wordnet-base",
        ["Define the verb " + Q + ".", "What does the verb " + Q + " mean?", "Give a short definition of the verb {x}."],
        definitions(verbs, "verb"), max_tokens=32)
    add("define_adjective", "definitions", "rougeL", "wordnet-base",
        ["Define the adjective " + Q + ".", "What does the adjective " + Q + " mean?", "Give a short definition of the adjective {x}."],
        definitions(adjs, "adjective"), max_tokens=32)
    add("define_adverb", "definitions", "rougeL", "wordnet-base",
        ["Define the adverb " + Q + ".", "What does the adverb " + Q + " mean?", "Give a short definition of the adverb {x}."],
        definitions(advs, "adverb"), max_tokens=32)
    # 8 antonyms: one relation over the four word classes. A word is an
    # input of one class only (the first of adjective, noun, verb, adverb
    # that holds it), so a sibling's adapter never saw a task's words; it
    # replaces synonyms and hypernyms, which the base could not learn (1.7-
    # 6.7 token F1 under perfect selection), and keeps the adjectives'
    # antonym task as it was
    anto_adj, anto_noun, anto_verb, anto_adv = first_holder(
        [antonyms(syn) for syn in (adjs, nouns, verbs, advs)], key=lambda pair: pair[0])
    add("antonym_noun", "antonyms", "f1", "wordnet-base",
        ["What noun is the opposite of " + Q + "?", "Give the antonym of the noun {x}",
         "Name the noun that means the reverse of " + Q + "."],
        dedup(anto_noun), max_tokens=16)
    add("antonym_verb", "antonyms", "f1", "wordnet-base",
        ["What verb means the opposite of " + Q + "?", "Give an antonym of the verb {x}",
         "Which action is the opposite of " + Q + "?"],
        dedup(anto_verb), max_tokens=16)
    add("antonym_adverb", "antonyms", "f1", "wordnet-base",
        ["What adverb is the opposite of " + Q + "?", "Give the antonym of this adverb: {x}",
         "Which adverb means the reverse of " + Q + "?"],
        dedup(anto_adv), max_tokens=16)
    add("antonym", "antonyms", "f1", "wordnet-base",
        ["What is the opposite of " + Q + "?", "Give an antonym of the adjective " + Q + ".", "Name a word that means the reverse of {x}."],
        dedup(anto_adj), max_tokens=16)
    # 9 the first letter of a word, over the four word classes (a word in
    # the first class that holds it, so siblings share no word): it
    # replaces four letter skills (first and last letter, length,
    # initials), whose siblings' adapters did 0.4-1.1 for each other, and
    # keeps first_letter (nouns) as it was
    _, verb_only, adj_only, adv_only = first_holder([noun_words, verb_words, adj_words, words_of(advs)])
    add("first_letter", "first_letter", "em", "wordnet-base",
        ["What is the first letter of " + Q + "?", "Give the first letter of this word: {x}", "Which letter does " + Q + " start with?"],
        [(w, w[0]) for w in noun_words], max_tokens=6)
    add("first_letter_verb", "first_letter", "em", "wordnet-base",
        ["What letter does the verb " + Q + " begin with?", "Name the initial letter of this verb: {x}",
         "The verb " + Q + " starts with which letter?"],
        [(w, w[0]) for w in verb_only], max_tokens=6)
    add("first_letter_adjective", "first_letter", "em", "wordnet-base",
        ["Which letter starts the adjective " + Q + "?", "Give the opening letter of the describing word {x}",
         "What is the first letter of the adjective " + Q + "?"],
        [(w, w[0]) for w in adj_only], max_tokens=6)
    add("first_letter_adverb", "first_letter", "em", "wordnet-base",
        ["What is the initial letter of the adverb " + Q + "?", "Which letter comes first in this adverb: {x}",
         "Give the letter that the adverb " + Q + " opens with."],
        [(w, w[0]) for w in adv_only], max_tokens=6)
    # 10-11: clusters of one skill over several sources, as Flan's clusters
    # hold one task type over several datasets. A source is a WordNet
    # domain: the words whose most frequent sense is in one lexicographer
    # file. Each task has its own wording; noun_plural and verb_past do the
    # same skill over every word, so these tasks keep their test words out of
    # those two tasks' training rows (same_skill). They replace the
    # geography and code clusters (recalling capitals and ISO codes), which
    # no adapter could do on this base (docs/TRAINING.md, "Clusters of one
    # skill").
    # (task, lexicographer file, wordings)
    PLURAL = (
        ("plural_animal", "05", ["Write the plural of the animal " + Q + ".",
                                 "Several of the animal {x}: what do you call them?",
                                 "More than one " + Q + " (an animal): give the word."]),
        ("plural_artifact", "06", ["What is the plural of the object " + Q + "?",
                                   "Give the plural form of this thing: {x}",
                                   "Two of the thing " + Q + " are called what?"]),
        ("plural_person", "18", ["Write the plural of " + Q + ", a kind of person.",
                                 "Many people who are a " + Q + " are called what?",
                                 "Give the plural of this word for a person: {x}"]),
        ("plural_plant", "20", ["What is the plural of the plant " + Q + "?",
                                "Name several of the plant {x} in the plural.",
                                "Write the plural form of the plant name " + Q + "."]))
    PAST = (
        ("past_change", "30", ["Write the past tense of " + Q + ", a verb of change.",
                               "Yesterday it did {x}: how do you say that in the past?",
                               "Give the simple past of the change verb " + Q + "."]),
        ("past_communication", "32", ["What is the past tense of the speech verb " + Q + "?",
                                      "She will {x} today; what did she do yesterday?",
                                      "Put the verb of saying " + Q + " in the past tense."]),
        ("past_contact", "35", ["Write the past of the verb of touching " + Q + ".",
                                "Turn " + Q + " (a contact verb) into the past tense.",
                                "In the past, to {x} becomes what?"]),
        ("past_motion", "38", ["Give the past tense of the motion verb " + Q + ".",
                               "They {x} now; what did they do last week?",
                               "Write the past form of " + Q + ", a verb of movement."]),
        ("past_social", "41", ["What is the past tense of the social verb " + Q + "?",
                               "Write the past tense of " + Q + " as used about people and groups.",
                               "The group will {x}; say that it already happened."]))
    for cluster, domains, form, wider, tasks in (
            ("plural", primary_domain_words("noun"), lambda w: plural(w, noun_exc), "noun_plural", PLURAL),
            ("past_tense", primary_domain_words("verb"), lambda w: past(w, verb_exc), "verb_past", PAST)):
        for name, lex, tpls in tasks:
            add(name, cluster, "em", "wordnet-base", tpls, [(w, form(w)) for w in domains[lex]], same_skill=wider)
    return T, (nouns, verbs, adjs, advs, cs, cur, lang, air, acr)


def split_task(t, rng, wider=None):
    """(train rows, test rows, train inputs, test inputs). wider is the split
    of t.same_skill (its train and test inputs): t trains on none of its
    test inputs and tests on none of its train inputs, so neither task's
    adapter has seen the other's test words."""
    pairs = sorted({(x, y) for x, y in t.pairs if x.strip() and y.strip()})  # a source row may lack a field
    rng.shuffle(pairs)
    n_test = min(N_TEST, max(50, len(pairs) // 4))
    if wider:
        pairs = [p for p in pairs if p[0] not in wider[1]]
        testable = [p for p in pairs if p[0] not in wider[0]]
        n_test = min(n_test, len(testable))
        test = testable[:n_test]
        chosen = set(test)
        pairs = test + [p for p in pairs if p not in chosen]
    if len(pairs) < n_test + 50 or n_test < 50:
        raise SystemExit(f"task {t.name}: only {len(pairs)} examples from {t.source}, need {n_test + 50}")
    test, train = pairs[:n_test], pairs[n_test:n_test + N_TRAIN]

    def rows(ps):
        out = []
        for x, y in ps:
            tpl = t.templates[rng.randrange(len(t.templates))]
            out.append({"input": ALPACA.format(instruction=tpl.replace("{x}", x)), "output": y})
        return out
    first = rows(train[:N_FIRST])
    test_rows = rows(test)
    return first + rows(train[N_FIRST:]), test_rows, {x for x, _ in train}, {x for x, _ in test}


def corpus_lines(srcs, rng):
    """The base's pretraining text: glosses, fortunes and facts (capitals,
    country, currency and language codes, airports, acronyms) as plain
    sentences, shuffled. The facts were for the geography and code tasks
    that the two clusters of one skill replaced; they stay, so that the
    base is the one the world's adapters were trained on."""
    nouns, verbs, adjs, advs, cs, cur, lang, air, acr = srcs
    out = []
    for syn, kind in ((nouns, "noun"), (verbs, "verb"), (adjs, "adjective"), (advs, "adverb")):
        for _, ws, g, _ in syn:
            w = ws[0].replace("_", " ")
            out.append(f"{w} ({kind}): {g}")
    out += fortunes_text()
    n_text = len(out)
    for c in cs:
        out.append(f"{c['capital']} is the capital of {c['name']}. The country code of {c['name']} is {c['iso2']}, "
                   f"or {c['iso3']}.")
    out += [f"The {n} has the currency code {c}." for n, c in cur]
    out += [f"The {n} language has the code {c}." for n, c in lang]
    out += [f"The airport {a} serves {b}." for a, b in air]
    out += [f"{a} stands for {e}." for a, e in acr]
    # numbers in words and figures, as text often writes both
    out += [f"{n} is written {number_words(n)}; in Roman numerals, {roman(n)}." for n in range(1, 1000)]
    # the facts are few lines among many: they appear FACT_REPEATS times,
    # so that a short pretraining run has read each more than once
    facts = out[n_text:]
    out += facts * (FACT_REPEATS - 1)
    # the prompt format itself, on copying (a skill no task asks for), so
    # that the base answers after "### Response:" and then ends: the
    # adapters then teach a task, not the format
    words = sorted({w for _, ws, _, _ in nouns for w in ws if plain(w)})
    copy_tpl = ['Repeat the word "{x}".', "Copy this text exactly: {x}", 'Say "{x}" back to me.',
                "Echo the following: {x}"]
    texts = fortunes_text()
    for i in range(6000):
        x = rng.choice(words) if i % 2 else " ".join(rng.choice(texts).split()[:rng.randrange(2, 7)])
        out.append(ALPACA.format(instruction=rng.choice(copy_tpl).replace("{x}", x)) + x + EOT)
    rng.shuffle(out)
    return out


def skills_lines(srcs, general, rng, n=20000):
    """The base's second pretraining phase: half general text, half prompts
    of copying skills that no task asks for (repeat, echo, say twice) over
    words, phrases, names and numbers. A base that cannot copy from its
    prompt leaves every adapter to learn copying from 400 examples, and
    they learnt only their training words."""
    nouns, verbs, adjs, advs, cs, cur, lang, air, acr = srcs
    words = sorted({w for syn in (nouns, verbs, adjs) for _, ws, _, _ in syn for w in ws if plain(w)})
    texts = fortunes_text()
    names = [c["name"] for c in cs] + [c["capital"] for c in cs] + [b for _, b in air]
    tpl = [('Repeat the word "{x}".', "{x}"), ("Copy this text exactly: {x}", "{x}"),
           ('Say "{x}" back to me.', "{x}"), ("Echo the following: {x}", "{x}"),
           ('Write "{x}" twice.', "{x} {x}"), ("Repeat after me: {x}", "{x}"),
           ('Quote this back: "{x}"', "{x}")]
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            x = rng.choice(words)
        elif kind == 1:
            x = " ".join(rng.choice(texts).split()[:rng.randrange(2, 7)])
        elif kind == 2:
            x = rng.choice(names)
        else:
            x = str(rng.randrange(0, 1000))
        q, a = rng.choice(tpl)
        out.append(ALPACA.format(instruction=q.replace("{x}", x)) + a.replace("{x}", x) + EOT)
    out += rng.sample(general, min(len(general), 3 * n))
    rng.shuffle(out)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="world")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seen", type=float, default=0.4)
    a = ap.parse_args()
    tasks, srcs = build_tasks(a.seed)
    rng = random.Random(a.seed)
    # seen tasks: 40%, chosen per cluster so that every cluster has one
    # seen and unseen members alike
    names = [t.name for t in tasks]
    n_seen = round(a.seen * len(tasks))
    order = list(range(len(tasks)))
    random.Random(a.seed * 7919 + 1).shuffle(order)
    seen, per = set(), {}
    for i in order:  # round-robin over clusters
        per.setdefault(tasks[i].cluster, []).append(i)
    rounds = list(per.values())
    while len(seen) < n_seen:
        for lst in rounds:
            if lst and len(seen) < n_seen:
                seen.add(lst.pop(0))
    os.makedirs(f"{a.out}/tasks", exist_ok=True)
    os.makedirs(f"{a.out}/.work", exist_ok=True)
    meta = []
    retr = []
    inputs = {}  # task: (its train inputs, its test inputs), for same_skill
    for i, t in enumerate(tasks):
        wider = inputs[t.same_skill] if t.same_skill else None
        train, test, train_in, test_in = split_task(t, random.Random(f"{a.seed}:{t.name}"), wider)
        inputs[t.name] = (train_in, test_in)
        if wider and (test_in & wider[0] or train_in & wider[1]):
            raise SystemExit(f"task {t.name}: shares test words with {t.same_skill}'s training rows or the reverse")
        d = f"{a.out}/tasks/{t.name}"
        os.makedirs(d, exist_ok=True)
        for fn, rows in (("train", train), ("test", test)):
            with open(f"{d}/{fn}.jsonl", "w") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        meta.append({"name": t.name, "cluster": t.cluster, "metric": t.metric, "seen": i in seen,
                     "max_tokens": t.max_tokens, "source": t.source, "templates": t.templates,
                     "train": len(train), "test": len(test)})
        if i in seen:
            retr += [{"task": t.name, "input": r["input"]} for r in train[:N_FIRST]]
    with open(f"{a.out}/tasks.json", "w") as f:
        json.dump({"seed": a.seed, "prompt": ALPACA,
                   "retrieval": {"samples": 20, "layer": "final", "pooling": "mean"},
                   "tasks": meta}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(f"{a.out}/.work/retriever.jsonl", "w") as f:
        for r in retr:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    general = corpus_lines(srcs, rng)
    with open(f"{a.out}/.work/corpus.txt", "w") as f:
        for line in general:
            f.write(line + "\n")
    plain_text = [l for l in general if EOT not in l]
    with open(f"{a.out}/.work/skills.txt", "w") as f:
        for line in skills_lines(srcs, plain_text, random.Random(a.seed + 1)):
            f.write(line + "\n")
    # the third phase: copying alone but for a fifth of general text; in
    # the second, copying of whole words had only begun (the first token)
    rng3 = random.Random(a.seed + 2)
    with open(f"{a.out}/.work/copy.txt", "w") as f:
        for line in skills_lines(srcs, [], rng3, n=40000) + rng3.sample(plain_text, 10000):
            f.write(line + "\n")
    print(f"data: {len(tasks)} tasks in {len(set(t.cluster for t in tasks))} clusters, "
          f"{len(seen)} seen; corpus {os.path.getsize(a.out + '/.work/corpus.txt') / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
