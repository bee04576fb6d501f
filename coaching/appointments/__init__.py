"""Face-to-face and video-call sessions a therapist plans with their patient."""
