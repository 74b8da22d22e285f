"""Texts several test modules ask about, written once (made up for the tests, not taken from any dataset)."""

RAILWAY = (
    "The Glenbarrow Light Railway runs for 14 kilometres between the market town of Ashby Cross and the quarry "
    "village of Glenbarrow. Built in 1897 to carry slate, it uses a narrow gauge of 610 millimetres. Passenger "
    "services ended in 1951, but a volunteer society reopened the line to visitors in 1978."
)
"""A context with a clear answer to :data:`RAILWAY_QUESTION` ("1897")."""

RAILWAY_QUESTION = "When was the railway built?"

RAILWAY_REQUEST = {"question": RAILWAY_QUESTION, "context": RAILWAY}
"""One well-formed ``POST /answer`` body."""
