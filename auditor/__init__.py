"""Label Auditor's desktop front end (PySide6 + pyqtgraph); it talks to the engine only as a process."""
