"""The kopf operator: one recorder pod per WebRecording, status reflected from the recorder."""
