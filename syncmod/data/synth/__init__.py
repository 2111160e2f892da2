"""The synthetic world: languages that share meaning and differ in form, rendered into parallel text and tasks."""
