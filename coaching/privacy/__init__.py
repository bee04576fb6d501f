"""Privacy rights (GDPR art. 15, 17 and 20): exporting everything held about a patient, and
erasing it, within the retention rules for medical records (see docs/privacy.md)."""
