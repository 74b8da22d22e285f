"""Reading: answering questions with a loaded model (:class:`~spanqa.reading.reader.Reader`) over texts or a passage index."""
