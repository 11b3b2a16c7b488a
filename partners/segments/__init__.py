"""Member segments: who is in one (``definition``, its filter language in
``filters``), the query that finds them (``compiler``), saved segments
(``saved``), their counts and exports (``members``)."""
