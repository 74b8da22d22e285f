"""Texts several test modules ask about, and how they write them to files, written once (made up for the
tests, not taken from any dataset)."""

import csv
from pathlib import Path


def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    """``rows`` under ``header`` as a CSV (or, with ``delimiter="\\t"``, TSV) file at ``path``."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


RAILWAY = (
    "The Glenbarrow Light Railway runs for 14 kilometres between the market town of Ashby Cross and the quarry "
    "village of Glenbarrow. Built in 1897 to carry slate, it uses a narrow gauge of 610 millimetres. Passenger "
    "services ended in 1951, but a volunteer society reopened the line to visitors in 1978."
)
"""A context with a clear answer to :data:`RAILWAY_QUESTION` ("1897")."""

RAILWAY_QUESTION = "When was the railway built?"

RAILWAY_REQUEST = {"question": RAILWAY_QUESTION, "context": RAILWAY}
"""One well-formed ``POST /answer`` body."""


def weight_reading_qa_model(head: str = "qa_outputs"):
    """A tiny QA model whose forward reads its head's weight directly, as some architectures do: a
    backend that wraps or converts that layer breaks it and must put the model back as it was.

    Args:
        head: The head layer's attribute name.
    """
    import torch
    from transformers.modeling_outputs import QuestionAnsweringModelOutput

    class ReadsItsHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(1000, 8)
            setattr(self, head, torch.nn.Linear(8, 2))

        def forward(self, input_ids, attention_mask=None):
            layer = getattr(self, head)
            logits = self.embed(input_ids) @ layer.weight.T + layer.bias
            return QuestionAnsweringModelOutput(start_logits=logits[..., 0], end_logits=logits[..., 1])

    return ReadsItsHead()
