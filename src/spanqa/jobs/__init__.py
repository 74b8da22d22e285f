"""Jobs: what runs over whole datasets and writes results (training, evaluation, prediction, export, reports, model cards)."""
