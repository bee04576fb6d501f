"""The outcomes domain: outcome questionnaires (ODI, NRS, EQ-5D-5L, PSFS, CPAQ-8, STarT Back and
care use), scored on the server exactly as published, on the ICHOM schedule after enrolment;
outcome series with minimal important change; weekly check-ins; alerts for the therapist; the
decision aid; and the FHIR R4 export.

- `instruments/*.yaml`: the questionnaire definitions (data, Dutch and English, with copyright)
- `definitions.py`: loading them and checking answers; `scoring.py`: the scoring rules
- `schedule.py`: time points and their windows; `service.py`: everything with the database
- `fhir.py`: FHIR resources; `api.py`, `schemas.py`: the HTTP API; `demo.py`, `cli.py`: demo data
"""
