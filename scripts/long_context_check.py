"""Check that `spanqa ask` finds an answer near the end of a ~20,000-word document.

Takes XQuAD-en questions the model answers exactly on their own paragraph, buries each
paragraph near the end of a document made of other XQuAD paragraphs (about 20,000 words),
and asks again through the command line. Prints how many are still answered correctly.

    python scripts/long_context_check.py --model spanqa-model --questions 5
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from spanqa import Reader, load_examples
from spanqa.stages.metrics import normalize_answer

XQUAD_EN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "xquad" / "xquad.en.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default=str(XQUAD_EN))
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--words", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    examples = load_examples(args.data).examples
    reader = Reader.from_pretrained(args.model)
    rng = random.Random(args.seed)
    candidates = [ex for ex in examples[-265:]]  # the evaluation articles (37-48) of XQuAD-en
    rng.shuffle(candidates)
    picked = []
    for ex in candidates:
        result = reader(ex.question, ex.context, handle_impossible=False)
        if result.answer and normalize_answer(result.answer.text) == normalize_answer(ex.answers[0].text):
            picked.append(ex)
        if len(picked) == args.questions:
            break

    correct = 0
    for ex in picked:
        filler: list[str] = []
        others = [e.context for e in examples if e.title != ex.title]
        others = list(dict.fromkeys(others))
        rng.shuffle(others)
        for text in others:
            if sum(len(p.split()) for p in filler) >= args.words - len(ex.context.split()):
                break
            filler.append(text)
        cut = max(1, len(filler) - 1)  # the answer's paragraph goes second to last: near the end
        document = "\n\n".join(filler[:cut] + [ex.context] + filler[cut:])
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as handle:
            handle.write(document)
        out = subprocess.run(
            [sys.executable, "-m", "spanqa.interfaces.cli", "ask", args.model, ex.question, "--context-file", handle.name, "--json", "--always-answer"],
            capture_output=True, text=True, check=True,
        ).stdout
        answer = json.loads(out[out.index("{"):])
        position = document.index(ex.context) / len(document)
        ok = normalize_answer(answer["answer"]) == normalize_answer(ex.answers[0].text)
        correct += ok
        print(
            f"{'ok ' if ok else 'MISS'} {len(document.split())} words, answer at {position:.0%} of the text: "
            f"{ex.question!r} -> {answer['answer']!r} (gold {ex.answers[0].text!r}, score {answer['score']:.3f})"
        )
    print(f"{correct} of {len(picked)} answered correctly in ~{args.words}-word documents")
    return 0 if picked and correct == len(picked) else 1


if __name__ == "__main__":
    sys.exit(main())
