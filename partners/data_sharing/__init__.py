"""Data exchange between partners: data-sharing agreements, members'
consent field by field, overlap matching and the disclosure log
(``docs/data-sharing.md``)."""
